package proxy_test

// Invariant tests from a security review: each tries a way to be served
// bytes the proxy did not verify (or did not verify under the rules in
// force) in the repository where they are served.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/harness"
)

// modelPolicy allows models/** with content checks (pickle refused, code
// layers and auto_map configs refused).
const modelPolicy = `rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      formats: { pickle: deny }
      denyCodeLayers: true
`

// templatePolicy allows Ollama/ORAS models whose chat templates may not
// reach Python internals.
const templatePolicy = `rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [ollama, oras]
      formats: { gguf: { allowChatTemplateDunder: false }, pickle: deny }
`

// statementEnvelope is a DSSE envelope (signature not checked by anyone
// here) whose in-toto statement names subject: evidence about subject.
func statementEnvelope(subject digest.Digest) []byte {
	st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"%s"}}],"predicateType":"https://example.com/p","predicate":{}}`, subject.Encoded())
	return []byte(fmt.Sprintf(`{"payloadType":"application/vnd.in-toto+json","payload":"%s","signatures":[{"keyid":"","sig":"c2ln"}]}`, base64.StdEncoding.EncodeToString([]byte(st))))
}

// ivImage pushes an OCI image manifest of cfg and layers under repo:tag.
func ivImage(t testing.TB, host, repoTag string, cfg v1.Descriptor, layers ...v1.Descriptor) digest.Digest {
	t.Helper()
	m := ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: ivDesc(cfg)}
	for _, l := range layers {
		m.Layers = append(m.Layers, ivDesc(l))
	}
	return ivPushManifest(t, host, repoTag, m)
}

type ivRawMF struct {
	body []byte
	mt   types.MediaType
}

func (r ivRawMF) RawManifest() ([]byte, error)        { return r.body, nil }
func (r ivRawMF) MediaType() (types.MediaType, error) { return r.mt, nil }

// ivPushBlob uploads raw bytes as a blob of repo and returns its descriptor.
func ivPushBlob(t testing.TB, host, repo string, b []byte, mt string) v1.Descriptor {
	t.Helper()
	r, err := name.NewRepository(host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	l := static.NewLayer(b, types.MediaType(mt))
	if err := remote.WriteLayer(r, l); err != nil {
		t.Fatal(err)
	}
	d, _ := l.Digest()
	return v1.Descriptor{MediaType: types.MediaType(mt), Digest: d, Size: int64(len(b))}
}

// ivPushManifest uploads a raw OCI manifest under repo:tag and returns its digest.
func ivPushManifest(t testing.TB, host, repoTag string, m any) digest.Digest {
	t.Helper()
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ref, ivRawMF{body, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	return digest.FromBytes(body)
}

type ivDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ivManifest struct {
	SchemaVersion int            `json:"schemaVersion"`
	MediaType     string         `json:"mediaType"`
	ArtifactType  string         `json:"artifactType,omitempty"`
	Config        ivDescriptor   `json:"config"`
	Layers        []ivDescriptor `json:"layers"`
	Subject       *ivDescriptor  `json:"subject,omitempty"`
}

func ivDesc(d v1.Descriptor) ivDescriptor {
	return ivDescriptor{MediaType: string(d.MediaType), Digest: d.Digest.String(), Size: d.Size}
}

func ivGet(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	st, h, b, err := ivDo(t, http.MethodGet, url, hdr)
	return &http.Response{StatusCode: st, Header: h}, b, err
}

func ivDo(t *testing.T, method, url string, hdr map[string]string) (int, http.Header, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, rerr
}

// FINDING 1: a Range request during a cold (in-flight) fetch is answered
// with a complete 206 response made of bytes that were never verified. The
// upstream lies about byte 10 of the blob; the digest check fails later, but
// the ranged client already holds a complete, well-formed response with the
// wrong bytes (the hold-back only protects the last 64 KiB).
func TestRangeDuringColdFetchWaitsForVerification(t *testing.T) {
	var target atomic.Value
	target.Store("")
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tg := target.Load().(string)
			if r.Method == http.MethodGet && tg != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+tg) {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				b := rec.Body.Bytes()
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				b[10] ^= 0xff // a lie early in the blob
				w.Write(b[:len(b)/2])
				w.(http.Flusher).Flush()
				time.Sleep(time.Second)
				w.Write(b[len(b)/2:])
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := startWith(t, wrap, testPolicy)
	img, ld := oneLayerImage(t, 1<<20)
	push(t, e.up.Host, "app/range:1", img)
	l, _ := img.LayerByDigest(ld)
	rc, _ := l.Compressed()
	orig, _ := io.ReadAll(rc)
	target.Store(ld.String())

	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/range/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	resp, body, rerr := ivGet(t, e.proxy.URL+"/v2/upstream.local/app/range/blobs/"+ld.String(), map[string]string{"Range": "bytes=0-99"})
	if rerr == nil && resp.StatusCode == http.StatusPartialContent && len(body) == 100 && !bytes.Equal(body, orig[:100]) {
		t.Fatalf("client received a complete 206 (%s, %d bytes) whose bytes differ from the blob %s (byte 10: got %#x, want %#x): unverified bytes served",
			resp.Header.Get("Content-Range"), len(body), ld, body[10], orig[10])
	}
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "DIGEST_INVALID") {
		t.Fatalf("range on a lying upstream's blob: %d %s, want 502 DIGEST_INVALID", resp.StatusCode, body)
	}

	// Control: an honest cold fetch answers the same range with the right
	// bytes once the whole blob was verified.
	target.Store("")
	img2, ld2 := oneLayerImage(t, 1<<20)
	push(t, e.up.Host, "app/range2:1", img2)
	l2, _ := img2.LayerByDigest(ld2)
	rc2, _ := l2.Compressed()
	orig2, _ := io.ReadAll(rc2)
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/range2/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	resp, body, rerr = ivGet(t, e.proxy.URL+"/v2/upstream.local/app/range2/blobs/"+ld2.String(), map[string]string{"Range": "bytes=100-299"})
	if rerr != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, orig2[100:300]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-299/%d", len(orig2)) {
		t.Fatalf("honest range: %d %q err=%v, %d bytes (equal: %v)", resp.StatusCode, resp.Header.Get("Content-Range"), rerr, len(body), bytes.Equal(body, orig2[100:300]))
	}
}

// FINDING 2: a blob that content inspection refused (a JSON config with a
// chat template reaching Python objects) is served in the same repository
// once any manifest lists it as an "attestation" layer whose subject is an
// allowed manifest: evidence grants bypass the rule's content checks and
// the recorded content finding.
func TestEvidenceGrantDoesNotBypassContentRules(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	evil := []byte(`{"chat_template": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"}`)
	bad := ivPushBlob(t, h, repo, evil, "application/vnd.oci.image.layer.v1.tar")

	gd := ivImage(t, h, repo+":good", cfg, good)
	bd := ivImage(t, h, repo+":bad", cfg, bad)

	base := e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, b := get(t, base+"/manifests/good"); resp.StatusCode != 200 {
		t.Fatalf("good manifest: %d %s", resp.StatusCode, b)
	}
	// The model with the malicious template: the blob is refused by
	// content inspection and the manifest is denied from then on.
	get(t, base+"/manifests/bad")
	if resp, b := get(t, base+"/blobs/"+bad.Digest.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("control: malicious blob through its own manifest: %d %s (want 403)", resp.StatusCode, b)
	}
	if resp, b := get(t, base+"/manifests/"+bd.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("control: manifest with a refused blob: %d %s (want 403)", resp.StatusCode, b)
	}

	// Anyone who can push to the upstream repository adds an "attestation"
	// listing the same blob, with the good model as its subject.
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	att := ivDesc(bad)
	att.MediaType = "application/vnd.in-toto+json"
	gdesc := ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: gd.String()}
	if resp, b := get(t, base+"/manifests/good"); resp.StatusCode == 200 {
		gdesc.Size = int64(len(b))
	}
	ed := ivPushManifest(t, h, repo+":evidence", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.in-toto+json", Config: ivDesc(empty), Layers: []ivDescriptor{att}, Subject: &gdesc})
	resp, b := get(t, base+"/manifests/"+ed.String())
	t.Logf("evidence manifest: %d", resp.StatusCode)
	resp, b = get(t, base+"/blobs/"+bad.Digest.String())
	if resp.StatusCode == 200 && bytes.Equal(b, evil) {
		t.Fatalf("blob %s, refused by content inspection under rule models, was served in %s (200, %d bytes: %s)",
			bad.Digest, repo, len(b), b)
	}
}

// FINDING 3: content inspection results are recorded per (revision, rule,
// blob) only, but what inspection checks depends on the layer's declared
// media type (and title). A text blob accepted as a plain OCI layer is later
// served uninspected as a chat template, where the template check would
// have refused it.
func TestInspectionNotReusedAcrossMediaTypes(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h := e.up.Host
	tmpl := func(s string) []byte {
		return []byte("You are a helpful assistant " + s + ". {{ .Prompt }} {{ ''.__class__.__mro__[1].__subclasses__() }}\n")
	}
	const tmplType = "application/vnd.ollama.image.template"
	const ociLayer = "application/vnd.oci.image.layer.v1.tar"

	// Control: the template inspector refuses this content when the blob
	// is first seen as a template.
	ccfg := ivPushBlob(t, h, "models/control", []byte(`{"a":1}`), "application/vnd.oci.image.config.v1+json")
	cb := ivPushBlob(t, h, "models/control", tmpl("control"), tmplType)
	ivImage(t, h, "models/control:1", ccfg, cb)
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/models/control/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("control manifest: %d", resp.StatusCode)
	}
	if resp, b := get(t, e.proxy.URL+"/v2/upstream.local/models/control/blobs/"+cb.Digest.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("control: template with __class__ was not refused: %d %s", resp.StatusCode, b)
	}

	// Same kind of content: first pulled as a plain file layer...
	body := tmpl("attack")
	cfg := ivPushBlob(t, h, "models/files", []byte(`{"a":2}`), "application/vnd.oci.image.config.v1+json")
	asFile := ivPushBlob(t, h, "models/files", body, ociLayer)
	ivImage(t, h, "models/files:1", cfg, asFile)
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/models/files/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("files manifest: %d", resp.StatusCode)
	}
	if resp, b := get(t, e.proxy.URL+"/v2/upstream.local/models/files/blobs/"+asFile.Digest.String()); resp.StatusCode != 200 {
		t.Fatalf("as a plain layer: %d %s", resp.StatusCode, b)
	}
	// ...then declared as the chat template of a model (another repository,
	// same rule).
	mcfg := ivPushBlob(t, h, "models/chat", []byte(`{"a":3}`), "application/vnd.oci.image.config.v1+json")
	asTmpl := ivPushBlob(t, h, "models/chat", body, tmplType)
	ivImage(t, h, "models/chat:1", mcfg, asTmpl)
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/models/chat/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("chat manifest: %d", resp.StatusCode)
	}
	resp, b := get(t, e.proxy.URL+"/v2/upstream.local/models/chat/blobs/"+asTmpl.Digest.String())
	if resp.StatusCode == 200 && bytes.Equal(b, body) {
		t.Fatalf("chat template %s containing __class__ was served as %s (200) because it had passed inspection as %s", asTmpl.Digest, tmplType, ociLayer)
	}
}

var _ = rand.Read

// Attacks that are refused (these tests pass).
func TestPathTricksRefused(t *testing.T) {
	e := startWith(t, nil, testPolicy)
	img, ld := oneLayerImage(t, 4096)
	push(t, e.up.Host, "app/a:1", img)
	push(t, e.up.Host, "app/b:1", img) // exists upstream in app/b too
	push(t, e.up.Host, "blocked/x:1", img)
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/a/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("manifest")
	}
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/a/blobs/"+ld.String()); resp.StatusCode != 200 {
		t.Fatal("blob")
	}
	d := ld.String()
	for _, target := range []string{
		"/v2/upstream.local/app/b/blobs/" + d,
		"/v2/app/b/blobs/" + d + "?ns=upstream.local",
		"/v2/upstream.local/app/a/blobs/" + d + "?ns=upstream.local",
		"/v2/upstream.local/app/b/../a/blobs/" + d,
		"/v2/upstream.local/app/b/./blobs/" + d,
		"/v2/upstream.local/app%2Fa/blobs/" + d,
		"/v2/upstream.local%2Fapp/a/blobs/" + d,
		"/v2/upstream.local/app//a/blobs/" + d,
		"/v2/upstream.local/App/a/blobs/" + d,
		"/v2/upstream.local/app/A/blobs/" + d,
		"/v2/upstream.local/app/a/blobs/" + strings.ToUpper(d),
		"/v2/upstream.local/app/a/blobs/" + d + "/",
		"/v2/upstream.local/app/b/blobs/" + d + "?ns=",
		"/v2/blocked/x/blobs/" + d + "?ns=upstream.local",
		"/v2/upstream.local/blocked/x/blobs/" + d,
		"/v2/upstream.local/app/a/../../blocked/x/manifests/1",
		"/v2/upstream.local/blocked/x/manifests/1?ns=upstream.local",
		"/v2/upstream.local/app%5Cb/blobs/" + d,
	} {
		for _, m := range []string{"GET", "HEAD"} {
			st, body := harness.RawRequest(t, e.host, m, target)
			if st == 200 || st == 206 {
				t.Errorf("%s %s: %d %s", m, target, st, body)
			}
		}
	}
	// Range on a repository without a grant.
	resp, _, _ := ivGet(t, e.proxy.URL+"/v2/upstream.local/app/b/blobs/"+d, map[string]string{"Range": "bytes=0-10"})
	if resp.StatusCode == 200 || resp.StatusCode == 206 {
		t.Errorf("range in app/b: %d", resp.StatusCode)
	}
}

// FINDING 6: when the manifest declares size 0 for a blob and the upstream
// answers Content-Length: 0, the proxy sends a complete "200, 0 bytes"
// response for that digest before the fetch verified anything (n <= 0
// returns before CopyTo, so there is no wait for the digest check). The
// digest check then fails (sha256 of nothing is not the digest).
func TestZeroLengthBlobVerifiedBeforeServed(t *testing.T) {
	var target atomic.Value
	target.Store("")
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tg := target.Load().(string); tg != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+tg) {
				w.Header().Set("Content-Length", "0")
				w.Header().Set("Docker-Content-Digest", tg)
				w.WriteHeader(200)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := startWith(t, wrap, testPolicy)
	h, repo := e.up.Host, "app/zero"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`), "application/vnd.oci.image.config.v1+json")
	layer := ivPushBlob(t, h, repo, []byte("real layer content"), "application/vnd.oci.image.layer.v1.tar")
	l := ivDesc(layer)
	l.Size = 0
	ivPushManifest(t, h, repo+":1", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: ivDesc(cfg), Layers: []ivDescriptor{l}})
	target.Store(layer.Digest.String())
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	resp, body, rerr := ivGet(t, base+"/blobs/"+layer.Digest.String(), nil)
	if rerr == nil && resp.StatusCode == 200 && digest.FromBytes(body).String() != layer.Digest.String() {
		t.Fatalf("complete 200 response (%d bytes, Docker-Content-Digest %s) whose bytes hash to %s", len(body), resp.Header.Get("Docker-Content-Digest"), digest.FromBytes(body))
	}
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "DIGEST_INVALID") {
		t.Fatalf("empty body for a non-empty digest: %d %s, want 502 DIGEST_INVALID", resp.StatusCode, body)
	}
}

// FINDING 3b (same root cause, cold path): concurrent requests for one blob
// under one content rule share a single fetch whose inspector was built
// from the FIRST requester's layer descriptor. A client pulling the blob as
// a chat template joins a fetch inspected as a plain layer and receives the
// template uninspected.
func TestCoalescedFetchInspectsForEachDescriptor(t *testing.T) {
	var target atomic.Value
	target.Store("")
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tg := target.Load().(string); tg != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+tg) {
				time.Sleep(700 * time.Millisecond)
			}
			next.ServeHTTP(w, r)
		})
	}
	e := startWith(t, wrap, templatePolicy)
	h := e.up.Host
	body := []byte("You are a helpful assistant. {{ .Prompt }} {{ ''.__class__.__mro__[1].__subclasses__() }}\n")
	const tmplType = "application/vnd.ollama.image.template"
	cfg := ivPushBlob(t, h, "models/files", []byte(`{"a":2}`), "application/vnd.oci.image.config.v1+json")
	asFile := ivPushBlob(t, h, "models/files", body, "application/vnd.oci.image.layer.v1.tar")
	ivImage(t, h, "models/files:1", cfg, asFile)
	mcfg := ivPushBlob(t, h, "models/chat", []byte(`{"a":3}`), "application/vnd.oci.image.config.v1+json")
	asTmpl := ivPushBlob(t, h, "models/chat", body, tmplType)
	ivImage(t, h, "models/chat:1", mcfg, asTmpl)
	for _, r := range []string{"files", "chat"} {
		if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/models/"+r+"/manifests/1"); resp.StatusCode != 200 {
			t.Fatalf("%s manifest: %d", r, resp.StatusCode)
		}
	}
	target.Store(asFile.Digest.String())
	done := make(chan int, 1)
	go func() {
		resp, _, _ := ivGet(t, e.proxy.URL+"/v2/upstream.local/models/files/blobs/"+asFile.Digest.String(), nil)
		done <- resp.StatusCode
	}()
	for e.up.Count("GET", "/blobs/"+asFile.Digest.String()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	resp, got, rerr := ivGet(t, e.proxy.URL+"/v2/upstream.local/models/chat/blobs/"+asTmpl.Digest.String(), nil)
	<-done
	if rerr == nil && resp.StatusCode == 200 && bytes.Equal(got, body) {
		t.Fatalf("chat template containing __class__ served as %s (200): it joined a fetch inspected as a plain layer", tmplType)
	}
	t.Logf("chat blob: %d", resp.StatusCode)
}

// Refused (passes): evidence whose subject is denied, HEAD/Range of a
// refused blob, listings of a denied repository.
func TestEvidenceAndListingsOfDeniedContentRefused(t *testing.T) {
	const pol = `rules:
  - name: blocked
    match: ["upstream.local/blocked/**"]
    action: deny
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      formats: { pickle: deny }
      denyCodeLayers: true
`
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	evil := []byte(`{"auto_map": {"AutoModel": "evil.Model"}}`)
	bad := ivPushBlob(t, h, repo, evil, "application/vnd.oci.image.layer.v1.tar")
	bd := ivImage(t, h, repo+":bad", cfg, bad)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	get(t, base+"/manifests/bad")
	for _, m := range []map[string]string{{"Range": "bytes=0-5"}, nil} {
		if resp, _, _ := ivGet(t, base+"/blobs/"+bad.Digest.String(), m); resp.StatusCode != 403 {
			t.Errorf("refused blob %v: %d", m, resp.StatusCode)
		}
	}
	if st, _ := harness.RawRequest(t, e.host, "HEAD", "/v2/upstream.local/"+repo+"/blobs/"+bad.Digest.String()); st != 403 {
		t.Errorf("HEAD refused blob: %d", st)
	}
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	sig := ivPushBlob(t, h, repo, []byte(`{"critical":{}}`), "application/vnd.dev.cosign.simplesigning.v1+json")
	resp, mb := get(t, base+"/manifests/"+bd.String())
	_ = mb
	ed := ivPushManifest(t, h, repo+":sha256-"+bd.Encoded()+".sig", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(sig)}})
	if resp, _ = get(t, base+"/manifests/sha256-"+bd.Encoded()+".sig"); resp.StatusCode != 403 {
		t.Errorf("signature tag of a denied subject: %d", resp.StatusCode)
	}
	_ = ed
	push(t, h, "blocked/x:1", func() v1.Image { i, _ := oneLayerImage(t, 100); return i }())
	for _, p := range []string{"/v2/upstream.local/blocked/x/tags/list", "/v2/blocked/x/tags/list?ns=upstream.local",
		"/v2/upstream.local/blocked/x/referrers/" + bd.String()} {
		if st, _ := harness.RawRequest(t, e.host, "GET", p); st != 403 {
			t.Errorf("%s: %d", p, st)
		}
	}
}

// FINDING 7 (low): under a rule with content checks (action allow +
// content), a cosign signature artifact (no subject field, found by its
// sha256-<hex>.sig tag) for a DENIED subject is refused when asked for by
// its tag, but served when asked for by digest, and its blob is served:
// "decided by its subject" depends on the tag of the request, which the
// by-digest and blob paths do not have.
func TestSignatureOfDeniedSubjectRefusedByDigest(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	bad := ivPushBlob(t, h, repo, []byte(`{"auto_map": {"AutoModel": "evil.Model"}}`), "application/vnd.oci.image.layer.v1.tar")
	bd := ivImage(t, h, repo+":bad", cfg, bad)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	get(t, base+"/manifests/bad")
	get(t, base+"/blobs/"+bad.Digest.String()) // content finding recorded
	if resp, _ := get(t, base+"/manifests/"+bd.String()); resp.StatusCode != 403 {
		t.Fatalf("control: subject not denied: %d", resp.StatusCode)
	}
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	sig := ivPushBlob(t, h, repo, []byte(`{"critical":{"identity":{"docker-reference":"upstream.local/models/m"},"image":{"docker-manifest-digest":"`+bd.String()+`"},"type":"cosign container image signature"},"optional":null}`), "application/vnd.dev.cosign.simplesigning.v1+json")
	tag := "sha256-" + bd.Encoded() + ".sig"
	ed := ivPushManifest(t, h, repo+":"+tag, ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(sig)}})
	if resp, _ := get(t, base+"/manifests/"+tag); resp.StatusCode != 403 {
		t.Fatalf("control: signature by tag of a denied subject: %d", resp.StatusCode)
	}
	r1, _ := get(t, base+"/manifests/"+ed.String())
	r2, _ := get(t, base+"/blobs/"+sig.Digest.String())
	if r1.StatusCode == 200 || r2.StatusCode == 200 {
		t.Fatalf("signature artifact of denied subject %s: by digest %d, its blob %d (by tag: 403)", bd, r1.StatusCode, r2.StatusCode)
	}
}

// A blob that no manifest ever had inspected, listed as the "attestation"
// layer (or config) of an evidence artifact whose subject is allowed: it is
// served only if it has the shape of evidence, so a model's JSON that a
// loader acts on cannot pass as one.
func TestEvidenceLayersMustHaveTheShapeOfEvidence(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", cfg, good)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	resp, gb := get(t, base+"/manifests/good")
	if resp.StatusCode != 200 {
		t.Fatalf("good manifest: %d %s", resp.StatusCode, gb)
	}
	gdesc := ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: gd.String(), Size: int64(len(gb))}

	evil := []byte(`{"auto_map": {"AutoModelForCausalLM": "modeling_evil.Model"}}`)
	template := []byte(`{"chat_template": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"}`)
	envelope := statementEnvelope(gd)
	evilD := ivPushBlob(t, h, repo, evil, "application/vnd.dsse.envelope.v1+json")
	templD := ivPushBlob(t, h, repo, template, "application/vnd.oci.image.config.v1+json")
	envD := ivPushBlob(t, h, repo, envelope, "application/vnd.dsse.envelope.v1+json")
	ed := ivPushManifest(t, h, repo+":evidence", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json", Config: ivDesc(templD),
		Layers: []ivDescriptor{ivDesc(evilD), ivDesc(envD)}, Subject: &gdesc})
	// A layer that is no payload naming a subject: the artifact is refused.
	if resp, b := get(t, base+"/manifests/"+ed.String()); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "names no subject") {
		t.Fatalf("evidence manifest with an auto_map config as a layer: %d %s, want 403", resp.StatusCode, b)
	}
	// A real statement about the allowed model, with a chat template as
	// its config: served, but not the config.
	ed2 := ivPushManifest(t, h, repo+":evidence2", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json", Config: ivDesc(templD),
		Layers: []ivDescriptor{ivDesc(envD)}, Subject: &gdesc})
	if resp, b := get(t, base+"/manifests/"+ed2.String()); resp.StatusCode != 200 {
		t.Fatalf("evidence manifest of an allowed subject: %d %s", resp.StatusCode, b)
	}
	for i := 0; i < 2; i++ { // cold, then from the store
		if resp, b := get(t, base+"/blobs/"+evilD.Digest.String()); resp.StatusCode != http.StatusForbidden {
			t.Errorf("pass %d, auto_map config of a refused artifact: %d %s, want 403", i, resp.StatusCode, b)
		}
		if resp, b := get(t, base+"/blobs/"+templD.Digest.String()); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "signature/attestation blob declared") {
			t.Errorf("pass %d, chat template declared the config: %d %s, want 403 naming the evidence check", i, resp.StatusCode, b)
		}
		if resp, b := get(t, base+"/blobs/"+envD.Digest.String()); resp.StatusCode != 200 || !bytes.Equal(b, envelope) {
			t.Errorf("pass %d, a real DSSE envelope: %d %s", i, resp.StatusCode, b)
		}
	}
}

// The referrers of an artifact are listed only where the artifact itself
// is allowed: a model refused by content inspection has its signatures and
// attestations neither served nor listed.
func TestReferrersOfDeniedSubjectNotListed(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	bad := ivPushBlob(t, h, repo, []byte(`{"auto_map": {"AutoModel": "evil.Model"}}`), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", cfg, good)
	bd := ivImage(t, h, repo+":bad", cfg, bad)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	_, gb := get(t, base+"/manifests/good")
	_, bb := get(t, base+"/manifests/bad")
	get(t, base+"/blobs/"+bad.Digest.String()) // the content finding denies "bad" from now on
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	for _, sub := range []struct {
		d    digest.Digest
		body []byte
	}{{gd, gb}, {bd, bb}} {
		env := ivPushBlob(t, h, repo, statementEnvelope(sub.d), "application/vnd.dsse.envelope.v1+json")
		ivPushManifest(t, h, repo+":att-"+sub.d.Encoded()[:8], ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
			ArtifactType: "application/vnd.in-toto+json", Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(env)},
			Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: sub.d.String(), Size: int64(len(sub.body))}})
	}
	resp, b := get(t, base+"/referrers/"+gd.String())
	var idx struct {
		Manifests []json.RawMessage `json:"manifests"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &idx) != nil || len(idx.Manifests) != 1 {
		t.Fatalf("referrers of the allowed model: %d %s, want one", resp.StatusCode, b)
	}
	resp, b = get(t, base+"/referrers/"+bd.String())
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "not allowed here") {
		t.Fatalf("referrers of the refused model: %d %s, want 403", resp.StatusCode, b)
	}
}

// An upstream that stops sending in the middle of a blob does not hold the
// coalesced fetch (and every client waiting on it) for long: after the
// upstream's timeout without a byte the fetch is abandoned, clients get an
// aborted stream or an error naming the stall, nothing is cached, and the
// next request fetches again.
func TestStalledUpstreamFetchAbandoned(t *testing.T) {
	var stall atomic.Bool
	stall.Store(true)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	wrap := pausingBlobs(&stall, func(size int) int { return size / 2 }, release)
	e := startWith(t, wrap, testPolicy, "timeout: 300ms")
	img, ld := oneLayerImage(t, 1<<20)
	push(t, e.up.Host, "app/stall:1", img)
	base := e.proxy.URL + "/v2/upstream.local/app/stall"
	if resp, _ := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	start := time.Now()
	resp, body, rerr := ivGet(t, base+"/blobs/"+ld.String(), nil)
	took := time.Since(start)
	if rerr == nil && resp.StatusCode == 200 && len(body) == 1<<20 {
		t.Fatalf("a complete body from a stalled upstream")
	}
	if took > 5*time.Second {
		t.Fatalf("the stalled fetch held the client for %s", took)
	}
	stall.Store(false)
	resp, body, rerr = ivGet(t, base+"/blobs/"+ld.String(), nil)
	if rerr != nil || resp.StatusCode != 200 || digest.FromBytes(body).String() != ld.String() {
		t.Fatalf("after the stall: %d err=%v, %d bytes", resp.StatusCode, rerr, len(body))
	}
}
