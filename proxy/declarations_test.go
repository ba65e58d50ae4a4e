package proxy_test

// One blob, every declaration (issue 11): a blob is inspected as every way
// an allowed manifest of its repository declares it (media type, title,
// org.cncf.model.filepath, org.cnai.model.filepath), in one manifest or
// across tags, warm or cold, after a restart and on another replica.

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/proxy/config"
)

const (
	titleKey    = "org.opencontainers.image.title"
	filepathKey = "org.cncf.model.filepath"
	legacyKey   = "org.cnai.model.filepath"
	modelConfig = "application/vnd.cncf.model.config.v1+json"
)

// dunderTemplate is refused as a Jinja template (it does not parse as one,
// so pullgate cannot vouch for it) and served as a README: no engine parses
// it as Jinja, and as a Go template it only reads .Prompt. (A README with a
// template that reaches Python objects is refused as a README too.)
var dunderTemplate = []byte("You are a helpful assistant. {{ .Prompt }} then {% if %}\n")

// benignTemplate is a template as real models ship them.
var benignTemplate = []byte("You are a helpful assistant.\n{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")

// named is a layer descriptor of blob b with name annotations (key, value
// pairs).
func named(b v1.Descriptor, mediaType string, kv ...string) ivDescriptor {
	d := ivDesc(b)
	d.MediaType = mediaType
	d.Annotations = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Annotations[kv[i]] = kv[i+1]
	}
	return d
}

// declModel pushes a ModelPack-style manifest of layers under repo:tag
// (its config unique to the tag).
func declModel(t testing.TB, e *env, repoTag string, layers ...ivDescriptor) digest.Digest {
	t.Helper()
	repo := repoTag[:strings.LastIndex(repoTag, ":")]
	cfg := ivPushBlob(t, e.up.Host, repo, []byte(fmt.Sprintf(`{"tag":%q}`, repoTag)), modelConfig)
	return ivPushManifest(t, e.up.Host, repoTag, ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		Config: ivDesc(cfg), Layers: layers})
}

// status GETs a path of the proxy of e and returns the status and body.
func (e *env) status(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, b := get(t, e.proxy.URL+"/v2/upstream.local/"+path)
	return resp.StatusCode, string(b)
}

func (e *env) want(t *testing.T, path string, want int, contains string) {
	t.Helper()
	st, b := e.status(t, path)
	if st != want || contains != "" && !strings.Contains(b, contains) {
		t.Fatalf("GET %s: %d %s; want %d with %q", path, st, b, want, contains)
	}
}

// a) One manifest lists the same blob twice, as a README and as a chat
// template: the blob is inspected as both, whichever comes first.
func TestBlobDeclaredTwiceInOneManifest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      []byte
		readmeLst bool
		want      int
	}{
		{"template first", dunderTemplate, false, http.StatusForbidden},
		{"readme last", dunderTemplate, true, http.StatusForbidden},
		{"benign template", benignTemplate, true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startWith(t, nil, modelPolicy)
			repo := "models/twice"
			b := ivPushBlob(t, e.up.Host, repo, tc.body, docRaw)
			tmpl := named(b, docRaw, titleKey, "chat_template.jinja")
			readme := named(b, docRaw, titleKey, "README.md")
			layers := []ivDescriptor{readme, tmpl}
			if tc.readmeLst {
				layers = []ivDescriptor{tmpl, readme}
			}
			declModel(t, e, repo+":1", layers...)
			e.want(t, repo+"/manifests/1", 200, "")
			e.want(t, repo+"/blobs/"+b.Digest.String(), tc.want, "")
			if tc.want == http.StatusForbidden {
				// The finding is the blob's: the manifest is denied from now on.
				e.want(t, repo+"/blobs/"+b.Digest.String(), http.StatusForbidden, "template")
				e.want(t, repo+"/manifests/1", http.StatusForbidden, "template")
			} else {
				e.want(t, repo+"/blobs/"+b.Digest.String(), 200, "")
			}
		})
	}
}

// b) Two tags of a repository declare the same blob differently (README.md
// in one, chat_template.jinja in the other): the blob is served only once
// it passed as both, whichever tag was pulled first, whether it was
// already served (stored, warm) or not (cold), and after a restart.
func TestBlobDeclaredDifferentlyByTwoTags(t *testing.T) {
	const repo = "models/tags"
	setup := func(t *testing.T, body []byte) (*env, string) {
		e := startWith(t, nil, modelPolicy)
		b := ivPushBlob(t, e.up.Host, repo, body, docRaw)
		declModel(t, e, repo+":readme", named(b, docRaw, titleKey, "README.md"))
		declModel(t, e, repo+":tmpl", named(b, docRaw, titleKey, "chat_template.jinja"))
		return e, repo + "/blobs/" + b.Digest.String()
	}
	t.Run("readme served then the template tag then the readme tag again", func(t *testing.T) {
		e, blob := setup(t, dunderTemplate)
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, 200, "") // inspected as README.md: text
		e.want(t, repo+"/manifests/tmpl", 200, "")
		e.want(t, repo+"/manifests/readme", 200, "") // its grant was the last made
		e.want(t, blob, http.StatusForbidden, "chat_template.jinja")
		e.want(t, repo+"/manifests/readme", http.StatusForbidden, "template")
	})
	t.Run("template tag then readme tag then the cold blob", func(t *testing.T) {
		e, blob := setup(t, dunderTemplate)
		e.want(t, repo+"/manifests/tmpl", 200, "")
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, http.StatusForbidden, "chat_template.jinja")
		e.want(t, repo+"/manifests/tmpl", http.StatusForbidden, "template")
	})
	t.Run("readme tag then template tag then the cold blob", func(t *testing.T) {
		e, blob := setup(t, dunderTemplate)
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, repo+"/manifests/tmpl", 200, "")
		e.want(t, blob, http.StatusForbidden, "chat_template.jinja")
	})
	t.Run("benign template passes as both", func(t *testing.T) {
		e, blob := setup(t, benignTemplate)
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, 200, "")
		e.want(t, repo+"/manifests/tmpl", 200, "")
		e.want(t, blob, 200, "")
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, 200, "")
	})
	t.Run("restart after readme served and template tag pulled", func(t *testing.T) {
		e, blob := setup(t, dunderTemplate)
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, 200, "")
		e.want(t, repo+"/manifests/tmpl", 200, "")
		e.open(t) // a new process over the same store
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, http.StatusForbidden, "chat_template.jinja")
	})
	t.Run("restart after template tag pulled with the blob cold", func(t *testing.T) {
		e, blob := setup(t, dunderTemplate)
		e.want(t, repo+"/manifests/tmpl", 200, "")
		e.open(t)
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, http.StatusForbidden, "chat_template.jinja")
	})
	t.Run("restart keeps inspection records per declaration", func(t *testing.T) {
		e, blob := setup(t, benignTemplate)
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, 200, "")
		e.want(t, repo+"/manifests/tmpl", 200, "")
		e.want(t, blob, 200, "")
		reg := e.open(t)
		e.want(t, repo+"/manifests/readme", 200, "")
		e.want(t, blob, 200, "")
		// Both declarations were recorded as inspected: nothing is
		// inspected again.
		if n := inspections(t, reg); n != 0 {
			t.Fatalf("%v inspections after the restart; both declarations were recorded", n)
		}
	})
}

// sharedMem is a storage driver for tests that replicas of one test open
// by name: they share its content, as replicas share an S3 bucket.
type sharedMem struct {
	mu sync.Mutex
	m  map[string]storagedriver.StorageDriver
	// wrap, if set, wraps each new in-memory driver (fault injection).
	wrap func(storagedriver.StorageDriver) storagedriver.StorageDriver
}

func (s *sharedMem) Create(_ context.Context, p map[string]any) (storagedriver.StorageDriver, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := fmt.Sprint(p["name"])
	if d, ok := s.m[n]; ok {
		return d, nil
	}
	var d storagedriver.StorageDriver = inmemory.New()
	if s.wrap != nil {
		d = s.wrap(d)
	}
	s.m[n] = d
	return d, nil
}

func init() {
	factory.Register("sharedmem-test", &sharedMem{m: map[string]storagedriver.StorageDriver{}})
}

// replica opens another proxy on e's upstream and policy whose store is
// the shared in-memory store called name.
func (e *env) replica(t *testing.T, name, spool string) *env {
	t.Helper()
	driver := e.storageDriver
	if driver == "" {
		driver = "sharedmem-test"
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
storage: {driver: %s, parameters: {name: %s}, spoolDir: %s}
upstreams:
  - name: upstream.local
    url: %s
    tagTTL: 1ms
policy: %s
`, driver, name, filepath.Join(e.dir, spool), e.up.URL, filepath.Join(e.dir, "policy.yaml"))))
	if err != nil {
		t.Fatal(err)
	}
	srv, ps, _ := serveProxy(t, cfg)
	return &env{up: e.up, srv: srv, proxy: ps, host: strings.TrimPrefix(ps.URL, "http://"), dir: e.dir, storageDriver: e.storageDriver}
}

// b) across replicas: replica a served the blob as README.md; a client
// pulls the template tag through replica b, then asks replica a for the
// blob (a load balancer in front of both). Replica a holds the grant of
// the README tag, but the store links the blob to the template tag too.
func TestBlobDeclaredDifferentlyOnAnotherReplica(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want int
	}{
		{"dunder template", dunderTemplate, http.StatusForbidden},
		{"benign template", benignTemplate, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startWith(t, nil, modelPolicy)
			const repo = "models/replicas"
			b := ivPushBlob(t, e.up.Host, repo, tc.body, docRaw)
			declModel(t, e, repo+":readme", named(b, docRaw, titleKey, "README.md"))
			declModel(t, e, repo+":tmpl", named(b, docRaw, filepathKey, "chat_template.jinja"))
			store := strings.ReplaceAll(t.Name(), "/", "-")
			a, bb := e.replica(t, store, "spool-a"), e.replica(t, store, "spool-b")
			blob := repo + "/blobs/" + b.Digest.String()
			a.want(t, repo+"/manifests/readme", 200, "")
			a.want(t, blob, 200, "")
			bb.want(t, repo+"/manifests/tmpl", 200, "")
			a.want(t, blob, tc.want, "")
			bb.want(t, blob, tc.want, "")
		})
	}
}

// c) One descriptor whose names disagree in kind: titled README.md, but
// modctl writes it under its org.cncf.model.filepath (or the legacy
// org.cnai.model.filepath). It is judged as each name.
func TestLayerNamesDisagree(t *testing.T) {
	code := []byte("#!/usr/bin/env python\nprint('hello')\n")
	for _, tc := range []struct {
		name         string
		body         []byte
		kv           []string
		manifest     int
		blob         int
		reasonPhrase string
	}{
		{"code filepath", code, []string{titleKey, "README.md", filepathKey, "modeling_evil.py"}, 403, 403, "modeling_evil.py"},
		{"code legacy filepath", code, []string{titleKey, "README.md", legacyKey, "modeling_evil.py"}, 403, 403, "modeling_evil.py"},
		{"code title and doc filepath", code, []string{titleKey, "run.sh", filepathKey, "README.md"}, 403, 403, "run.sh"},
		{"template filepath", dunderTemplate, []string{titleKey, "README.md", filepathKey, "chat_template.jinja"}, 200, 403, "chat_template.jinja"},
		{"template legacy filepath", dunderTemplate, []string{titleKey, "README.md", legacyKey, "chat_template.jinja"}, 200, 403, "chat_template.jinja"},
		{"benign template filepath", benignTemplate, []string{titleKey, "README.md", filepathKey, "chat_template.jinja"}, 200, 200, ""},
		{"agreeing names", code, []string{titleKey, "README.md", filepathKey, "README.md"}, 200, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startWith(t, nil, modelPolicy)
			const repo = "models/names"
			b := ivPushBlob(t, e.up.Host, repo, tc.body, docRaw)
			declModel(t, e, repo+":1", named(b, docRaw, tc.kv...))
			e.want(t, repo+"/manifests/1", tc.manifest, tc.reasonPhrase)
			e.want(t, repo+"/blobs/"+b.Digest.String(), tc.blob, tc.reasonPhrase)
		})
	}
}

// inspections is how many content inspections a proxy ran (stored or
// streamed blobs).
func inspections(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pullgate_inspection_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("no pullgate_inspection_duration_seconds metric")
	return 0
}

// b) when the grant that held the template declaration is dropped (the
// grant cache is full), a grant made afresh from the README tag alone does
// not let the blob through: the store's links still name the template tag.
func TestBlobDeclarationsSurviveGrantEviction(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
storage: {path: %s}
cache: {size: 1}
upstreams:
  - name: upstream.local
    url: %s
    tagTTL: 1ms
policy: %s
`, filepath.Join(e.dir, "small"), e.up.URL, filepath.Join(e.dir, "policy.yaml"))))
	if err != nil {
		t.Fatal(err)
	}
	srv, ps, _ := serveProxy(t, cfg)
	e.srv, e.proxy = srv, ps
	const repo = "models/evict"
	b := ivPushBlob(t, e.up.Host, repo, dunderTemplate, docRaw)
	declModel(t, e, repo+":readme", named(b, docRaw, titleKey, "README.md"))
	declModel(t, e, repo+":tmpl", named(b, docRaw, titleKey, "chat_template.jinja"))
	var many []ivDescriptor
	for i := 0; i < 12; i++ { // more blobs than the grant cache holds (8 per cache entry of size)
		l := ivPushBlob(t, e.up.Host, "models/other", []byte(fmt.Sprintf("doc %d\n", i)), docRaw)
		many = append(many, named(l, docRaw, titleKey, fmt.Sprintf("doc%d.md", i)))
	}
	declModel(t, e, "models/other:1", many...)

	e.want(t, repo+"/manifests/tmpl", 200, "")
	e.want(t, "models/other/manifests/1", 200, "") // drops the template tag's grant of the blob
	e.want(t, repo+"/manifests/readme", 200, "")
	e.want(t, repo+"/blobs/"+b.Digest.String(), http.StatusForbidden, "chat_template.jinja")
}
