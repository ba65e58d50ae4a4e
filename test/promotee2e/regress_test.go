package promotee2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/modelcorpus"
)

type rawM struct {
	b  []byte
	mt string
}

func (r rawM) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawM) MediaType() (types.MediaType, error) { return types.MediaType(r.mt), nil }

// TestPromoteInspectsASharedBlobAsEveryClass: one blob L listed by two
// children of an index under two file names. Promote inspects L only as
// the first child declares it (p.blobs dedup), never as the second does.
func TestPromoteInspectsASharedBlobAsEveryClass(t *testing.T) {
	e := newEnv(t)
	st := modelcorpus.Safetensors(modelcorpus.SmallModel(), map[string]string{"format": "pt"})
	e.pushModel("models/mix:a", "model.safetensors", st)
	e.pushModel("models/mix:b", "saved_model.pbtxt", st)
	// child B alone is refused by content inspection
	rb, codeB := e.promote("models/mix:b", "prod/onlyb:1")
	t.Logf("child B alone: exit %d reasons %v", codeB, rb.Decision.Reasons)
	var descs []map[string]any
	for _, tg := range []string{"a", "b"} {
		ref, _ := name.ParseReference(e.src.Ref("models/mix:"+tg), name.Insecure)
		d, err := remote.Get(ref)
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, map[string]any{"mediaType": string(d.MediaType), "digest": d.Digest.String(), "size": d.Size})
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descs})
	iref, _ := name.ParseReference(e.src.Ref("models/mix:idx"), name.Insecure)
	if err := remote.Put(iref, rawM{idx, "application/vnd.oci.image.index.v1+json"}); err != nil {
		t.Fatal(err)
	}
	r, code := e.promote("models/mix:idx", "prod/mix:idx")
	t.Logf("index: exit %d %+v", code, r)
	if codeB != 0 && code == 0 {
		t.Errorf("index promoted (exit 0) although its child B alone is refused (exit %d)", codeB)
	}
}

// TestPromoteCopiesOnlyCountedEvidence: a referrer at the source that holds the
// counted release bundle plus a layer the decision never counted (another
// key's bundle) is copied whole into DST by --copy-evidence.
func TestPromoteCopiesOnlyCountedEvidence(t *testing.T) {
	e := newEnv(t)
	e.cosign("cosign3", "generate-key-pair", "--output-key-prefix", "attacker")
	img := e.src.PushImage(t, "apps/web", "1.0", harnessImageOptions2())
	for _, k := range []string{"release.key", "attacker.key"} {
		e.cosign("cosign3", append([]string{"sign", "--key", k, "--tlog-upload=false", "--use-signing-config=false", "-y",
			e.src.Ref("apps/web@" + img.Digest)}, insecureFlags...)...)
	}
	sref, _ := name.NewDigest(e.src.Ref("apps/web@"+img.Digest), name.Insecure)
	idx, err := remote.Referrers(sref)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 2 {
		t.Fatalf("want 2 referrers, got %d", len(im.Manifests))
	}
	var ms []map[string]any
	for _, d := range im.Manifests {
		g, err := remote.Get(sref.Context().Digest(d.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(g.Manifest, &m)
		ms = append(ms, m)
	}
	// crafted: layers of both (whichever is the release one, it is counted)
	crafted := ms[0]
	crafted["layers"] = append(ms[0]["layers"].([]any), ms[1]["layers"].([]any)...)
	crafted["annotations"] = map[string]any{"org.example.note": "attacker-chosen"}
	raw, _ := json.Marshal(crafted)
	cref := sref.Context().Digest(digestOf(raw))
	if err := remote.Put(cref, rawM{raw, crafted["mediaType"].(string)}); err != nil {
		t.Fatal(err)
	}
	r, code := e.promote("apps/web:1.0", "prod/web:1.0", "--copy-evidence")
	t.Logf("exit %d evidence %v", code, r.EvidenceCopied)
	if slices.Contains(r.EvidenceCopied, digestOf(raw)) {
		t.Errorf("crafted referrer %s (an uncounted attacker bundle layer, attacker annotations) copied to DST", digestOf(raw))
	}
}

func digestOf(b []byte) string                   { return digest.FromBytes(b).String() }
func harnessImageOptions2() harness.ImageOptions { return harness.ImageOptions{Layers: 1} }

// TestPromoteRefusesAWaivedDecision: an unsigned image let through only by an
// exception (with an expiry) is promoted, signed and given a PASSED VSA
// that says nothing about the waiver or its expiry.
func TestPromoteRefusesAWaivedDecision(t *testing.T) {
	e := newEnv(t)
	img := e.src.PushImage(t, "apps/vendor", "1.0", harnessImageOptions2())
	pol := policyFor(e.src.Host) + `exceptions:
  - name: vendor
    match:
      repositories: ["` + e.src.Host + `/apps/vendor"]
    waive:
      - "regexp:rule apps: .*"
    expires: 2027-01-01T00:00:00Z
    reason: test
    approvedBy: sec@example.com
`
	os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(pol), 0o644)
	r, code := e.promote("apps/vendor:1.0", "prod/vendor:1.0")
	t.Logf("exit %d %+v", code, r)
	if code == 0 && r.VSA != "" {
		t.Errorf("waived (unsigned) image %s promoted with a VSA; reasons %v", img.Digest, r.Decision.Reasons)
	}
}

// TestPromoteRefusesATrustKey: the promotion key must not be one the
// policy trusts for artifacts (a stolen release key would then also vouch
// that pullgate verified what it signed). Exit 2, nothing written.
func TestPromoteRefusesATrustKey(t *testing.T) {
	e := newEnv(t)
	img := e.src.PushImage(t, "apps/web", "1.0", harnessImageOptions2())
	e.releaseSign("apps/web", img.Digest)
	out, code := e.run(pullgateBin, "promote", e.src.Ref("apps/web:1.0"), e.dst.Ref("prod/web:1.0"), "--policy", "policy.yaml",
		"--key", "release.key", "--plain-http")
	if code != 2 || !strings.Contains(out, `trust key "release"`) {
		t.Fatalf("promote signing with the policy's release key: exit %d, want 2 naming the trust key\n%s", code, out)
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("refused promote made %d write requests to the destination", w)
	}
	e.assertDstEmpty("prod/web", img.Digest)
}

// TestPromoteRenewsAnAgedVSA: a promotion whose VSA is older than
// --refresh-after is done again (nodes refuse a VSA past their maximum
// age, and nothing else renews it); a fresh one is "already promoted".
func TestPromoteRenewsAnAgedVSA(t *testing.T) {
	e := newEnv(t)
	img := e.src.PushImage(t, "apps/web", "1.0", harnessImageOptions2())
	e.releaseSign("apps/web", img.Digest)
	first, code := e.promote("apps/web:1.0", "prod/web:1.0")
	if code != 0 || first.VSA == "" {
		t.Fatalf("promote: exit %d %+v", code, first)
	}
	// Every VSA is older than a nanosecond: promoted again, a new VSA.
	again, code := e.promote("apps/web:1.0", "prod/web:1.0", "--refresh-after", "1ns")
	if code != 0 || again.AlreadyPromoted || again.VSA == "" || again.VSA == first.VSA {
		t.Fatalf("promote with --refresh-after 1ns: exit %d %+v (first VSA %s)", code, again, first.VSA)
	}
	// The default (24h): the new VSA is fresh, nothing is written.
	before := e.writes()
	if r, code := e.promote("apps/web:1.0", "prod/web:1.0"); code != 0 || !r.AlreadyPromoted {
		t.Fatalf("third promote: exit %d %+v", code, r)
	}
	if w := e.writes(); w != before {
		t.Fatalf("an already promoted run made %d write requests", w-before)
	}
	if out, code := e.run(pullgateBin, "vsa", "check", e.dst.Ref("prod/web:1.0"), "--key", "promote.pub", "--max-age", "1h", "--plain-http"); code != 0 {
		t.Fatalf("vsa check after the renewal: exit %d\n%s", code, out)
	}
}
