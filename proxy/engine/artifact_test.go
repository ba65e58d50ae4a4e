package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/config"
)

// A decision of a rule whose conditions read now is kept at most
// timeDependentTTL, whatever cache.allowTTL says; other decisions keep
// the configured TTLs.
func TestVerdictTTLTimeDependent(t *testing.T) {
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
