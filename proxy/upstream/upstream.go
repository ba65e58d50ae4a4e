// Package upstream is pullgate's client for the registries it proxies: auth
// (anonymous, basic, the bearer-token flow, Docker config.json credentials),
// custom CAs, strict scheme handling, and raw access to manifests, blobs,
// tags and referrers so the proxy controls exactly which bytes it verifies.
package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	dockerconfig "github.com/docker/cli/cli/config"
	dockerconfigtypes "github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/verified"
	"github.com/pullgate/pullgate/proxy/config"
)

// ManifestAccept is every manifest media type pullgate passes through.
var ManifestAccept = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

// Kind classifies upstream failures.
type Kind int

// Failure kinds.
const (
	NotFound    Kind = iota // 404: the artifact does not exist
	Unavailable             // network error, timeout, 5xx: the upstream is down
	Refused                 // 401/403: pullgate's credentials were refused
	Throttled               // 429
	Invalid                 // the upstream answered something malformed or inconsistent
)

// Error is an upstream failure. Its message never contains credentials.
type Error struct {
	Kind       Kind
	Upstream   string
	Status     int
	Msg        string
	RetryAfter string
}

func (e *Error) Error() string {
	return fmt.Sprintf("upstream %s: %s", e.Upstream, e.Msg)
}

// IsKind reports whether err is an upstream error of kind k.
func IsKind(err error, k Kind) bool {
	var ue *Error
	return errors.As(err, &ue) && ue.Kind == k
}

// Client talks to one configured upstream.
type Client struct {
	Name    string
	base    *url.URL
	reg     name.Registry
	rt      http.RoundTripper
	auth    authn.Authenticator
	timeout time.Duration

	mu     sync.Mutex
	repoRT *lru.Cache[string, http.RoundTripper]
	// OnRequest, when set, observes every upstream request (metrics).
	OnRequest func(method, kind string, status int, err error)
}

// New builds a client from an upstream's configuration. resolve maps
// config-relative file paths.
func New(u config.Upstream, resolve func(string) string) (*Client, error) {
	base, err := url.Parse(u.URL)
	if err != nil {
		return nil, err
	}
	opts := []name.Option{name.StrictValidation}
	if base.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(base.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = u.Timeout.D()
	tr.MaxIdleConnsPerHost = 64
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if u.CA != "" {
		pem, err := os.ReadFile(resolve(u.CA))
		if err != nil {
			return nil, fmt.Errorf("upstream %s: ca: %w", u.Name, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream %s: ca %s: no PEM certificates found", u.Name, u.CA)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	auth, err := credentials(u, resolve, reg)
	if err != nil {
		return nil, err
	}
	cache, _ := lru.New[string, http.RoundTripper](1024)
	c := &Client{
		Name: u.Name, base: base, reg: reg, auth: auth, timeout: u.Timeout.D(), repoRT: cache,
		rt: &schemeGuard{inner: tr, allowHTTP: base.Scheme == "http", hosts: []string{base.Host, reg.RegistryStr()}},
	}
	return c, nil
}

// schemeGuard keeps requests to the upstream on its configured scheme. It
// refuses plain-HTTP requests unless the upstream was configured with an
// http:// URL (this also stops token realms and redirects from downgrading
// to HTTP). An upstream configured with http:// is reached over plain HTTP
// only: go-containerregistry pings such a registry over https first and
// then uses whichever scheme answered, so a port that speaks TLS would
// silently be used over https; its https requests to the upstream's own
// host are refused here (other hosts, such as a token realm or blob
// storage it redirects to, may still be https).
type schemeGuard struct {
	inner     http.RoundTripper
	allowHTTP bool
	// hosts are the configured host[:port] and the one go-containerregistry
	// sends requests to (docker.io becomes index.docker.io).
	hosts []string
}

func (g *schemeGuard) upstreamHost(h string) bool {
	for _, x := range g.hosts {
		if strings.EqualFold(h, x) {
			return true
		}
	}
	return false
}

func (g *schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" && !(g.allowHTTP && r.URL.Scheme == "http") {
		return nil, fmt.Errorf("refusing %s request to %s: upstream is configured for https", r.URL.Scheme, r.URL.Host)
	}
	if g.allowHTTP && r.URL.Scheme == "https" && g.upstreamHost(r.URL.Host) {
		return nil, fmt.Errorf("refusing https request to %s: upstream is configured as http://", r.URL.Host)
	}
	resp, err := g.inner.RoundTrip(r)
	if g.allowHTTP && r.URL.Scheme == "http" && g.upstreamHost(r.URL.Host) && speaksTLS(resp, err) {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("upstream %s speaks TLS on this port, but it is configured as http://; configure its url as https://%s (pullgate uses exactly the configured scheme)", r.URL.Host, r.URL.Host)
	}
	return resp, err
}

// speaksTLS reports whether a plain-HTTP exchange met a TLS server: Go's
// and nginx's answer 400 naming HTTPS, others answer a TLS alert record,
// which the HTTP client reports as a malformed response.
func speaksTLS(resp *http.Response, err error) bool {
	if err != nil {
		return strings.Contains(err.Error(), `malformed HTTP response "\x15\x03`)
	}
	if resp.StatusCode != http.StatusBadRequest {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	return bytes.Contains(bytes.ToLower(b), []byte("https"))
}

func credentials(u config.Upstream, resolve func(string) string, reg name.Registry) (authn.Authenticator, error) {
	switch {
	case u.Username != "" && u.PasswordFile != "":
		return newFileAuth(resolve(u.PasswordFile), func(b []byte) (authn.Authenticator, error) {
			return &authn.Basic{Username: u.Username, Password: strings.TrimRight(string(b), "\r\n")}, nil
		}, fmt.Sprintf("upstream %s: passwordFile", u.Name))
	case u.Username != "":
		return &authn.Basic{Username: u.Username, Password: u.Password}, nil
	case u.DockerConfig != "":
		return newFileAuth(resolve(u.DockerConfig), func(b []byte) (authn.Authenticator, error) {
			return dockerConfigAuth(b, u, reg)
		}, fmt.Sprintf("upstream %s: dockerConfig", u.Name))
	default:
		return authn.Anonymous, nil
	}
}

// dockerConfigAuth is the credentials a Docker config.json holds for reg.
func dockerConfigAuth(b []byte, u config.Upstream, reg name.Registry) (authn.Authenticator, error) {
	cf, err := dockerconfig.LoadFromReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	// Docker stores Docker Hub's credentials under its legacy index URL,
	// whichever of Docker Hub's host names the upstream uses.
	keys := []string{reg.RegistryStr()}
	if isDockerHubHost(reg.RegistryStr()) {
		keys = []string{dockerHubConfigKey, reg.RegistryStr()}
	}
	var ac dockerconfigtypes.AuthConfig
	for _, key := range keys {
		if ac, err = cf.GetAuthConfig(key); err != nil {
			return nil, err
		}
		if ac.Username != "" || ac.Password != "" || ac.IdentityToken != "" || ac.RegistryToken != "" {
			break
		}
	}
	if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return nil, fmt.Errorf("%s has no credentials for %s", u.DockerConfig, strings.Join(keys, " or "))
	}
	return authn.FromConfig(authn.AuthConfig{
		Username: ac.Username, Password: ac.Password,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	}), nil
}

// fileAuth is credentials kept in a file (passwordFile, dockerConfig). The
// file is read again whenever it changes (another file, size or
// modification time: a Kubernetes Secret updated in place swaps a
// symlink), so rotated credentials are used without a restart. A change
// that cannot be read or parsed keeps the last good credentials, and is
// logged once.
type fileAuth struct {
	path, what string
	parse      func([]byte) (authn.Authenticator, error)

	mu   sync.Mutex
	seen os.FileInfo // the file as last read (good or not)
	cur  authn.Authenticator
}

// newFileAuth reads the file once; failing here is a configuration error.
func newFileAuth(path string, parse func([]byte) (authn.Authenticator, error), what string) (*fileAuth, error) {
	a := &fileAuth{path: path, what: what, parse: parse}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	cur, err := a.load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	a.seen, a.cur = fi, cur
	return a, nil
}

func (a *fileAuth) load() (authn.Authenticator, error) {
	b, err := os.ReadFile(a.path)
	if err != nil {
		return nil, err
	}
	return a.parse(b)
}

// Authorization implements authn.Authenticator.
func (a *fileAuth) Authorization() (*authn.AuthConfig, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if fi, err := os.Stat(a.path); err == nil && (!os.SameFile(fi, a.seen) || fi.Size() != a.seen.Size() || !fi.ModTime().Equal(a.seen.ModTime())) {
		a.seen = fi
		if cur, err := a.load(); err != nil {
			slog.Warn("upstream credentials changed but cannot be used; keeping the previous ones", "source", a.what, "path", a.path, "err", err)
		} else {
			a.cur = cur
		}
	}
	return a.cur.Authorization()
}

// Timeout is the upstream's configured timeout: for response headers, and
// the longest a blob body may send nothing before the fetch is abandoned.
func (c *Client) Timeout() time.Duration { return c.timeout }

// transport returns an authenticated round tripper for pulls from repo.
func (c *Client) transport(ctx context.Context, repo string) (http.RoundTripper, error) {
	if rt, ok := c.repoRT.Get(repo); ok {
		return rt, nil
	}
	scope := "repository:" + repo + ":pull"
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	rt, err := transport.NewWithContext(ctx, c.reg, c.auth, c.rt, []string{scope})
	if err != nil {
		return nil, c.classify(err, "authenticating")
	}
	c.repoRT.Add(repo, rt)
	return rt, nil
}

func (c *Client) classify(err error, what string) error {
	var te *transport.Error
	if errors.As(err, &te) {
		return c.statusError(te.StatusCode, what, "")
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &Error{Kind: Unavailable, Upstream: c.Name, Msg: what + ": " + sanitize(err.Error())}
}

// sanitize strips anything that looks like userinfo from an error text.
func sanitize(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.Index(s[i+3:], "@"); j >= 0 && !strings.ContainsAny(s[i+3:i+3+j], "/ ") {
			s = s[:i+3] + s[i+3+j+1:]
		}
	}
	return s
}

func (c *Client) statusError(status int, what, retryAfter string) error {
	e := &Error{Upstream: c.Name, Status: status, RetryAfter: retryAfter}
	switch {
	case status == http.StatusNotFound:
		e.Kind, e.Msg = NotFound, what+": not found"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind, e.Msg = Refused, fmt.Sprintf("%s: access refused (HTTP %d); check the upstream credentials configured in pullgate", what, status)
	case status == http.StatusTooManyRequests:
		e.Kind, e.Msg = Throttled, what+": rate limited by the upstream (HTTP 429)"
	case status >= 500:
		e.Kind, e.Msg = Unavailable, fmt.Sprintf("%s: HTTP %d", what, status)
	default:
		e.Kind, e.Msg = Invalid, fmt.Sprintf("%s: unexpected HTTP %d", what, status)
	}
	return e
}

func (c *Client) url(repo, endpoint string, q url.Values) string {
	u := *c.base
	u.Path = "/v2/" + repo + "/" + endpoint
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *Client) do(ctx context.Context, method, repo, endpoint string, q url.Values, hdr http.Header, kind string) (*http.Response, error) {
	rt, err := c.transport(ctx, repo)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(repo, endpoint, q), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if c.OnRequest != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		c.OnRequest(method, kind, st, err)
	}
	if err != nil {
		return nil, c.classify(err, kind+" "+repo)
	}
	return resp, nil
}

func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

// Descriptor is what a manifest HEAD says.
type Descriptor struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
}

func acceptHeader(accept []string) http.Header {
	if len(accept) == 0 {
		accept = ManifestAccept
	}
	return http.Header{"Accept": {strings.Join(accept, ", ")}}
}

// Resolve asks the upstream which digest a tag (or digest) names. When the
// upstream does not send Docker-Content-Digest on HEAD, it fetches the
// manifest and hashes it.
func (c *Client) Resolve(ctx context.Context, repo, ref string, maxSize int64) (Descriptor, error) {
	resp, err := c.do(ctx, http.MethodHead, repo, "manifests/"+ref, nil, acceptHeader(nil), "manifest")
	if err != nil {
		return Descriptor{}, err
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		return Descriptor{}, c.statusError(resp.StatusCode, "manifest "+repo+":"+ref, resp.Header.Get("Retry-After"))
	}
	d := Descriptor{MediaType: baseMediaType(resp.Header.Get("Content-Type")), Size: resp.ContentLength}
	// The digest is the header's when it is of the reference's algorithm:
	// sha256 for a tag, the digest's own for a digest reference (a caller
	// compares the two). A registry may name a sha512 manifest by its
	// sha256 in the header: that says nothing about the sha512 reference.
	alg := digest.SHA256
	if strings.Contains(ref, ":") {
		alg = digest.Digest(ref).Algorithm()
	}
	if dg, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil && dg.Algorithm() == alg {
		d.Digest = dg
		return d, nil
	}
	// Otherwise the manifest is fetched (checked against a digest
	// reference) and hashed.
	body, mt, err := c.Manifest(ctx, repo, ref, maxSize)
	if err != nil {
		return Descriptor{}, err
	}
	return Descriptor{Digest: alg.FromBytes(body), MediaType: mt, Size: int64(len(body))}, nil
}

// Manifest fetches a manifest's raw bytes (at most maxSize) and media type.
// When ref is a digest the bytes are verified against it.
func (c *Client) Manifest(ctx context.Context, repo, ref string, maxSize int64) ([]byte, string, error) {
	refDigest, err := checkReference(ref)
	if err != nil {
		return nil, "", err
	}
	resp, err := c.do(ctx, http.MethodGet, repo, "manifests/"+ref, nil, acceptHeader(nil), "manifest")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	what := "manifest " + repo + "@" + ref
	if !strings.Contains(ref, ":") {
		what = "manifest " + repo + ":" + ref
	}
	if resp.StatusCode != http.StatusOK {
		drain(resp)
		return nil, "", c.statusError(resp.StatusCode, what, resp.Header.Get("Retry-After"))
	}
	if resp.ContentLength > maxSize {
		return nil, "", &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("%s: %d bytes exceeds the manifest size limit of %d", what, resp.ContentLength, maxSize)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSize+1))
	if err != nil {
		return nil, "", c.classify(err, what)
	}
	if int64(len(body)) > maxSize {
		return nil, "", &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("%s: exceeds the manifest size limit of %d bytes", what, maxSize)}
	}
	if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return nil, "", &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("%s: got %d bytes, Content-Length said %d", what, len(body), resp.ContentLength)}
	}
	if refDigest != "" {
		var mm *verified.MismatchError
		if err := verified.Check(refDigest, body); errors.As(err, &mm) {
			return nil, "", &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("%s: content does not match its digest (got %s)", what, mm.Got)}
		} else if err != nil {
			return nil, "", &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("%s: %v", what, err)}
		}
	} else if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		// By tag, the upstream's own digest claim must hold for the bytes.
		if dg, err := digest.Parse(h); err != nil || verified.Check(dg, body) != nil {
			return nil, "", &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("%s: content does not match Docker-Content-Digest %q", what, h)}
		}
	}
	return body, baseMediaType(resp.Header.Get("Content-Type")), nil
}

// tagRE is the OCI distribution tag grammar.
var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// checkReference refuses a manifest reference that is neither a tag nor a
// digest of an available algorithm (so it never reaches the upstream's URL
// space); for a digest it returns it.
func checkReference(ref string) (digest.Digest, error) {
	if strings.Contains(ref, ":") {
		dg, err := digest.Parse(ref)
		if err != nil {
			return "", fmt.Errorf("manifest reference %q: %w", ref, err)
		}
		return dg, nil
	}
	if !tagRE.MatchString(ref) {
		return "", fmt.Errorf("manifest reference %q: not a valid tag", ref)
	}
	return "", nil
}

func baseMediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.TrimSpace(mt)
}

// Blob opens a blob download. The caller must verify what it reads and close
// the body. The response's ContentLength is the size the upstream declares.
func (c *Client) Blob(ctx context.Context, repo string, dgst digest.Digest) (*http.Response, error) {
	resp, err := c.do(ctx, http.MethodGet, repo, "blobs/"+dgst.String(), nil, nil, "blob")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		drain(resp)
		return nil, c.statusError(resp.StatusCode, "blob "+repo+"@"+dgst.String(), resp.Header.Get("Retry-After"))
	}
	return resp, nil
}

// BlobSize asks the upstream for a blob's size (HEAD).
func (c *Client) BlobSize(ctx context.Context, repo string, dgst digest.Digest) (int64, error) {
	resp, err := c.do(ctx, http.MethodHead, repo, "blobs/"+dgst.String(), nil, nil, "blob")
	if err != nil {
		return 0, err
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		return 0, c.statusError(resp.StatusCode, "blob "+repo+"@"+dgst.String(), resp.Header.Get("Retry-After"))
	}
	if resp.ContentLength < 0 {
		return 0, &Error{Kind: Invalid, Upstream: c.Name, Msg: "blob " + dgst.String() + ": no Content-Length"}
	}
	return resp.ContentLength, nil
}

// BlobBytes fetches a small blob whole (evidence), verified and bounded.
func (c *Client) BlobBytes(ctx context.Context, repo string, dgst digest.Digest, maxSize int64) ([]byte, error) {
	resp, err := c.Blob(ctx, repo, dgst)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > maxSize {
		return nil, &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("blob %s: %d bytes exceeds the limit of %d", dgst, resp.ContentLength, maxSize)}
	}
	b, err := verified.ReadAll(resp.Body, dgst, maxSize)
	var mm *verified.MismatchError
	var ue *verified.UnavailableError
	switch {
	case errors.Is(err, verified.ErrTooLarge):
		return nil, &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("blob %s exceeds the limit of %d bytes", dgst, maxSize)}
	case errors.As(err, &mm):
		return nil, &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("blob %s: content does not match its digest", dgst)}
	case errors.As(err, &ue):
		return nil, &Error{Kind: Invalid, Upstream: c.Name, Msg: fmt.Sprintf("blob %s: %v", dgst, err)}
	case err != nil:
		return nil, c.classify(err, "blob "+dgst.String())
	}
	return b, nil
}

// Referrers calls the upstream's referrers API. ok is false when the
// upstream does not implement it (404), so the caller falls back to the
// sha256-<hex> tag. Pagination (Link rel="next") is followed up to maxPages.
func (c *Client) Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType string, maxSize int64) (pages [][]byte, filtered bool, ok bool, err error) {
	q := url.Values{}
	if artifactType != "" {
		q.Set("artifactType", artifactType)
	}
	endpoint := "referrers/" + dgst.String()
	const maxPages = 16
	for page := 0; page < maxPages; page++ {
		resp, err := c.do(ctx, http.MethodGet, repo, endpoint, q, http.Header{"Accept": {"application/vnd.oci.image.index.v1+json"}}, "referrers")
		if err != nil {
			return nil, false, false, err
		}
		if resp.StatusCode == http.StatusNotFound && page == 0 {
			drain(resp)
			return nil, false, false, nil
		}
		if resp.StatusCode != http.StatusOK {
			drain(resp)
			return nil, false, false, c.statusError(resp.StatusCode, "referrers "+repo+"@"+dgst.String(), resp.Header.Get("Retry-After"))
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxSize+1))
		resp.Body.Close()
		if err != nil {
			return nil, false, false, c.classify(err, "referrers")
		}
		if int64(len(b)) > maxSize {
			return nil, false, false, &Error{Kind: Invalid, Upstream: c.Name, Msg: "referrers response exceeds the size limit"}
		}
		pages = append(pages, b)
		if page == 0 {
			filtered = strings.Contains(resp.Header.Get("OCI-Filters-Applied"), "artifactType")
		}
		next := nextLink(resp.Header.Get("Link"))
		if next == "" {
			break
		}
		nu, err := url.Parse(next)
		if err != nil {
			return nil, false, false, &Error{Kind: Invalid, Upstream: c.Name, Msg: "referrers " + repo + "@" + dgst.String() + ": bad Link header"}
		}
		// Only links on the same upstream path are followed; a list the
		// upstream says continues elsewhere is not silently cut short.
		if (nu.Host != "" && nu.Host != c.base.Host) || !strings.HasPrefix(nu.Path, "/v2/"+repo+"/referrers/") {
			return nil, false, false, &Error{Kind: Invalid, Upstream: c.Name, Msg: "referrers " + repo + "@" + dgst.String() + ": Link header points to another host or path"}
		}
		q = nu.Query()
	}
	return pages, filtered, true, nil
}

// Tags lists tags with n/last pagination; link is the upstream's next-page
// query (n and last), empty when there are no more.
func (c *Client) Tags(ctx context.Context, repo string, n, last string, maxSize int64) (body []byte, nextQuery url.Values, err error) {
	q := url.Values{}
	if n != "" {
		q.Set("n", n)
	}
	if last != "" {
		q.Set("last", last)
	}
	resp, err := c.do(ctx, http.MethodGet, repo, "tags/list", q, nil, "tags")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		drain(resp)
		return nil, nil, c.statusError(resp.StatusCode, "tags "+repo, resp.Header.Get("Retry-After"))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSize+1))
	if err != nil {
		return nil, nil, c.classify(err, "tags")
	}
	if int64(len(b)) > maxSize {
		return nil, nil, &Error{Kind: Invalid, Upstream: c.Name, Msg: "tags list exceeds the size limit"}
	}
	if next := nextLink(resp.Header.Get("Link")); next != "" {
		if nu, err := url.Parse(next); err == nil {
			nq := url.Values{}
			for _, k := range []string{"n", "last"} {
				if v := nu.Query().Get(k); v != "" {
					nq.Set(k, v)
				}
			}
			nextQuery = nq
		}
	}
	return bytes.TrimSpace(b), nextQuery, nil
}

// nextLink extracts the URL of a Link header with rel="next".
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if !strings.Contains(part, `rel="next"`) && !strings.Contains(part, "rel=next") {
			continue
		}
		if i, j := strings.Index(part, "<"), strings.Index(part, ">"); i >= 0 && j > i {
			return part[i+1 : j]
		}
	}
	return ""
}

// RetryAfterSeconds parses a Retry-After header value in seconds.
func RetryAfterSeconds(v string) int {
	n, _ := strconv.Atoi(v)
	return n
}

// IsDockerHub reports whether the upstream is Docker Hub, whose single-name
// repositories live under "library/".
func (c *Client) IsDockerHub() bool { return isDockerHubHost(c.base.Host) }

func isDockerHubHost(host string) bool {
	switch host {
	case "registry-1.docker.io", "index.docker.io", "docker.io":
		return true
	}
	return false
}

// dockerHubConfigKey is where `docker login` and kubectl's
// docker-registry secrets keep Docker Hub's credentials.
const dockerHubConfigKey = "https://index.docker.io/v1/"
