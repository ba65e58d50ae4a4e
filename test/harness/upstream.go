// Package harness builds end-to-end environments for pullgate: real upstream
// registries (in-process distribution/v3, or distribution's registry binary),
// optionally behind basic auth, the bearer-token flow or a private CA; seeded
// content (images, multi-arch indexes, OCI artifacts and referrers in both
// referrers styles); fault injection (a lying upstream, an upstream that goes
// down); the proxy itself opened from a generated pullgate.yaml; and drivers
// for the real clients (crane, skopeo, oras, go-containerregistry, oras-go).
package harness

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
)

// UpstreamOptions shape a test upstream.
type UpstreamOptions struct {
	// Name is the upstream's name in pullgate.yaml (default "upstream.local").
	Name string
	// Referrers enables the OCI referrers API; without it referrers live in
	// the sha256-<hex> tag fallback.
	Referrers bool
	// Basic protects the upstream with htpasswd basic auth.
	Basic bool
	// Token protects the upstream with the bearer-token flow.
	Token bool
	// TLS serves HTTPS with a certificate from a private CA.
	TLS bool
	// Disk stores content in a temp dir instead of memory (large blobs).
	Disk bool
	// Wrap is extra fault injection inside the liar.
	Wrap func(http.Handler) http.Handler
}

// Upstream is a running upstream registry with what a test needs to reach it.
type Upstream struct {
	Name string // name in pullgate.yaml / ns= value
	URL  string // http(s)://127.0.0.1:port
	Host string // 127.0.0.1:port
	// Reg is the in-process registry (nil for the registry binary).
	Reg *upstream.Registry
	// Liar serves wrong bytes for chosen digests; inert until told to lie.
	Liar *Liar
	// Creds are the credentials to use when the upstream needs auth.
	Creds *Credentials
	// Token is the token server when the upstream uses the bearer flow.
	Token *TokenServer
	// CA signed the upstream's certificate when it serves HTTPS.
	CA *CA

	close func()
	once  sync.Once
}

// DefaultUpstream is the name tests use for the main upstream.
const DefaultUpstream = "upstream.local"

// StartUpstream starts an in-process distribution/v3 upstream; it is closed
// when the test ends.
func StartUpstream(t testing.TB, o UpstreamOptions) *Upstream {
	t.Helper()
	if o.Name == "" {
		o.Name = DefaultUpstream
	}
	u := &Upstream{Name: o.Name, Liar: NewLiar()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if o.TLS {
		scheme = "https"
	}
	opts := upstream.Options{Referrers: o.Referrers, Listener: ln}
	if o.Disk {
		opts.RootDir = t.TempDir()
	}
	switch {
	case o.Basic && o.Token:
		t.Fatal("harness: choose Basic or Token, not both")
	case o.Basic:
		u.Creds = &Credentials{Username: "pg-basic-user", Password: "pg-basic-" + randomID()}
		opts.Auth = HtpasswdAuth(t, *u.Creds)
	case o.Token:
		u.Creds = &Credentials{Username: "pg-token-user", Password: "pg-token-" + randomID()}
		u.Token = NewTokenServer(t, "pullgate-test-registry", scheme+"://"+ln.Addr().String()+"/token")
		u.Token.AddUser(*u.Creds, "pull", "push")
		opts.Auth = u.Token.Auth()
	}
	if o.TLS {
		u.CA = NewCA(t)
		opts.TLS = u.CA.Server
	}
	wrap := o.Wrap
	opts.Wrap = func(h http.Handler) http.Handler {
		if wrap != nil {
			h = wrap(h)
		}
		h = u.Liar.Wrap(h)
		if u.Token != nil {
			h = u.Token.Mount(h)
		}
		return h
	}
	reg, err := upstream.Start(opts)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	u.Reg, u.URL, u.Host = reg, reg.URL, reg.Host
	u.close = reg.Close
	t.Cleanup(u.Down)
	return u
}

// Down stops the upstream: its port refuses connections from now on.
func (u *Upstream) Down() { u.once.Do(u.close) }

// Count is the in-process registry's request count (0 for the binary).
func (u *Upstream) Count(method, pathContains string) int {
	if u.Reg == nil {
		return 0
	}
	return u.Reg.Count(method, pathContains)
}

// Ref is the upstream-side reference of repo plus ":tag" or "@digest".
func (u *Upstream) Ref(repoAndRef string) string { return u.Host + "/" + repoAndRef }

// Transport is an HTTP transport that trusts the upstream's CA.
func (u *Upstream) Transport() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if u.CA != nil {
		tr.TLSClientConfig = u.CA.ClientTLS()
	}
	return tr
}

// RemoteOptions are go-containerregistry options to talk to the upstream
// directly (seeding), with its credentials and CA.
func (u *Upstream) RemoteOptions() []remote.Option {
	opts := []remote.Option{remote.WithTransport(u.Transport())}
	if u.Creds != nil {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: u.Creds.Username, Password: u.Creds.Password}))
	}
	return opts
}

func (u *Upstream) nameOpts() []name.Option {
	if strings.HasPrefix(u.URL, "http://") {
		return []name.Option{name.Insecure}
	}
	return nil
}

// Liar is fault injection for a dishonest upstream: for chosen digests it
// serves other bytes than the registry holds while keeping the headers
// (Content-Length, Docker-Content-Digest) of the honest answer. HEAD requests
// stay honest, like an upstream that changes content between a check and a
// fetch.
type Liar struct {
	mu        sync.Mutex
	blobs     map[string]bool
	sizes     map[string]int // blob digest -> bytes to append (>0) or cut (<0)
	manifests map[string][]byte
	types     map[string]string // manifest digest -> Content-Type to claim
	served    int
}

// NewLiar returns an honest liar.
func NewLiar() *Liar {
	l := &Liar{}
	l.Honest()
	return l
}

// LieBlobSize makes GET of a blob return its honest bytes plus delta junk
// bytes (delta > 0) or minus its last -delta bytes (delta < 0), with a
// matching Content-Length.
func (l *Liar) LieBlobSize(digest string, delta int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sizes[digest] = delta
}

// LieManifestType makes every GET of the manifest with that digest claim
// Content-Type mediaType (the bytes stay honest).
func (l *Liar) LieManifestType(digest, mediaType string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.types[digest] = mediaType
}

// LieBlob makes GET /v2/<repo>/blobs/<digest> return the same number of
// bytes with every byte flipped.
func (l *Liar) LieBlob(digest string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.blobs[digest] = true
}

// LieManifest makes every GET of the manifest whose digest is digest (by tag
// or by digest) return body instead, with the honest Docker-Content-Digest.
func (l *Liar) LieManifest(digest string, body []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.manifests[digest] = bytes.Clone(body)
}

// Honest stops all lies.
func (l *Liar) Honest() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.blobs = map[string]bool{}
	l.sizes = map[string]int{}
	l.manifests = map[string][]byte{}
	l.types = map[string]string{}
}

// Lies is how many dishonest responses were sent.
func (l *Liar) Lies() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.served
}

var (
	blobPathRe     = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[a-f0-9]{64})$`)
	manifestPathRe = regexp.MustCompile(`^/v2/.+/manifests/[^/]+$`)
)

// Wrap is the liar's middleware.
func (l *Liar) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !l.active() {
			next.ServeHTTP(w, r)
			return
		}
		if m := blobPathRe.FindStringSubmatch(r.URL.Path); m != nil {
			l.mu.Lock()
			lie := l.blobs[m[1]]
			delta, resize := l.sizes[m[1]]
			l.mu.Unlock()
			if !lie && !resize {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if rec.Code == http.StatusOK || rec.Code == http.StatusPartialContent {
				if lie {
					for i := range body {
						body[i] ^= 0xff
					}
				}
				switch {
				case delta > 0:
					body = append(body, bytes.Repeat([]byte{'J'}, delta)...)
				case delta < 0 && -delta <= len(body):
					body = body[:len(body)+delta]
				}
				l.count()
			}
			copyRecorded(w, rec, body)
			return
		}
		if manifestPathRe.MatchString(r.URL.Path) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			l.mu.Lock()
			fake, lie := l.manifests[rec.Header().Get("Docker-Content-Digest")]
			ct, retype := l.types[rec.Header().Get("Docker-Content-Digest")]
			l.mu.Unlock()
			if lie && rec.Code == http.StatusOK {
				body = fake
				l.count()
			}
			if retype && rec.Code == http.StatusOK {
				rec.Header().Set("Content-Type", ct)
				l.count()
			}
			copyRecorded(w, rec, body)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (l *Liar) active() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.blobs) > 0 || len(l.manifests) > 0 || len(l.sizes) > 0 || len(l.types) > 0
}

func (l *Liar) count() {
	l.mu.Lock()
	l.served++
	l.mu.Unlock()
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}
