// Package demoupstream runs a real distribution/v3 registry in-process, as
// the upstream that pullgate proxies in `pullgate demo`, tests and
// benchmarks. It can add the OCI referrers API (distribution v3 has none)
// computed from the registry's own storage, count requests, and wrap the
// handler (to build lying or failing upstreams). It lives under cmd/pullgate,
// not test/, because the binary ships it (the demo); it is not internal
// because tests across the module use it as their upstream (most import it
// as "upstream").
package demoupstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // basic auth for upstream-auth tests
	_ "github.com/distribution/distribution/v3/registry/auth/token"    // bearer-token flow for upstream-auth tests
)

// Options shape the upstream.
type Options struct {
	// Referrers adds GET /v2/<name>/referrers/<digest> (OCI 1.1) computed from
	// storage. Without it the upstream answers 404 there, like distribution.
	Referrers bool
	// Auth is distribution's auth section (htpasswd or token), nil for anonymous.
	Auth configuration.Auth
	// Wrap, when set, wraps the registry handler (fault injection).
	Wrap func(http.Handler) http.Handler
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// Listener, when set, is used instead of listening on Addr (so a caller
	// can know the address before the registry is configured, e.g. for a
	// token realm on the same host).
	Listener net.Listener
	// RootDir, when set, stores content on disk there (distribution's
	// filesystem driver) instead of in memory: much faster for large blobs.
	RootDir string
	// TLS, when set, serves HTTPS with this configuration (URL is then
	// https://...). Tests use it for upstreams with a private CA.
	TLS *tls.Config
}

// Registry is a running upstream.
type Registry struct {
	URL  string // http://127.0.0.1:port
	Host string // 127.0.0.1:port

	srv      *http.Server
	ln       net.Listener
	ns       distribution.Namespace
	driver   storagedriver.StorageDriver
	mu       sync.Mutex
	counts   map[string]int
	total    atomic.Int64
	stopOnce sync.Once
}

var driverSeq atomic.Int64

type sharedDriverFactory struct{ d storagedriver.StorageDriver }

func (f sharedDriverFactory) Create(context.Context, map[string]any) (storagedriver.StorageDriver, error) {
	return f.d, nil
}

// Start runs an upstream with in-memory storage until Close.
func Start(opts Options) (*Registry, error) {
	ctx := context.Background()
	var drv storagedriver.StorageDriver = inmemory.New()
	if opts.RootDir != "" {
		fs, err := filesystem.FromParameters(map[string]any{"rootdirectory": opts.RootDir})
		if err != nil {
			return nil, err
		}
		drv = fs
	}
	name := fmt.Sprintf("pullgate-test-mem-%d", driverSeq.Add(1))
	factory.Register(name, sharedDriverFactory{drv})

	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{name: configuration.Parameters{}, "delete": configuration.Parameters{"enabled": true}}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	cfg.HTTP.Secret = "pullgate-test-upstream-secret"
	cfg.Auth = opts.Auth
	logrus.SetLevel(logrus.ErrorLevel)
	logrus.SetOutput(io.Discard)
	app := handlers.NewApp(ctx, cfg)

	ns, err := storage.NewRegistry(ctx, drv, storage.EnableDelete)
	if err != nil {
		return nil, err
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln := opts.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, err
		}
	}
	r := &Registry{ln: ln, ns: ns, driver: drv, counts: map[string]int{}}
	r.Host = ln.Addr().String()
	r.URL = "http://" + r.Host
	if opts.TLS != nil {
		ln = tls.NewListener(ln, opts.TLS)
		r.URL = "https://" + r.Host
	}

	var h http.Handler = app
	if opts.Referrers {
		h = r.referrers(h)
	} else {
		h = noReferrers(h)
	}
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	h = r.count(h)
	r.srv = &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Close stops the upstream. Safe to call twice.
func (r *Registry) Close() {
	r.stopOnce.Do(func() { _ = r.srv.Close() })
}

// Driver is the registry's storage (tests use it to corrupt content).
func (r *Registry) Driver() storagedriver.StorageDriver { return r.driver }

// Count returns how many requests matched method and a path substring, e.g.
// Count("GET", "/blobs/sha256:...").
func (r *Registry) Count(method, pathContains string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.counts {
		m, p, _ := strings.Cut(k, " ")
		if (method == "" || m == method) && strings.Contains(p, pathContains) {
			n += v
		}
	}
	return n
}

// Total is the number of requests served.
func (r *Registry) Total() int64 { return r.total.Load() }

// ResetCounts forgets the request counts.
func (r *Registry) ResetCounts() {
	r.mu.Lock()
	r.counts = map[string]int{}
	r.mu.Unlock()
	r.total.Store(0)
}

func (r *Registry) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.counts[req.Method+" "+req.URL.Path]++
		r.mu.Unlock()
		r.total.Add(1)
		next.ServeHTTP(w, req)
	})
}

var (
	referrersPath = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)
	manifestPath  = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
)

// setOCISubject reads a pushed manifest and, when it has a subject, sets the
// OCI-Subject response header. The body is restored for the registry.
func setOCISubject(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 4<<20))
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return
	}
	var mf struct {
		Subject *ocispec.Descriptor `json:"subject"`
	}
	if json.Unmarshal(body, &mf) == nil && mf.Subject != nil {
		w.Header().Set("OCI-Subject", mf.Subject.Digest.String())
	}
}

func noReferrers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if referrersPath.MatchString(req.URL.Path) {
			http.NotFound(w, req)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// referrers serves the OCI 1.1 referrers API from the registry's storage:
// every manifest of the repository whose subject is the requested digest.
func (r *Registry) referrers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m := referrersPath.FindStringSubmatch(req.URL.Path)
		if req.Method == http.MethodPut && manifestPath.MatchString(req.URL.Path) {
			// A registry with the referrers API tells pushers it indexed the
			// subject (OCI-Subject), so clients skip the tag fallback.
			setOCISubject(w, req)
		}
		if m == nil || req.Method != http.MethodGet {
			next.ServeHTTP(w, req)
			return
		}
		// Authentication is the registry's job: probe a read-only route the
		// app guards, and only answer when it would be allowed.
		probe := req.Clone(req.Context())
		probe.URL.Path = "/v2/"
		rec := &statusRecorder{header: http.Header{}}
		next.ServeHTTP(rec, probe)
		if rec.status == http.StatusUnauthorized {
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			return
		}
		subject, err := digest.Parse(m[2])
		if err != nil {
			writeErr(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
			return
		}
		idx, err := r.list(req.Context(), m[1], subject, req.URL.Query().Get("artifactType"))
		if err != nil {
			writeErr(w, http.StatusNotFound, "NAME_UNKNOWN", err.Error())
			return
		}
		if at := req.URL.Query().Get("artifactType"); at != "" {
			w.Header().Set("OCI-Filters-Applied", "artifactType")
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
		_ = json.NewEncoder(w).Encode(idx)
	})
}

func (r *Registry) list(ctx context.Context, repo string, subject digest.Digest, artifactType string) (*ocispec.Index, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, err
	}
	rp, err := r.ns.Repository(ctx, named)
	if err != nil {
		return nil, err
	}
	ms, err := rp.Manifests(ctx)
	if err != nil {
		return nil, err
	}
	idx := &ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	enum, ok := ms.(distribution.ManifestEnumerator)
	if !ok {
		return idx, nil
	}
	err = enum.Enumerate(ctx, func(d digest.Digest) error {
		m, err := ms.Get(ctx, d)
		if err != nil {
			return nil
		}
		_, body, err := m.Payload()
		if err != nil {
			return nil
		}
		var mf struct {
			MediaType    string              `json:"mediaType"`
			ArtifactType string              `json:"artifactType"`
			Config       ocispec.Descriptor  `json:"config"`
			Subject      *ocispec.Descriptor `json:"subject"`
			Annotations  map[string]string   `json:"annotations"`
		}
		if json.Unmarshal(body, &mf) != nil || mf.Subject == nil || mf.Subject.Digest != subject {
			return nil
		}
		at := mf.ArtifactType
		if at == "" {
			at = mf.Config.MediaType
		}
		if artifactType != "" && at != artifactType {
			return nil
		}
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType: mf.MediaType, Digest: d, Size: int64(len(body)),
			ArtifactType: at, Annotations: mf.Annotations,
		})
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return nil, err
	}
	return idx, nil
}

func isPathNotFound(err error) bool {
	_, ok := err.(storagedriver.PathNotFoundError)
	return ok
}

type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
