package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// condImage shapes a test image's config and annotations.
type condImage struct {
	user        string
	env         []string
	created     time.Time
	annotations map[string]string
	platform    *v1.Platform
}

func (c condImage) options() harness.ImageOptions {
	return harness.ImageOptions{Platform: c.platform, Annotations: c.annotations, Config: func(cf *v1.ConfigFile) {
		cf.Config.User, cf.Config.Env = c.user, c.env
		cf.Created = v1.Time{Time: c.created}
	}}
}

// pushModelPack pushes a ModelPack model (config declaring licenses, one
// weight layer) to repo:tag.
func pushModelPack(t *testing.T, up *harness.Upstream, repo, tag string, licenses ...string) {
	t.Helper()
	cfg, err := json.Marshal(map[string]any{
		"descriptor": map[string]any{"name": repo, "family": "llama", "licenses": licenses, "createdAt": time.Now().UTC().Format(time.RFC3339)},
		"config":     map[string]any{"format": "safetensors", "paramSize": "1m"},
		"modelfs":    map[string]any{"type": "layers", "diffIds": []string{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	weight := []byte("weights of " + repo + ":" + tag)
	cd, wd := up.PushBlob(t, repo, cfg), up.PushBlob(t, repo, weight)
	mf, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"artifactType": "application/vnd.cncf.model.manifest.v1+json",
		"config":       map[string]any{"mediaType": policy.MediaTypeModelPackConfig, "digest": cd, "size": len(cfg)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": wd, "size": len(weight),
			"annotations": map[string]string{"org.cncf.model.filepath": "model.safetensors"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	up.TagManifest(t, repo, tag, mf, "application/vnd.oci.image.manifest.v1+json")
}

// TestConditionExamplesE2E runs each secure-by-default example of
// docs/examples, unchanged, as the policy of a proxy in front of
// distribution's registry binary, and pulls images built here with and
// without the property through it with crane: allowed ones are served,
// denied ones fail with DENIED and the condition's reason in crane's
// error output.
func TestConditionExamplesE2E(t *testing.T) {
	up := harness.StartRegistryBinary(t, "dist.local")
	now := time.Now().UTC()
	fresh := now.Add(-time.Hour)
	base := map[string]string{"org.opencontainers.image.base.digest": digest.FromString("base image").String()}
	type pull struct {
		ref    string // repo:tag
		image  *condImage
		model  []string // licenses, for a ModelPack model
		reason string   // "" when allowed
	}
	cases := []struct {
		file  string
		pulls []pull
	}{
		{"non-root.yaml", []pull{
			{"nonroot/user:v1", &condImage{user: "1000:1000", created: fresh}, nil, ""},
			{"nonroot/nouser:v1", &condImage{created: fresh}, nil, "rule non-root: condition runs-as-non-root: "},
			{"nonroot/root:v1", &condImage{user: "root", created: fresh}, nil, "rule non-root: condition runs-as-non-root: "},
			{"nonroot/zero:v1", &condImage{user: "00:00", created: fresh}, nil, "rule non-root: condition runs-as-non-root: "},
			{"nonroot/minuszero:v1", &condImage{user: "-0", created: fresh}, nil, "rule non-root: condition runs-as-non-root: "},
			{"nonroot/name:v1", &condImage{user: "toor", created: fresh}, nil, "rule non-root: condition runs-as-non-root: "},
			{"nonroot/group0:v1", &condImage{user: "1000:0", created: fresh}, nil, ""},
		}},
		{"base-pinned.yaml", []pull{
			{"base/pinned:v1", &condImage{user: "1", created: fresh, annotations: base}, nil, ""},
			{"base/unpinned:v1", &condImage{user: "1", created: fresh}, nil, "rule base-pinned: condition base-digest-annotated: "},
		}},
		{"fresh.yaml", []pull{
			{"fresh/new:v1", &condImage{user: "1", created: fresh}, nil, ""},
			{"fresh/old:v1", &condImage{user: "1", created: now.AddDate(0, 0, -90)}, nil, "rule fresh: condition built-within-30-days: "},
		}},
		{"no-secret-env.yaml", []pull{
			{"env/plain:v1", &condImage{user: "1", created: fresh, env: []string{"PATH=/usr/bin", "TOKENIZERS_PARALLELISM=false", "DB_PASSWORD_FILE=/run/secrets/db"}}, nil, ""},
			{"env/aws:v1", &condImage{user: "1", created: fresh, env: []string{"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}, nil, "rule no-secret-env: condition no-secret-env-name: "},
			{"env/token:v1", &condImage{user: "1", created: fresh, env: []string{"HELPER_ARGS=--auth ghp_" + strings.Repeat("Zq9x", 9)}}, nil, "rule no-secret-env: condition no-secret-env-value: "},
		}},
		{"model-license.yaml", []pull{
			{"models/mit:v1", nil, []string{"MIT"}, ""},
			{"models/llama:v1", nil, []string{"Apache-2.0", "LicenseRef-llama3-community"}, "rule model-license: condition license-allowed: "},
			{"models/image:v1", &condImage{user: "1", created: fresh}, nil, "rule model-license: condition license-allowed: "},
		}},
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file, ".yaml"), func(t *testing.T) {
			path := filepath.Join("..", "..", "docs", "examples", c.file)
			if diags := policy.Lint(path); len(diags) > 0 {
				t.Fatalf("policy lint %s: %v", c.file, diags)
			}
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range c.pulls {
				repo, tag, _ := strings.Cut(p.ref, ":")
				if p.image != nil {
					up.PushImage(t, repo, tag, p.image.options())
				} else {
					pushModelPack(t, up, repo, tag, p.model...)
				}
			}
			px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: string(src)})
			for _, p := range c.pulls {
				ref := px.Ref(up, p.ref)
				var res harness.Result
				if p.image != nil {
					res, _ = harness.CranePull(t, ref, "")
				} else {
					res = harness.CraneManifest(t, ref) // a model is not an image crane can pull
				}
				switch {
				case p.reason == "" && res.Err != nil:
					t.Errorf("%s: denied, want served: %s", p.ref, res)
				case p.reason != "" && (res.Err == nil || !strings.Contains(res.Stderr, "DENIED") || !strings.Contains(res.Stderr, p.reason) || !strings.Contains(res.Stderr, " is false")):
					t.Errorf("%s: want DENIED with %q in crane's error: %s", p.ref, p.reason, res)
				}
			}
		})
	}
}

// Conditions apply to each platform manifest of an index: the index is
// served, the non-root platform is pulled, the root one is refused. A
// config the proxy cannot read as one JSON value (a repeated "User") is
// refused with why, whatever the conditions say.
func TestConditionsIndexAndMalformedConfig(t *testing.T) {
	up := harness.StartRegistryBinary(t, "dist.local")
	src, err := os.ReadFile(filepath.Join("..", "..", "docs", "examples", "non-root.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	amd, arm := v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"}
	idx := up.PushIndexOf(t, "multi/app", "v1",
		condImage{user: "1000", platform: &amd}.options(),
		condImage{user: "0", platform: &arm}.options())

	// The image config with "User" twice: runtimes built on encoding/json
	// read the last one (root).
	img := up.PushImage(t, "dup/app", "v1", condImage{user: "1000"}.options())
	dup := strings.Replace(string(img.Config.Data), `"User":"1000"`, `"User":"1000","User":"0"`, 1)
	if dup == string(img.Config.Data) {
		t.Fatalf("config has no user to repeat: %s", img.Config.Data)
	}
	dd := up.PushBlob(t, "dup/app", []byte(dup))
	mf := strings.Replace(string(img.Manifest), img.Config.Digest, dd, 1)
	mf = strings.Replace(mf, `"size":`+jsonInt(img.Config.Size), `"size":`+jsonInt(int64(len(dup))), 1)
	up.TagManifest(t, "dup/app", "dup", []byte(mf), img.MediaType)

	// A config over the 4 MiB the proxy reads (a label of 5 MiB).
	big := up.PushImage(t, "big/app", "v1", harness.ImageOptions{Config: func(cf *v1.ConfigFile) {
		cf.Config.User = "1000"
		cf.Config.Labels = map[string]string{"padding": strings.Repeat("x", 5<<20)}
	}})

	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: string(src)})
	if res, _ := harness.CranePull(t, px.Ref(up, "big/app:v1"), ""); res.Err == nil || !strings.Contains(res.Stderr, "rule non-root: artifact: config "+big.Config.Digest) || !strings.Contains(res.Stderr, "exceeds the limit") {
		t.Fatalf("a 5 MiB config: want DENIED naming the limit: %s", res)
	}
	if res := harness.CraneDigest(t, px.Ref(up, "multi/app:v1")); res.Err != nil || strings.TrimSpace(res.Stdout) != idx.Digest {
		t.Fatalf("index by tag: %s", res)
	}
	if res, _ := harness.CranePull(t, px.Ref(up, "multi/app:v1"), "linux/amd64"); res.Err != nil {
		t.Fatalf("non-root platform: %s", res)
	}
	res, _ := harness.CranePull(t, px.Ref(up, "multi/app:v1"), "linux/arm64")
	if res.Err == nil || !strings.Contains(res.Stderr, "rule non-root: condition runs-as-non-root: ") {
		t.Fatalf("root platform: want DENIED by the condition: %s", res)
	}
	if res, _ := harness.CranePull(t, px.Ref(up, "dup/app:v1"), ""); res.Err != nil {
		t.Fatalf("the image with one user: %s", res)
	}
	res, _ = harness.CranePull(t, px.Ref(up, "dup/app:dup"), "")
	if res.Err == nil || !strings.Contains(res.Stderr, "rule non-root: artifact: config "+dd) || !strings.Contains(res.Stderr, `duplicate key "User"`) {
		t.Fatalf("a config with a repeated user: want DENIED naming the config: %s", res)
	}
	// The audit log carries the condition's reason.
	var audited bool
	for _, e := range px.Audit(t) {
		if e.Decision == "deny" && e.Digest == idx.Children[1].Digest && strings.Contains(fmt.Sprint(e.Raw["reasons"]), "rule non-root: condition runs-as-non-root: ") {
			audited = true
		}
	}
	if !audited {
		t.Errorf("no audit deny of %s with the condition's reason: %v", idx.Children[1].Digest, px.Audit(t))
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }
