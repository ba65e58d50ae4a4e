package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/harness"
)

// pullgate inspect on images in a real (distribution) registry: the
// manifest is parsed by the proxy's own parser (verify/ocimanifest), its
// descriptors checked (content.CheckManifest) and every layer inspected; a
// manifest the proxy would refuse is an error, not inspected.
func TestInspectImage(t *testing.T) {
	up := harness.StartUpstream(t, harness.UpstreamOptions{})
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("rules:\n  - {name: m, match: [\"**\"], action: allow, content: {denyCodeLayers: true}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := up.PushArtifact(t, "models/doc", harness.ArtifactOptions{ArtifactType: "application/vnd.cncf.model.manifest.v1+json",
		Payload: []byte("# a model\n"), PayloadMediaType: "application/vnd.cncf.model.doc.v1.raw", Title: "README.md", Tag: "v1"})
	up.PushArtifact(t, "models/code", harness.ArtifactOptions{ArtifactType: "application/vnd.cncf.model.manifest.v1+json",
		Payload: []byte("import os\n"), PayloadMediaType: "application/vnd.cncf.model.doc.v1.raw", Title: "run.py", Tag: "v1"})

	// Accepted by the registry, refused by the proxy's parser: a layer of
	// negative size.
	var mf map[string]any
	if err := json.Unmarshal(doc.Manifest, &mf); err != nil {
		t.Fatal(err)
	}
	mf["layers"].([]any)[0].(map[string]any)["size"] = -1
	odd, err := json.Marshal(mf)
	if err != nil {
		t.Fatal(err)
	}
	up.TagManifest(t, "models/doc", "odd", odd, "application/vnd.oci.image.manifest.v1+json")

	for _, c := range []struct {
		ref  string
		want int
	}{
		{"models/doc:v1", 0},
		{"models/code:v1", 1}, // run.py under denyCodeLayers: a CheckManifest finding
		{"models/doc:odd", 1},
	} {
		args := []string{"inspect", up.Ref(c.ref), "--plain-http", "--policy", pol, "--rule", "m"}
		if got := run(args); got != c.want {
			t.Errorf("pullgate %s: exit %d, want %d", strings.Join(args, " "), got, c.want)
		}
	}
}
