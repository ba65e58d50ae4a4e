package registryfetch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/distribution/distribution/v3/configuration"
	"golang.org/x/crypto/bcrypt"

	"github.com/pullgate/pullgate/test/upstream"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/registryfetch"
)

func start(t *testing.T, opts upstream.Options) *upstream.Registry {
	t.Helper()
	reg, err := upstream.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

func push(t *testing.T, reg *upstream.Registry, repo string, auth authn.Authenticator) (digest.Digest, []byte, digest.Digest) {
	t.Helper()
	img, err := random.Image(300, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Host + "/" + repo + ":v1")
	opts := []remote.Option{}
	if auth != nil {
		opts = append(opts, remote.WithAuth(auth))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	return digest.FromBytes(raw), raw, digest.Digest(ld.String())
}

func TestManifestAndBlob(t *testing.T) {
	reg := start(t, upstream.Options{Referrers: true})
	d, raw, layer := push(t, reg, "rf/app", nil)
	f, err := registryfetch.New(context.Background(), reg.Host+"/rf/app", registryfetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"v1", d.String()} {
		body, mt, got, err := f.Manifest(context.Background(), ref)
		if err != nil || got != d || !bytes.Equal(body, raw) || mt == "" {
			t.Fatalf("Manifest(%s) = %s %s %v", ref, mt, got, err)
		}
	}
	if _, _, _, err := f.Manifest(context.Background(), "nope"); !verify.IsNotFound(err) {
		t.Fatalf("missing tag: %v", err)
	}
	if _, _, _, err := f.Manifest(context.Background(), "../../etc"); err == nil || verify.IsNotFound(err) {
		t.Fatalf("invalid reference accepted: %v", err)
	}
	if _, _, _, err := f.Manifest(context.Background(), "sha256:1234"); err == nil {
		t.Fatal("invalid digest accepted")
	}
	if b, err := f.Blob(context.Background(), layer, 1<<20); err != nil || digest.FromBytes(b) != layer {
		t.Fatalf("Blob: %v", err)
	}
	if _, err := f.Blob(context.Background(), layer, 10); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("size cap: %v", err)
	}
	if _, err := f.Blob(context.Background(), digest.FromString("absent"), 10); !verify.IsNotFound(err) {
		t.Fatalf("missing blob: %v", err)
	}
	small, err := registryfetch.New(context.Background(), reg.Host+"/rf/app", registryfetch.Options{MaxManifestSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := small.Manifest(context.Background(), "v1"); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("manifest cap: %v", err)
	}
}

// lying serves other bytes than stored for manifests and blobs.
func lying(on *bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !*on || r.Method != http.MethodGet || !(strings.Contains(r.URL.Path, "/manifests/") || strings.Contains(r.URL.Path, "/blobs/")) {
				next.ServeHTTP(w, r)
				return
			}
			rec := &recorder{header: http.Header{}}
			next.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.status)
			body := rec.buf.Bytes()
			if len(body) > 0 {
				body = append([]byte{}, body...)
				body[len(body)-1] ^= 1
			}
			_, _ = w.Write(body)
		})
	}
}

type recorder struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.buf.Write(b)
}
func (r *recorder) WriteHeader(s int) { r.status = s }

func TestLyingUpstream(t *testing.T) {
	on := false
	reg := start(t, upstream.Options{Referrers: true, Wrap: lying(&on)})
	d, _, layer := push(t, reg, "rf/lie", nil)
	f, err := registryfetch.New(context.Background(), reg.Host+"/rf/lie", registryfetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	on = true
	if _, _, _, err := f.Manifest(context.Background(), d.String()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("by digest: %v", err)
	}
	if _, _, _, err := f.Manifest(context.Background(), "v1"); err == nil || !strings.Contains(err.Error(), "Docker-Content-Digest") {
		t.Fatalf("by tag: %v", err)
	}
	if _, err := f.Blob(context.Background(), layer, 1<<20); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("blob: %v", err)
	}
}

func TestReferrers(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(map[bool]string{true: "api", false: "tag-fallback"}[api], func(t *testing.T) {
			reg := start(t, upstream.Options{Referrers: api})
			d, raw, _ := push(t, reg, "rf/ref", nil)
			f, err := registryfetch.New(context.Background(), reg.Host+"/rf/ref", registryfetch.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Referrers(context.Background(), d, "")
			if err != nil || len(got) != 0 || got == nil {
				t.Fatalf("no referrers: %v %v", got, err)
			}
			// Attach two artifacts with ggcr, which maintains the fallback tag
			// itself when the registry has no referrers API.
			subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(raw))}
			for _, at := range []string{"application/vnd.example.a", "application/vnd.example.b"} {
				putReferrer(t, reg, "rf/ref", subject, at)
			}
			all, err := f.Referrers(context.Background(), d, "")
			if err != nil || len(all) != 2 {
				t.Fatalf("referrers: %+v %v", all, err)
			}
			only, err := f.Referrers(context.Background(), d, "application/vnd.example.b")
			if err != nil || len(only) != 1 || only[0].ArtifactType != "application/vnd.example.b" {
				t.Fatalf("filtered: %+v %v", only, err)
			}
		})
	}
}

// putReferrer pushes an artifact manifest with a subject and, like an OCI
// 1.1 client, updates the referrers tag when the registry has no API.
func putReferrer(t *testing.T, reg *upstream.Registry, repo string, subject ocispec.Descriptor, artifactType string) {
	t.Helper()
	ref, _ := name.ParseReference(reg.Host + "/" + repo + ":" + "x")
	cfg := []byte("{}")
	if err := remote.WriteLayer(ref.Context(), staticLayer(cfg)); err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Subject: &subject,
		Config: ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: digest.FromBytes(cfg), Size: 2},
		Layers: []ocispec.Descriptor{{MediaType: "application/vnd.oci.empty.v1+json", Digest: digest.FromBytes(cfg), Size: 2}}}
	m.SchemaVersion = 2
	body, _ := json.Marshal(m)
	md := digest.FromBytes(body)
	put(t, reg.URL+"/v2/"+repo+"/manifests/"+md.String(), ocispec.MediaTypeImageManifest, body)
	resp, err := http.Get(reg.URL + "/v2/" + repo + "/referrers/" + subject.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return
	}
	tag := "sha256-" + subject.Digest.Encoded()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	if r, err := http.Get(reg.URL + "/v2/" + repo + "/manifests/" + tag); err == nil {
		if r.StatusCode == http.StatusOK {
			_ = json.NewDecoder(r.Body).Decode(&idx)
		}
		r.Body.Close()
	}
	idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(body)), ArtifactType: artifactType})
	ib, _ := json.Marshal(idx)
	put(t, reg.URL+"/v2/"+repo+"/manifests/"+tag, ocispec.MediaTypeImageIndex, ib)
}

func put(t *testing.T, url, ct string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %s %s", url, resp.Status, b)
	}
}

func TestReferrersPaginationAndHostileIndex(t *testing.T) {
	var mu sync.Mutex // the handler runs on the server's goroutines
	var pages = map[string]string{}
	page2Link := `<http://elsewhere.example/v2/x/referrers/y>; rel="next"`
	set := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	reg := start(t, upstream.Options{Referrers: true, Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/referrers/") {
				mu.Lock()
				defer mu.Unlock()
				key := r.URL.Query().Get("page")
				body, ok := pages[key]
				if !ok {
					http.NotFound(w, r)
					return
				}
				if key == "" {
					w.Header().Set("Link", `<`+r.URL.Path+`?page=2>; rel="next"`)
				}
				if key == "2" && page2Link != "" {
					w.Header().Set("Link", page2Link)
				}
				_, _ = io.WriteString(w, body)
				return
			}
			next.ServeHTTP(w, r)
		})
	}})
	d := digest.FromString("subject")
	desc := func(s string) string {
		return `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digest.FromString(s).String() + `","size":1,"artifactType":"a"}`
	}
	set(func() {
		pages[""] = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + desc("1") + `]}`
		pages["2"] = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + desc("2") + `]}`
	})
	f, err := registryfetch.New(context.Background(), reg.Host+"/rf/pages", registryfetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Referrers(context.Background(), d, ""); err == nil || !strings.Contains(err.Error(), "another host") {
		t.Fatalf("cross-host Link followed: %v", err)
	}
	set(func() { pages["2"] = `not json` })
	if _, err := f.Referrers(context.Background(), d, ""); err == nil {
		t.Fatal("invalid page accepted")
	}
	set(func() { delete(pages, "2") })
	if _, err := f.Referrers(context.Background(), d, ""); err == nil {
		t.Fatal("404 on a later page accepted as the end")
	}
	set(func() {
		pages[""] = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + desc("1") + `,` + desc("3") + `]}`
		pages["2"] = `{"schemaVersion":2,"manifests":[]}`
		page2Link = ""
	})
	got, err := f.Referrers(context.Background(), d, "a")
	if err != nil || len(got) != 2 {
		t.Fatalf("paged referrers: %+v %v", got, err)
	}
}

func TestAuth(t *testing.T) {
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	path := dir + "/htpasswd"
	if err := writeFile(path, "alice:"+string(hash)+"\n"); err != nil {
		t.Fatal(err)
	}
	reg := start(t, upstream.Options{Referrers: true, Auth: configuration.Auth{"htpasswd": configuration.Parameters{"realm": "test", "path": path}}})
	auth := &authn.Basic{Username: "alice", Password: "s3cret"}
	d, _, _ := push(t, reg, "rf/auth", auth)
	if f, err := registryfetch.New(context.Background(), reg.Host+"/rf/auth", registryfetch.Options{}); err == nil {
		if _, _, _, err := f.Manifest(context.Background(), d.String()); err == nil {
			t.Fatal("anonymous read allowed")
		}
	}
	f, err := registryfetch.New(context.Background(), reg.Host+"/rf/auth", registryfetch.Options{Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, got, err := f.Manifest(context.Background(), d.String()); err != nil || got != d {
		t.Fatalf("authenticated read: %v", err)
	}
	if refs, err := f.Referrers(context.Background(), d, ""); err != nil || len(refs) != 0 {
		t.Fatalf("authenticated referrers: %v", err)
	}
}

func staticLayer(b []byte) v1.Layer {
	return static.NewLayer(b, types.MediaType("application/vnd.oci.empty.v1+json"))
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// TestSizeCapWithoutContentLength: a registry that streams without a
// Content-Length still cannot push more than the cap into memory.
func TestSizeCapWithoutContentLength(t *testing.T) {
	reg := start(t, upstream.Options{Referrers: true, Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(chunked{w}, r)
		})
	}})
	d, _, layer := push(t, reg, "rf/chunked", nil)
	f, err := registryfetch.New(context.Background(), reg.Host+"/rf/chunked", registryfetch.Options{MaxManifestSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Blob(context.Background(), layer, 10); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("blob cap: %v", err)
	}
	if _, _, _, err := f.Manifest(context.Background(), d.String()); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("manifest cap: %v", err)
	}
}

// chunked drops Content-Length so the response is streamed.
type chunked struct{ http.ResponseWriter }

func (c chunked) WriteHeader(s int) {
	c.ResponseWriter.Header().Del("Content-Length")
	c.ResponseWriter.WriteHeader(s)
}

func (c chunked) Write(b []byte) (int, error) {
	c.ResponseWriter.Header().Del("Content-Length")
	n, err := c.ResponseWriter.Write(b)
	if fl, ok := c.ResponseWriter.(http.Flusher); ok {
		fl.Flush() // the server would otherwise add Content-Length to a small body
	}
	return n, err
}
