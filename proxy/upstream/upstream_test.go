package upstream_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

	testreg "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify"
)

// maxManifest is the manifest cap the tests' fetchers use (pullgate's
// default limits.maxManifestSize).
const maxManifest = 4 << 20

func start(t *testing.T, opts testreg.Options) *testreg.Registry {
	t.Helper()
	reg, err := testreg.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

// newClient is the production client for reg, configured as pullgate.yaml
// would (with config's default timeout); edit adjusts the upstream entry.
func newClient(t *testing.T, reg *testreg.Registry, edit func(*config.Upstream)) *upstream.Client {
	t.Helper()
	u := config.Upstream{Name: "test", URL: reg.URL, Timeout: config.Duration(30 * time.Second)}
	if edit != nil {
		edit(&u)
	}
	c, err := upstream.New(u, func(p string) string { return p })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func push(t *testing.T, reg *testreg.Registry, repo string, auth authn.Authenticator) (digest.Digest, []byte, digest.Digest) {
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
	reg := start(t, testreg.Options{Referrers: true})
	d, raw, layer := push(t, reg, "rf/app", nil)
	f := newClient(t, reg, nil).Fetcher("rf/app", maxManifest)
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
	if _, err := f.Blob(context.Background(), layer, 10); !upstream.IsKind(err, upstream.Invalid) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("size cap: %v", err)
	}
	if _, err := f.Blob(context.Background(), digest.FromString("absent"), 10); !verify.IsNotFound(err) {
		t.Fatalf("missing blob: %v", err)
	}
	small := newClient(t, reg, nil).Fetcher("rf/app", 16)
	if _, _, _, err := small.Manifest(context.Background(), "v1"); !upstream.IsKind(err, upstream.Invalid) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("manifest cap: %v", err)
	}
}

// lying serves other bytes than stored for manifests and blobs while on.
func lying(on *atomic.Bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !on.Load() || r.Method != http.MethodGet || !(strings.Contains(r.URL.Path, "/manifests/") || strings.Contains(r.URL.Path, "/blobs/")) {
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
	var on atomic.Bool
	reg := start(t, testreg.Options{Referrers: true, Wrap: lying(&on)})
	d, _, layer := push(t, reg, "rf/lie", nil)
	f := newClient(t, reg, nil).Fetcher("rf/lie", maxManifest)
	on.Store(true)
	if _, _, _, err := f.Manifest(context.Background(), d.String()); !upstream.IsKind(err, upstream.Invalid) || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("by digest: %v", err)
	}
	if _, _, _, err := f.Manifest(context.Background(), "v1"); !upstream.IsKind(err, upstream.Invalid) || !strings.Contains(err.Error(), "Docker-Content-Digest") {
		t.Fatalf("by tag: %v", err)
	}
	if _, err := f.Blob(context.Background(), layer, 1<<20); !upstream.IsKind(err, upstream.Invalid) || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("blob: %v", err)
	}
}

func TestReferrers(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(map[bool]string{true: "api", false: "tag-fallback"}[api], func(t *testing.T) {
			reg := start(t, testreg.Options{Referrers: api})
			d, raw, _ := push(t, reg, "rf/ref", nil)
			f := newClient(t, reg, nil).Fetcher("rf/ref", maxManifest)
			got, err := f.Referrers(context.Background(), d, "")
			if err != nil || len(got) != 0 || got == nil {
				t.Fatalf("no referrers: %v %v", got, err)
			}
			// Attach two artifacts; putReferrer maintains the fallback tag
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

// putReferrer pushes an artifact manifest with a subject with ggcr, which,
// like any OCI 1.1 client, updates the sha256-<hex> referrers tag itself when
// the registry has no referrers API (no OCI-Subject header on the push).
func putReferrer(t *testing.T, reg *testreg.Registry, repo string, subject ocispec.Descriptor, artifactType string) {
	t.Helper()
	r, empty := pushEmpty(t, reg, repo)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Subject: &subject,
		Config: empty, Layers: []ocispec.Descriptor{empty}}
	m.SchemaVersion = 2
	body, _ := json.Marshal(m)
	if err := remote.Put(r.Digest(digest.FromBytes(body).String()), rawManifest(body)); err != nil {
		t.Fatal(err)
	}
}

// pushEmpty pushes the OCI empty blob ({}) to repo: the repository, and
// the blob's descriptor.
func pushEmpty(t *testing.T, reg *testreg.Registry, repo string) (name.Repository, ocispec.Descriptor) {
	t.Helper()
	cfg := []byte("{}")
	r, err := name.NewRepository(reg.Host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(r, staticLayer(cfg)); err != nil {
		t.Fatal(err)
	}
	return r, ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
}

// rawManifest is OCI image manifest bytes for remote.Put.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error) { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) {
	return types.MediaType(ocispec.MediaTypeImageManifest), nil
}

func TestReferrersPaginationAndHostileIndex(t *testing.T) {
	var mu sync.Mutex // the handler runs on the server's goroutines
	var pages = map[string]string{}
	page2Link := `<http://elsewhere.example/v2/x/referrers/y>; rel="next"`
	set := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	reg := start(t, testreg.Options{Referrers: true, Wrap: func(next http.Handler) http.Handler {
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
	f := newClient(t, reg, nil).Fetcher("rf/pages", maxManifest)
	if _, err := f.Referrers(context.Background(), d, ""); !upstream.IsKind(err, upstream.Invalid) || !strings.Contains(err.Error(), "another host") {
		t.Fatalf("cross-host Link followed: %v", err)
	}
	set(func() { pages["2"] = `not json` })
	if _, err := f.Referrers(context.Background(), d, ""); !upstream.IsKind(err, upstream.Invalid) {
		t.Fatalf("invalid page accepted: %v", err)
	}
	set(func() { delete(pages, "2") })
	if _, err := f.Referrers(context.Background(), d, ""); err == nil || verify.IsNotFound(err) {
		t.Fatalf("404 on a later page accepted as the end: %v", err)
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
	reg := start(t, testreg.Options{Referrers: true, Auth: configuration.Auth{"htpasswd": configuration.Parameters{"realm": "test", "path": path}}})
	auth := &authn.Basic{Username: "alice", Password: "s3cret"}
	d, _, _ := push(t, reg, "rf/auth", auth)
	anon := newClient(t, reg, nil).Fetcher("rf/auth", maxManifest)
	if _, _, _, err := anon.Manifest(context.Background(), d.String()); !upstream.IsKind(err, upstream.Refused) {
		t.Fatalf("anonymous read allowed: %v", err)
	}
	f := newClient(t, reg, func(u *config.Upstream) { u.Username, u.Password = "alice", "s3cret" }).Fetcher("rf/auth", maxManifest)
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
	reg := start(t, testreg.Options{Referrers: true, Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(chunked{w}, r)
		})
	}})
	d, _, layer := push(t, reg, "rf/chunked", nil)
	f := newClient(t, reg, nil).Fetcher("rf/chunked", 64)
	if _, err := f.Blob(context.Background(), layer, 10); !upstream.IsKind(err, upstream.Invalid) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("blob cap: %v", err)
	}
	if _, _, _, err := f.Manifest(context.Background(), d.String()); !upstream.IsKind(err, upstream.Invalid) || !strings.Contains(err.Error(), "limit") {
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

// Credentials in a file (passwordFile, dockerConfig) are read again when
// the file changes: after the upstream's password is rotated, updating the
// file is enough, without a new client; a broken update keeps the last
// good credentials.
func TestCredentialFilesRotate(t *testing.T) {
	dir := t.TempDir()
	htpasswd := dir + "/htpasswd"
	setPassword := func(pw string, age time.Duration) {
		hash, _ := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err := writeFile(htpasswd, "alice:"+string(hash)+"\n"); err != nil {
			t.Fatal(err)
		}
		// distribution reloads htpasswd when its modification time changes
		when := time.Now().Add(age)
		os.Chtimes(htpasswd, when, when)
	}
	setPassword("old-secret", -time.Minute)
	reg := start(t, testreg.Options{Auth: configuration.Auth{"htpasswd": configuration.Parameters{"realm": "test", "path": htpasswd}}})
	d, _, _ := push(t, reg, "rf/rotate", &authn.Basic{Username: "alice", Password: "old-secret"})

	pwFile, cfgFile := dir+"/password", dir+"/config.json"
	dockerConfig := func(pw string) string {
		return `{"auths":{"` + reg.Host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("alice:"+pw)) + `"}}}`
	}
	write := func(path, content string, n int) {
		if err := writeFile(path, content); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(time.Duration(n) * time.Second)
		os.Chtimes(path, when, when)
	}
	write(pwFile, "old-secret\n", 0)
	write(cfgFile, dockerConfig("old-secret"), 0)
	clients := map[string]*upstream.Client{
		"passwordFile": newClient(t, reg, func(u *config.Upstream) { u.Username, u.PasswordFile = "alice", pwFile }),
		"dockerConfig": newClient(t, reg, func(u *config.Upstream) { u.DockerConfig = cfgFile }),
	}
	read := func(c *upstream.Client) error {
		_, _, _, err := c.Fetcher("rf/rotate", maxManifest).Manifest(context.Background(), d.String())
		return err
	}
	for n, c := range clients {
		if err := read(c); err != nil {
			t.Fatalf("%s: read with the first credentials: %v", n, err)
		}
	}
	setPassword("new-secret", time.Minute)
	for n, c := range clients {
		if err := read(c); !upstream.IsKind(err, upstream.Refused) {
			t.Fatalf("%s: the old password still works after the rotation: %v", n, err)
		}
	}
	write(pwFile, "new-secret\n", 1)
	write(cfgFile, dockerConfig("new-secret"), 1)
	for n, c := range clients {
		if err := read(c); err != nil {
			t.Fatalf("%s: read after the file was updated: %v", n, err)
		}
	}
	// A broken update (no credentials for this registry) keeps the last good ones.
	write(cfgFile, `{"auths":{}}`, 2)
	if err := read(clients["dockerConfig"]); err != nil {
		t.Fatalf("a broken dockerConfig update dropped the working credentials: %v", err)
	}
}
