package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullgate/pullgate/proxy/audit"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/config"
)

// ttlEngine is an engine with cache.allowTTL 1h and denyTTL 30s, and a
// policy with a rule whose condition reads now (fresh, up/fresh/**) and
// one whose condition does not (nonroot, up/**).
func ttlEngine(t *testing.T) (*Engine, *policy.Policy) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(`rules:
  - name: fresh
    match: ["up/fresh/**"]
    require:
      conditions: ['now - config.created < duration("720h")']
  - name: nonroot
    match: ["up/**"]
    require:
      conditions: ['config.user != ""']
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{}
	cfg.Cache.AllowTTL, cfg.Cache.DenyTTL = config.Duration(time.Hour), config.Duration(30*time.Second)
	s := &Engine{cfg: cfg}
	return s, p
}

// A decision of a rule whose conditions read now is kept at most
// timeDependentTTL, whatever cache.allowTTL says; other decisions keep
// the configured TTLs.
func TestVerdictTTLTimeDependent(t *testing.T) {
	s, p := ttlEngine(t)
	fresh, nonroot := p.Match("up/fresh/a"), p.Match("up/b")
	allow, deny := Verdict{Allowed: true}, Verdict{}
	for _, c := range []struct {
		rule *policy.Rule
		v    Verdict
		want time.Duration
	}{
		{fresh, allow, timeDependentTTL},
		{fresh, deny, 30 * time.Second},
		{nonroot, allow, time.Hour},
		{nonroot, deny, 30 * time.Second},
	} {
		if got := s.verdictTTL(c.rule, c.v); got != c.want {
			t.Errorf("rule %s allowed=%v: ttl %s, want %s", c.rule.Name, c.v.Allowed, got, c.want)
		}
	}
}

// The blob grants of an allowed decision of a rule whose conditions read
// now last no longer than the decision (timeDependentTTL), not
// cache.allowTTL: a layer is not served after its manifest's allow has
// expired and would be decided again.
func TestGrantTTLTimeDependent(t *testing.T) {
	s, p := ttlEngine(t)
	s.memory = newMemory(16)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.blobGrants.SetClock(func() time.Time { return clock })
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("layer"), Size: 5}
	m := &Manifest{MediaType: ocispec.MediaTypeImageManifest, Layers: []ocispec.Descriptor{layer}}
	md := digest.FromString("manifest")
	for _, c := range []struct {
		repo string
		keep time.Duration // held at least
		drop time.Duration // gone by
	}{
		{"up/fresh/a", timeDependentTTL - time.Second, timeDependentTTL + time.Second},
		{"up/b", time.Hour - time.Second, time.Hour + time.Second},
	} {
		q := &Query{sub: Subject{Upstream: "up"}, rep: c.repo, pol: p, rule: p.Match(c.repo)}
		start := clock
		s.grant(q, md, m, Verdict{Allowed: true})
		key := grantKey(p.Revision(), c.repo, layer.Digest)
		clock = start.Add(c.keep)
		if _, ok := s.blobGrants.Get(key); !ok {
			t.Errorf("%s: grant gone after %s", c.repo, c.keep)
		}
		clock = start.Add(c.drop)
		if _, ok := s.blobGrants.Get(key); ok {
			t.Errorf("%s: grant still held after %s", c.repo, c.drop)
		}
	}
}

// A denial by a condition or a Rego rule judges what the artifact and its
// evidence say now: the offline fallback (serving the last allow when
// evidence could not be fetched) must not override it.
func TestConditionFailedCountsRego(t *testing.T) {
	for _, name := range []string{policy.CheckCondition, policy.CheckArtifact, policy.CheckRego} {
		if !conditionFailed(Verdict{Checks: []audit.Check{{Name: name, Passed: false}}}) {
			t.Errorf("a failed %s check does not keep the fallback away", name)
		}
	}
	if conditionFailed(Verdict{Checks: []audit.Check{{Name: policy.CheckRego, Passed: true}, {Name: "signature", Passed: false}}}) {
		t.Error("a failed signature check counted as a condition")
	}
}
