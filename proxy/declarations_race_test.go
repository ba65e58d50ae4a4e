package proxy_test

// "One blob, every declaration" under races (from a review): sequences that got a blob's
// bytes to a client under a declaration it was never inspected as.

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/config"
)

// R2-1. Replica a holds an evidence grant of blob X (an attestation of a
// good model lists it as an in-toto statement) in its 30 s evidenceGrants
// cache. A model manifest declaring X as its chat template is pulled
// through replica b (links in the shared store). A consumer of that model
// asks replica a for X: blobGrant returns the cached evidence grant
// before it lists the blob's links, and X is served with the evidence
// shape check only, never inspected as the template it is declared as.
func TestEvidenceGrantCacheHidesNoContentDeclarationOnReplica(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	const tmplType = "application/vnd.ollama.image.template"
	gcfg := ivPushBlob(t, h, repo, []byte(`{"a":"good"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte("plain layer\n"), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", gcfg, good)
	mcfg := ivPushBlob(t, h, repo, []byte(`{"a":"model"}`), "application/vnd.oci.image.config.v1+json")
	tmpl := ivPushBlob(t, h, repo, templateStatement, tmplType)
	ivImage(t, h, repo+":1", mcfg, tmpl) // declares X as the chat template; not pulled yet

	store := strings.ReplaceAll(t.Name(), "/", "-")
	a, b := e.replica(t, store, "spool-a"), e.replica(t, store, "spool-b")
	baseA := a.proxy.URL + "/v2/upstream.local/" + repo
	baseB := b.proxy.URL + "/v2/upstream.local/" + repo
	resp, gb := get(t, baseA+"/manifests/good")
	if resp.StatusCode != 200 {
		t.Fatalf("good model: %d %s", resp.StatusCode, gb)
	}
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	att := ivDesc(tmpl)
	att.MediaType = "application/vnd.in-toto+json"
	ed := ivPushManifest(t, h, repo+":att", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.in-toto+json", Config: ivDesc(empty), Layers: []ivDescriptor{att},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: gd.String(), Size: int64(len(gb))}})
	if resp, body := get(t, baseA+"/manifests/"+ed.String()); resp.StatusCode != 200 {
		t.Fatalf("attestation: %d %s", resp.StatusCode, body)
	}
	blob := "/blobs/" + tmpl.Digest.String()
	if resp, body := get(t, baseA+blob); resp.StatusCode != 200 {
		t.Fatalf("attestation layer as evidence: %d %s", resp.StatusCode, body)
	}
	// The model declaring X as its chat template, through replica b.
	if resp, body := get(t, baseB+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model manifest on b: %d %s", resp.StatusCode, body)
	}
	resp, body := get(t, baseA+blob)
	if resp.StatusCode == 200 && bytes.Equal(body, templateStatement) {
		t.Fatalf("replica a served %s (declared %s by an allowed model of %s) from its cached evidence grant, never inspected as a template", tmpl.Digest, tmplType, repo)
	}
	// Control: inspected as the template, it is refused.
	b.want(t, repo+blob, http.StatusForbidden, "")
}

// R2-1b. Same in one process: the content grant made by the model's
// manifest is dropped from the grant cache (full) while the evidence grant
// is still held; the blob request takes the evidence grant.
func TestEvidenceGrantCacheHidesNoContentDeclarationAfterEviction(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	cfgText := "storage: {path: " + e.dir + "/small}\ncache: {size: 1}\nupstreams:\n  - name: upstream.local\n    url: " + e.up.URL +
		"\n    tagTTL: 1ms\npolicy: " + e.dir + "/policy.yaml\n"
	a := e.replicaFromText(t, cfgText)
	h, repo := e.up.Host, "models/chat"
	const tmplType = "application/vnd.ollama.image.template"
	gcfg := ivPushBlob(t, h, repo, []byte(`{"a":"good"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte("plain layer\n"), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", gcfg, good)
	mcfg := ivPushBlob(t, h, repo, []byte(`{"a":"model"}`), "application/vnd.oci.image.config.v1+json")
	tmpl := ivPushBlob(t, h, repo, templateStatement, tmplType)
	ivImage(t, h, repo+":1", mcfg, tmpl)
	ocfg := ivPushBlob(t, h, "models/other", []byte(`{"a":"other"}`), "application/vnd.oci.image.config.v1+json")
	var many []v1.Descriptor
	for i := 0; i < 12; i++ {
		many = append(many, ivPushBlob(t, h, "models/other", []byte("doc "+string(rune('a'+i))+"\n"), "application/vnd.oci.image.layer.v1.tar"))
	}
	ivImage(t, h, "models/other:1", ocfg, many...)

	base := a.proxy.URL + "/v2/upstream.local/" + repo
	_, gb := get(t, base+"/manifests/good")
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	att := ivDesc(tmpl)
	att.MediaType = "application/vnd.in-toto+json"
	ed := ivPushManifest(t, h, repo+":att", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.in-toto+json", Config: ivDesc(empty), Layers: []ivDescriptor{att},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: gd.String(), Size: int64(len(gb))}})
	get(t, base+"/manifests/"+ed.String())
	blob := "/blobs/" + tmpl.Digest.String()
	if resp, body := get(t, base+blob); resp.StatusCode != 200 {
		t.Fatalf("attestation layer as evidence: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model manifest: %d %s", resp.StatusCode, body)
	}
	a.want(t, "models/other/manifests/1", 200, "") // drops the model's content grant of X
	resp, body := get(t, base+blob)
	if resp.StatusCode == 200 && bytes.Equal(body, templateStatement) {
		t.Fatalf("%s (the chat template of an allowed model) served from the cached evidence grant after the content grant was evicted", tmpl.Digest)
	}
}

// R2-2. A cold fetch of X started under the README tag's grant is in
// flight when the template tag (declaring X as chat_template.jinja) is
// pulled and allowed. The fetch finishes inspected as README.md only: the
// client, which now holds the template tag, receives X; X is committed and
// recorded inspected, not bad, and the template tag stays allowed.
func TestColdFetchInFlightJudgedAsDeclarationAllowedMeanwhile(t *testing.T) {
	const repo = "models/race"
	held := newHeldBlob()
	e := startWith(t, held.wrap, modelPolicy)
	b := ivPushBlob(t, e.up.Host, repo, dunderTemplate, docRaw)
	declModel(t, e, repo+":readme", named(b, docRaw, titleKey, "README.md"))
	declModel(t, e, repo+":tmpl", named(b, docRaw, titleKey, "chat_template.jinja"))

	e.want(t, repo+"/manifests/readme", 200, "")
	st, body := held.fetch(t, e, repo, digest.Digest(b.Digest.String()), func() {
		// While the fetch is in flight, the client pulls the template tag.
		e.want(t, repo+"/manifests/tmpl", 200, "")
	})
	if st == 200 && bytes.Equal(body, dunderTemplate) {
		t.Errorf("blob served (200) after the template tag declaring it chat_template.jinja was allowed; never inspected as a template")
	}
	// Served-but-bad and not marked bad: the template tag stays allowed.
	if st, body := e.status(t, repo+"/manifests/tmpl"); st == 200 {
		t.Errorf("template tag still allowed (200) after its blob was served without the template check: %s", body)
	}
}

// replicaFromText opens another proxy of e's upstream from a config text.
func (e *env) replicaFromText(t *testing.T, text string) *env {
	t.Helper()
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	srv, ps, _ := serveProxy(t, cfg)
	return &env{up: e.up, srv: srv, proxy: ps, host: strings.TrimPrefix(ps.URL, "http://"), dir: e.dir}
}

// heldBlob holds the upstream's answer to a GET of one blob until the
// test releases it, so a test can act while a cold fetch is in flight.
type heldBlob struct {
	mu               sync.Mutex
	target           string
	arrived, release chan struct{}
	once             sync.Once
}

func newHeldBlob() *heldBlob {
	return &heldBlob{arrived: make(chan struct{}), release: make(chan struct{})}
}

// wrap is the upstream middleware (startWith's wrap).
func (h *heldBlob) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		tg := h.target
		h.mu.Unlock()
		if r.Method == http.MethodGet && tg != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+tg) {
			h.once.Do(func() { close(h.arrived) })
			<-h.release
		}
		next.ServeHTTP(w, r)
	})
}

// fetch GETs repo's blob d through the proxy, runs during once the fetch
// is held at the upstream, releases it and returns the client's status
// and body.
func (h *heldBlob) fetch(t *testing.T, e *env, repo string, d digest.Digest, during func()) (int, []byte) {
	t.Helper()
	h.mu.Lock()
	h.target = d.String()
	h.mu.Unlock()
	type result struct {
		st   int
		body []byte
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(e.proxy.URL + "/v2/upstream.local/" + repo + "/blobs/" + d.String())
		if err != nil {
			done <- result{}
			return
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		done <- result{resp.StatusCode, buf.Bytes()}
	}()
	select {
	case <-h.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the blob fetch never reached the upstream")
	}
	during()
	close(h.release)
	r := <-done
	return r.st, r.body
}
