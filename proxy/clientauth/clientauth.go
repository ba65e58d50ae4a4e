// Package clientauth authenticates and authorizes clients of pullgate's
// registry API before anything is fetched upstream.
//
// Identities come from htpasswd Basic credentials (bcrypt), Bearer tokens
// that pullgate's own Docker token endpoint (GET /token) signed, or verified
// mTLS client certificates ("cn:<CN>", "ou:<OU>"). Authorization is per
// repository ("<upstream>/<repo>"): the first access rule whose globs match
// decides which principals may pull; anonymous globs are readable by anyone.
//
// Failures never echo or log a credential: error bodies and log records name
// the repository, the method and the reason, and a user name only when it is
// a known htpasswd user.
//
// Wiring: serve TokenHandler at /token (GET and POST) on the registry
// listener and wrap the registry API handler with Middleware, so every /v2/
// request is refused (401, 403, 429, 400, 503) before anything is fetched
// upstream. Pass Options.Repository the proxy's own repository
// normalization. For client certificates, serve TLS with a client CA
// (tlsreload with auth.mtls.clientCA); the middleware verifies presented
// certificates against its own copy of the bundle as well, so a listener
// that accepts any certificate cannot let one through. Handlers behind the
// middleware read the client with User or FromContext.
package clientauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/pullgate/pullgate/policy/glob"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/ocierr"
	"github.com/pullgate/pullgate/proxy/route"
)

// Authentication methods recorded in an Identity.
const (
	MethodAnonymous = "anonymous"
	MethodBasic     = "basic"
	MethodBearer    = "bearer"
	MethodMTLS      = "mtls"
)

// Anonymous is the user name recorded for requests without credentials.
const Anonymous = "anonymous"

// MaxAuthorizationHeader bounds the Authorization header.
const MaxAuthorizationHeader = 8 << 10

// Identity is who made a request.
type Identity struct {
	// Method is how the client authenticated (MethodBasic, ...).
	Method string
	// Subject is the primary principal: the htpasswd user, the token's
	// subject, "cn:<CN>" of a certificate; empty for anonymous.
	Subject string
	// Principals are every principal the client holds ("alice";
	// "cn:node-1", "ou:gpu"); empty for anonymous.
	Principals []string
}

// Authenticated reports whether the client presented valid credentials.
func (id Identity) Authenticated() bool { return id.Method != MethodAnonymous && id.Method != "" }

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity the middleware attached.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// User is the client identity for audit records: the subject ("alice",
// "cn:node-1"), "anonymous" for a request allowed without credentials, or ""
// when the middleware did not run (no auth configured).
func User(ctx context.Context) string {
	id, ok := FromContext(ctx)
	if !ok {
		return ""
	}
	return id.user()
}

// user is the subject, or "anonymous".
func (id Identity) user() string {
	if !id.Authenticated() || id.Subject == "" {
		return Anonymous
	}
	return id.Subject
}

// Options are optional settings of New.
type Options struct {
	// Repository maps a parsed route to the repository authorization is
	// about. Set it to the proxy's own normalization (Docker Hub's implicit
	// "library/"), so rules see exactly the repository the proxy serves.
	// Default: Route.Repository().
	Repository func(route.Route) string
	// Now is the clock (tests).
	Now func() time.Time
}

// Authenticator is the registry API's client authentication and
// authorization.
type Authenticator struct {
	log       *slog.Logger
	realm     string
	anonymous []*glob.Pattern
	groups    map[string][]principal
	rules     []accessRule
	htpasswd  *htpasswd
	tokens    *tokenService
	clientCA  *caPool
	limiter   *limiter
	repoOf    func(route.Route) string
	now       func() time.Time
}

type accessRule struct {
	repos []*glob.Pattern
	allow []principal
}

// principal is one entry of an allow list or group.
type principal struct {
	group string        // "group:<name>"
	kind  string        // "user", "cn", "ou"
	glob  *glob.Pattern // name pattern
}

// New builds an Authenticator from the auth section. resolve maps a path
// from the config to a file path (config.Config.Resolve); nil uses paths as
// they are.
func New(cfg *config.Auth, resolve func(string) string, log *slog.Logger, opts ...Options) (*Authenticator, error) {
	if cfg == nil {
		return nil, errors.New("auth: no configuration")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if resolve == nil {
		resolve = func(s string) string { return s }
	}
	a := &Authenticator{
		log:    log.With("component", "clientauth"),
		realm:  cfg.Realm,
		groups: map[string][]principal{},
		repoOf: o.Repository,
		now:    o.Now,
	}
	if a.realm == "" {
		a.realm = config.DefaultAuthRealm
	}
	if a.repoOf == nil {
		a.repoOf = route.Route.Repository
	}
	if a.now == nil {
		a.now = time.Now
	}
	for _, p := range cfg.Anonymous {
		g, err := glob.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("auth.anonymous: %w", err)
		}
		a.anonymous = append(a.anonymous, g)
	}
	for name, members := range cfg.Groups {
		for _, m := range members {
			p, err := parsePrincipal(m)
			if err != nil {
				return nil, fmt.Errorf("auth.groups.%s: %w", name, err)
			}
			a.groups[name] = append(a.groups[name], p)
		}
	}
	for i, r := range cfg.Access {
		var ar accessRule
		for _, p := range r.Repositories {
			g, err := glob.Compile(p)
			if err != nil {
				return nil, fmt.Errorf("auth.access[%d]: %w", i, err)
			}
			ar.repos = append(ar.repos, g)
		}
		for _, m := range r.Allow {
			p, err := parsePrincipal(m)
			if err != nil {
				return nil, fmt.Errorf("auth.access[%d]: %w", i, err)
			}
			ar.allow = append(ar.allow, p)
		}
		a.rules = append(a.rules, ar)
	}
	rate, burst := cfg.RateLimit.FailuresPerMinute, cfg.RateLimit.Burst
	if rate == 0 {
		rate = config.DefaultFailuresPerMinute
	}
	if burst == 0 {
		burst = config.DefaultFailureBurst
	}
	a.limiter = newLimiter(float64(rate)/60, float64(burst), a.now)
	if cfg.Htpasswd != "" {
		h, err := openHtpasswd(resolve(cfg.Htpasswd), a.log)
		if err != nil {
			return nil, err
		}
		a.htpasswd = h
	}
	if cfg.MTLS != nil {
		p, err := openCAPool(resolve(cfg.MTLS.ClientCA), a.log)
		if err != nil {
			return nil, err
		}
		a.clientCA = p
	}
	if cfg.Token != nil {
		t, err := newTokenService(cfg.Token, resolve, a.log)
		if err != nil {
			return nil, err
		}
		a.tokens = t
	}
	return a, nil
}

func parsePrincipal(s string) (principal, error) {
	if g, ok := strings.CutPrefix(s, "group:"); ok {
		return principal{group: g}, nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		kind, name = "user", s
	}
	g, err := glob.Compile(name)
	if err != nil {
		return principal{}, fmt.Errorf("principal %q: %w", s, err)
	}
	return principal{kind: kind, glob: g}, nil
}

// matches reports whether the principal pattern matches one held principal
// ("alice", "cn:node-1", "ou:gpu").
func (p principal) matches(held string) bool {
	kind, name, ok := strings.Cut(held, ":")
	if !ok {
		kind, name = "user", held
	}
	return kind == p.kind && p.glob.Match(name)
}

func (a *Authenticator) allows(p principal, held []string) bool {
	if p.group != "" {
		for _, m := range a.groups[p.group] {
			if a.allows(m, held) {
				return true
			}
		}
		return false
	}
	for _, h := range held {
		if p.matches(h) {
			return true
		}
	}
	return false
}

// Allowed reports whether a client holding principals (none: anonymous)
// may pull repository ("<upstream>/<repo>").
func (a *Authenticator) Allowed(principals []string, repository string) bool {
	for _, g := range a.anonymous {
		if g.Match(repository) {
			return true
		}
	}
	if len(principals) == 0 {
		return false
	}
	for _, r := range a.rules {
		for _, g := range r.repos {
			if g.Match(repository) {
				for _, p := range r.allow {
					if a.allows(p, principals) {
						return true
					}
				}
				return false // first matching rule decides
			}
		}
	}
	return false
}

// loginPossible reports whether any way to present credentials exists.
func (a *Authenticator) loginPossible() bool {
	return a.htpasswd != nil || a.clientCA != nil
}

// failure is a refused authentication.
type failure struct {
	status     int
	code       string
	message    string // for the client: never a credential
	reason     string // for the log: never a credential
	method     string
	user       string // a known htpasswd user, for the log
	retryAfter time.Duration
	tokenError string // RFC 6750 error for the Bearer challenge
}

// authenticate identifies the client. bearerOK is false at the token
// endpoint (tokens are not exchanged for tokens).
func (a *Authenticator) authenticate(r *http.Request, bearerOK bool) (Identity, *claims, *failure) {
	ip := ClientIP(r)
	hdrs := r.Header.Values("Authorization")
	if len(hdrs) == 0 {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && a.clientCA != nil {
			id, err := a.clientCA.identify(r.TLS.PeerCertificates, a.now())
			if err != nil {
				return Identity{}, nil, &failure{status: http.StatusUnauthorized, code: ocierr.Unauthorized,
					message: "client certificate refused: " + err.Error(), reason: err.Error(), method: MethodMTLS}
			}
			return id, nil, nil
		}
		return Identity{Method: MethodAnonymous}, nil, nil
	}
	if len(hdrs) > 1 {
		a.limiter.fail("ip:" + ip)
		return Identity{}, nil, &failure{status: http.StatusBadRequest, code: ocierr.Unauthorized,
			message: "more than one Authorization header", reason: "several Authorization headers"}
	}
	h := hdrs[0]
	if len(h) > MaxAuthorizationHeader {
		a.limiter.fail("ip:" + ip)
		return Identity{}, nil, &failure{status: http.StatusBadRequest, code: ocierr.Unauthorized,
			message: fmt.Sprintf("Authorization header is larger than %d bytes", MaxAuthorizationHeader),
			reason:  fmt.Sprintf("oversized Authorization header (%d bytes)", len(h))}
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(h), " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Basic"):
		id, f := a.basic(r.Context(), ip, cred)
		return id, nil, f
	case strings.EqualFold(scheme, "Bearer") && bearerOK:
		// Token failures are logged, not rate-limited: signatures cannot
		// be guessed, and expired tokens are routine for busy clients.
		if a.tokens == nil {
			return Identity{}, nil, &failure{status: http.StatusUnauthorized, code: ocierr.Unauthorized,
				message: "Bearer tokens are not accepted: the token service is not enabled", reason: "bearer token without token service", method: MethodBearer}
		}
		c, err := a.tokens.verify(cred, a.now())
		if err != nil {
			return Identity{}, nil, &failure{status: http.StatusUnauthorized, code: ocierr.Unauthorized,
				message: "invalid token: " + err.Error(), reason: "invalid token: " + err.Error(), method: MethodBearer, tokenError: "invalid_token"}
		}
		id := Identity{Method: MethodBearer, Subject: c.Subject, Principals: c.Principals}
		return id, c, nil
	default:
		allowed := "Basic"
		if bearerOK && a.tokens != nil {
			allowed = "Basic or Bearer"
		}
		return Identity{}, nil, &failure{status: http.StatusUnauthorized, code: ocierr.Unauthorized,
			message: "unsupported authorization scheme: use " + allowed, reason: "unsupported authorization scheme"}
	}
}

var errNoUser = errors.New("unknown user")

func (a *Authenticator) basic(ctx context.Context, ip, cred string) (Identity, *failure) {
	return a.password(ctx, ip, func() (string, string, error) { return decodeBasic(cred) })
}

// password checks a user name and password that creds decodes (Basic
// header, token endpoint form), with the failed-login rate limits: only
// failures spend the address's and the user's tokens, and each key has at
// most as many checks in flight as it has tokens left, so concurrent
// guesses cannot overrun the bucket while concurrent valid logins wait
// their turn (briefly) instead of being refused.
func (a *Authenticator) password(ctx context.Context, ip string, creds func() (user, pass string, err error)) (Identity, *failure) {
	ipTry, f := a.begin(ctx, "ip:"+ip, "client address")
	if f != nil {
		return Identity{}, f
	}
	failed := true // malformed credentials count as failures of the address
	defer func() { ipTry.end(failed) }()
	bad := func(msg string) (Identity, *failure) {
		return Identity{}, &failure{status: http.StatusUnauthorized, code: ocierr.Unauthorized,
			message: msg, reason: msg, method: MethodBasic}
	}
	user, pass, err := creds()
	if err != nil {
		return bad(err.Error())
	}
	if a.htpasswd == nil {
		return bad("Basic authentication is not enabled")
	}
	userTry, f := a.begin(ctx, "user:"+user, "user")
	if f != nil {
		failed = false // no password was checked
		if a.htpasswd.known(user) {
			f.user = user
		}
		return Identity{}, f
	}
	err = a.htpasswd.verify(user, pass)
	failed = err != nil
	userTry.end(failed)
	if err == nil {
		return Identity{Method: MethodBasic, Subject: user, Principals: []string{user}}, nil
	}
	f = &failure{status: http.StatusUnauthorized, code: ocierr.Unauthorized,
		message: "invalid user name or password", method: MethodBasic}
	switch {
	case errors.Is(err, errNoUser):
		f.reason = "unknown user"
	case errors.Is(err, errBadPassword):
		f.reason, f.user = "wrong password", user
	default:
		f.reason = err.Error() // htpasswd unusable: never includes the password
	}
	return Identity{}, f
}

// begin waits for room to check a password of key (see limiter), or says
// why not: too many failures (429), or too many logins in progress (503).
func (a *Authenticator) begin(ctx context.Context, key, what string) (*attempt, *failure) {
	try, wait, err := a.limiter.begin(ctx, key)
	switch {
	case err != nil:
		return nil, &failure{status: http.StatusServiceUnavailable, code: ocierr.Unavailable,
			message:    fmt.Sprintf("too many logins in progress from this %s: retry shortly", what),
			reason:     "login wait timed out (" + what + ")",
			retryAfter: time.Second}
	case try == nil:
		return nil, tooMany(wait, what)
	}
	return try, nil
}

func tooMany(wait time.Duration, what string) *failure {
	return &failure{status: http.StatusTooManyRequests, code: ocierr.TooManyRequests,
		message:    fmt.Sprintf("too many failed logins from this %s: retry later", what),
		reason:     "rate limited (" + what + ")",
		retryAfter: wait}
}

// Middleware authenticates and authorizes /v2/ requests before next sees
// them; other paths pass through untouched.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.EscapedPath()
		if path != "/v2" && !strings.HasPrefix(path, "/v2/") {
			next.ServeHTTP(w, r)
			return
		}
		repo := ""
		if rt, err := route.Parse(path, r.URL.Query().Get("ns")); err == nil && rt.Kind != route.Base {
			repo = a.repoOf(rt)
		}
		id, c, f := a.authenticate(r, true)
		if f != nil {
			a.refuse(w, r, f, repo, false)
			return
		}
		if repo == "" {
			// /v2/ (or a path the proxy will reject): any identity will do.
			// Without credentials it answers 401 whenever a login exists, so
			// clients that hold credentials learn the challenge from their
			// first request (docker and skopeo only log in after a 401 here);
			// anonymous clients still pull anonymous repositories.
			if !id.Authenticated() && (len(a.anonymous) == 0 || a.loginPossible()) {
				a.challenge(w, r, repo, "", "authentication required")
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
			return
		}
		if !a.authorized(w, r, id, c, repo) {
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			ocierr.Write(w, r, ocierr.New(http.StatusMethodNotAllowed, ocierr.Unsupported,
				"pullgate grants pull access only: %s is not supported", r.Method))
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// authorized decides pull access to repo, answering the refusal itself.
func (a *Authenticator) authorized(w http.ResponseWriter, r *http.Request, id Identity, c *claims, repo string) bool {
	allowed := a.Allowed(id.Principals, repo)
	if id.Method == MethodBearer {
		if allowed && a.tokenGrants(c, repo) {
			return true
		}
		if allowed {
			// Valid token for other repositories: ask for one with this scope.
			a.challenge(w, r, repo, "insufficient_scope", "token does not grant pull access to "+repo)
			return false
		}
	} else if allowed {
		return true
	}
	if !id.Authenticated() || id.Subject == "" {
		a.log.Info("client refused: authentication required", "remote", ClientIP(r), "repository", repo, "method", id.Method)
		a.challenge(w, r, repo, "", "authentication required to pull "+repo)
		return false
	}
	a.log.Warn("client refused: no access", "remote", ClientIP(r), "user", id.Subject, "method", id.Method, "repository", repo)
	ocierr.Write(w, r, ocierr.New(http.StatusForbidden, ocierr.Denied,
		"%s may not pull %s: no access rule allows it", id.Subject, repo))
	return false
}

// tokenGrants checks the verified token's access claim for repo.
func (a *Authenticator) tokenGrants(c *claims, repo string) bool {
	if c == nil {
		return false
	}
	for _, e := range c.Access {
		if e.Type != "repository" || !hasAction(e.Actions, "pull") {
			continue
		}
		if rt, err := parseRepoName(e.Name); err == nil && a.repoOf(rt) == repo {
			return true
		}
	}
	return false
}

func hasAction(actions []string, want string) bool {
	for _, x := range actions {
		if x == want {
			return true
		}
	}
	return false
}

// parseRepoName parses a repository name as clients write it
// ("<upstream>/<repo>") with the registry API path rules. An upstream name
// with a port ("registry.internal:5000/<repo>", as challenges announce the
// ?ns= form of such an upstream; a path cannot carry ':') is read as that
// form, so the scope a challenge names is one a token can grant.
func parseRepoName(name string) (route.Route, error) {
	if name == "" || strings.ContainsAny(name, "?#") {
		return route.Route{}, errors.New("invalid repository name")
	}
	if host, repo, ok := strings.Cut(name, "/"); ok && strings.Contains(host, ":") {
		return route.Parse("/v2/"+repo+"/tags/list", host)
	}
	return route.Parse("/v2/"+name+"/tags/list", "")
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9.\-:\[\]]{1,255}$`)

// challenge answers 401 with the challenge clients need to log in.
func (a *Authenticator) challenge(w http.ResponseWriter, r *http.Request, repo, tokenError, message string) {
	var b strings.Builder
	if a.tokens != nil {
		realm := a.tokens.realm
		if realm == "" {
			if !hostRE.MatchString(r.Host) {
				ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Unauthorized, "invalid Host header"))
				return
			}
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			realm = scheme + "://" + r.Host + "/token"
		}
		fmt.Fprintf(&b, `Bearer realm=%q,service=%q`, realm, a.tokens.service)
		if repo != "" {
			fmt.Fprintf(&b, `,scope="repository:%s:pull"`, repo)
		}
		if tokenError != "" {
			fmt.Fprintf(&b, `,error=%q`, tokenError)
		}
	} else {
		fmt.Fprintf(&b, `Basic realm=%q,charset="UTF-8"`, a.realm)
	}
	w.Header().Set("WWW-Authenticate", b.String())
	ocierr.Write(w, r, ocierr.New(http.StatusUnauthorized, ocierr.Unauthorized, "%s", message))
}

// refuse answers a failed authentication and logs it.
func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, f *failure, repo string, tokenEndpoint bool) {
	attrs := []any{"remote", ClientIP(r), "path", r.URL.Path, "reason", f.reason, "status", f.status}
	if f.method != "" {
		attrs = append(attrs, "method", f.method)
	}
	if f.user != "" {
		attrs = append(attrs, "user", f.user)
	}
	a.log.Warn("client authentication failed", attrs...)
	switch f.status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		secs := int((f.retryAfter + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		ocierr.Write(w, r, ocierr.New(f.status, f.code, "%s", f.message))
	case http.StatusUnauthorized:
		if tokenEndpoint {
			a.basicChallenge(w)
			ocierr.Write(w, r, ocierr.New(f.status, f.code, "%s", f.message))
			return
		}
		a.challenge(w, r, repo, f.tokenError, f.message)
	default:
		ocierr.Write(w, r, ocierr.New(f.status, f.code, "%s", f.message))
	}
}

// ClientIP is the peer address (X-Forwarded-For is not trusted: it is the
// client's to write).
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
