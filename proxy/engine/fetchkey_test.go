package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/verify/content"
)

// TestFetchKeyEncodesEveryField: requests share a download only when its
// key is theirs, so every field of fetchKey must change its String (the
// inflight group's key). A field added later and left out of the encoding
// fails here.
func TestFetchKeyEncodesEveryField(t *testing.T) {
	base := fetchKey{Digest: digest.FromString("blob")}
	seen := map[string]string{base.String(): "the base key"}
	rt := reflect.TypeFor[fetchKey]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		for _, val := range otherValues(t, f) {
			k := base
			reflect.ValueOf(&k).Elem().Field(i).Set(val)
			s := k.String()
			if prev, dup := seen[s]; dup {
				t.Errorf("fetchKey.%s = %v encodes as %s, like %s: requests checked otherwise would share a download", f.Name, val, s, prev)
			}
			seen[s] = f.Name + " = " + val.String()
		}
	}
}

// otherValues are values of field f other than its value in the base key,
// and other than each other.
func otherValues(t *testing.T, f reflect.StructField) []reflect.Value {
	t.Helper()
	switch f.Type.Kind() {
	case reflect.String:
		if f.Type == reflect.TypeFor[digest.Digest]() {
			return []reflect.Value{reflect.ValueOf(digest.FromString("other blob")), reflect.ValueOf(digest.Digest(""))}
		}
		return []reflect.Value{reflect.ValueOf("a").Convert(f.Type), reflect.ValueOf("b").Convert(f.Type)}
	case reflect.Bool:
		return []reflect.Value{reflect.ValueOf(true).Convert(f.Type)}
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return []reflect.Value{reflect.ValueOf(1).Convert(f.Type), reflect.ValueOf(2).Convert(f.Type)}
	}
	t.Fatalf("fetchKey.%s is a %s: give the test values of that kind", f.Name, f.Type)
	return nil
}

// TestFetchPlanKeys: fetchPlan keys a download by everything its check
// depends on: evidence or content, the media type checked as evidence, the
// policy revision and rule, every class the grant holds, the tensor
// expectation; the same grant gets the same key.
func TestFetchPlanKeys(t *testing.T) {
	dir := t.TempDir()
	load := func(name, text string) *policy.Policy {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		pol, err := policy.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return pol
	}
	const rules = `rules:
  - name: models
    match: ["up/models/**"]
    action: allow
    content:
      formats: { pickle: deny }
  - name: other
    match: ["up/other/**"]
    action: allow
    content:
      formats: { pickle: deny }
`
	pol1 := load("p1.yaml", rules)
	pol2 := load("p2.yaml", rules+"  - name: open\n    match: [\"up/open/**\"]\n    action: allow\n")
	// Only the load-time references requirement differs.
	pol3 := load("p3.yaml", strings.Replace(rules, "formats: { pickle: deny }\n  - name: other", "formats: { pickle: deny }\n      references: {require: allowlist, allow: [\"org/*\"]}\n  - name: other", 1))
	if pol3.Revision() == pol1.Revision() {
		t.Fatal("content.references is not part of the revision")
	}
	if pol1.Revision() == pol2.Revision() {
		t.Fatal("two policies of one revision")
	}
	cfg := &config.Config{Limits: config.Limits{MaxEvidenceSize: 1 << 20}}
	s := &Engine{cfg: cfg, memory: newMemory(16)}
	query := func(pol *policy.Policy, repo string) *Query {
		sub := Subject{Upstream: "up", Repo: repo}
		return &Query{pol: pol, sub: sub, rule: pol.Match(sub.Repository())}
	}
	blob := digest.FromString("weights")
	layer := func(mt, title string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: blob, Size: 10, Annotations: map[string]string{"org.opencontainers.image.title": title}}
	}
	readme := content.Class{MediaType: "application/vnd.cncf.model.doc.v1.raw", Name: "README.md"}
	tmpl := content.Class{MediaType: "application/vnd.cncf.model.doc.v1.raw", Name: "chat_template.jinja"}
	manifest := digest.FromString("manifest")
	contentGrant := BlobGrant{Manifest: manifest, Desc: layer(readme.MediaType, readme.Name), Classes: []content.Class{readme}}
	both := BlobGrant{Manifest: manifest, Desc: layer(readme.MediaType, readme.Name), Classes: []content.Class{tmpl, readme}}
	evidence := BlobGrant{Manifest: manifest, Desc: ocispec.Descriptor{MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json", Digest: blob, Size: 10}, Evidence: true}
	evidence2 := evidence
	evidence2.Desc.MediaType = "application/vnd.dsse.envelope.v1+json"

	keys := map[string]string{}
	add := func(name string, q *Query, g BlobGrant) string {
		k := s.fetchPlan(q, g).key.String()
		if prev, dup := keys[k]; dup {
			t.Errorf("%s has the key of %s: %s", name, prev, k)
		}
		keys[k] = name
		return k
	}
	k := add("content grant", query(pol1, "models/m"), contentGrant)
	if again := s.fetchPlan(query(pol1, "models/m"), contentGrant).key.String(); again != k {
		t.Errorf("one grant, two keys: %s, %s", k, again)
	}
	add("content grant with one more class", query(pol1, "models/m"), both)
	add("content grant under another rule", query(pol1, "other/m"), contentGrant)
	add("content grant under another revision", query(pol2, "models/m"), contentGrant)
	add("content grant under another references requirement", query(pol3, "models/m"), contentGrant)
	add("evidence grant", query(pol1, "models/m"), evidence)
	add("evidence grant of another media type", query(pol1, "models/m"), evidence2)
	add("grant under a rule without content checks", query(pol2, "open/m"), contentGrant)
	s.tensors.Add(grantKey(pol1.Revision(), "up/models/m", blob), &tensorExpectation{id: "mbom-1"}, time.Hour)
	add("content grant with a tensor expectation", query(pol1, "models/m"), contentGrant)
	s.tensors.Add(grantKey(pol1.Revision(), "up/models/m", blob), &tensorExpectation{id: "mbom-2"}, time.Hour)
	add("content grant with another tensor expectation", query(pol1, "models/m"), contentGrant)
}
