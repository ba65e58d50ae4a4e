package clientauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/ocierr"
	"github.com/pullgate/pullgate/verify/pubkey"
)

// Token limits.
const (
	maxScopes     = 64
	maxScopeBytes = 1024
	// tokenLeeway tolerates clock skew between replicas and clients.
	tokenLeeway = 30 * time.Second
)

// tokenService signs and verifies pullgate's registry tokens.
type tokenService struct {
	issuer, service, realm string
	ttl                    time.Duration
	alg                    jose.SignatureAlgorithm
	signer                 jose.Signer
	public                 crypto.PublicKey
	log                    *slog.Logger
}

// Access is one entry of the Docker "access" claim.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// claims are a pullgate token's claims.
type claims struct {
	jwt.Claims
	Access []Access `json:"access"`
	// Principals the subject held when the token was issued (user,
	// certificate CN/OU), so rules can be re-checked on use.
	Principals []string `json:"pullgate_principals,omitempty"`
}

func newTokenService(cfg *config.AuthToken, resolve func(string) string, log *slog.Logger) (*tokenService, error) {
	t := &tokenService{issuer: cfg.Issuer, service: cfg.Service, realm: cfg.Realm, ttl: cfg.TTL.D(), log: log}
	if t.issuer == "" {
		t.issuer = config.DefaultTokenIssuer
	}
	if t.service == "" {
		t.service = config.DefaultTokenService
	}
	if t.ttl == 0 {
		t.ttl = config.DefaultTokenTTL
	}
	var key crypto.Signer
	if cfg.Key == "" {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		key = k
		log.Warn("auth.token.key not set: signing tokens with an ephemeral key (tokens end with this process and are not shared by replicas)")
	} else {
		k, err := LoadSigningKey(resolve(cfg.Key))
		if err != nil {
			return nil, fmt.Errorf("auth.token.key: %w", err)
		}
		key = k
	}
	alg, err := algorithmFor(key)
	if err != nil {
		return nil, fmt.Errorf("auth.token.key %s: %w", cfg.Key, err)
	}
	t.alg, t.public = alg, key.Public()
	jwk := jose.JSONWebKey{Key: t.public}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("auth.token.key: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", base64.RawURLEncoding.EncodeToString(thumb))
	t.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return nil, fmt.Errorf("auth.token.key: %w", err)
	}
	return t, nil
}

// LoadSigningKey reads a PEM private key (PKCS#8, SEC 1 EC or PKCS#1 RSA).
func LoadSigningKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM private key", path)
		}
		var k any
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue // e.g. EC PARAMETERS before the key
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
		}
		return s, nil
	}
}

func algorithmFor(k crypto.Signer) (jose.SignatureAlgorithm, error) {
	if err := pubkey.Check(k.Public()); err != nil {
		return "", err
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P384() {
			return jose.ES384, nil
		}
		return jose.ES256, nil
	case *rsa.PrivateKey:
		return jose.RS256, nil
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("unsupported key type %T (use %s)", k, pubkey.Supported)
}

// issue signs a token for subject with the given access.
func (t *tokenService) issue(subject string, principals []string, access []Access, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	if access == nil {
		access = []Access{}
	}
	c := claims{
		Claims: jwt.Claims{
			Issuer: t.issuer, Subject: subject, Audience: jwt.Audience{t.service},
			Expiry:    jwt.NewNumericDate(now.Add(t.ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        hex.EncodeToString(jti[:]),
		},
		Access:     access,
		Principals: principals,
	}
	return jwt.Signed(t.signer).Claims(c).Serialize()
}

// verify checks a token's signature, issuer, audience and validity period.
// Errors describe the problem without quoting the token.
func (t *tokenService) verify(raw string, now time.Time) (*claims, error) {
	if raw == "" {
		return nil, errors.New("empty token")
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{t.alg})
	if err != nil {
		return nil, errors.New("malformed token")
	}
	var c claims
	if err := tok.Claims(t.public, &c); err != nil {
		return nil, errors.New("bad signature")
	}
	if c.Expiry == nil {
		return nil, errors.New("token has no expiry")
	}
	err = c.ValidateWithLeeway(jwt.Expected{Issuer: t.issuer, AnyAudience: jwt.Audience{t.service}, Time: now}, tokenLeeway)
	switch {
	case err == nil:
		return &c, nil
	case errors.Is(err, jwt.ErrExpired):
		return nil, errors.New("token expired")
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, errors.New("token not valid yet")
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, errors.New("token from another issuer")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, errors.New("token for another service")
	}
	return nil, errors.New("invalid claims")
}

// tokenResponse is the Docker token endpoint's answer.
type tokenResponse struct {
	Token       string `json:"token,omitempty"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
	Scope       string `json:"scope,omitempty"` // OAuth2 answers
}

// TokenHandler is the Docker token endpoint (GET /token?service=&scope=
// repository:<name>:pull&account=). It authenticates with Basic (htpasswd)
// or a client certificate, or anonymously where anonymous access exists, and
// grants pull, and only pull, on each requested repository the access rules
// allow. Mount it at /token on the registry listener. Without auth.token it
// answers 404.
func (a *Authenticator) TokenHandler() http.Handler {
	return http.HandlerFunc(a.serveToken)
}

func (a *Authenticator) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if a.tokens == nil {
		ocierr.Write(w, r, ocierr.New(http.StatusNotFound, ocierr.NameUnknown, "the token service is not enabled"))
		return
	}
	var (
		q  url.Values
		id Identity
		f  *failure
	)
	switch r.Method {
	case http.MethodGet:
		// The Docker token flow: Basic credentials (or a client
		// certificate, or none) and the parameters in the query.
		q = r.URL.Query()
		if s := q.Get("service"); s != "" && s != a.tokens.service {
			a.log.Warn("token request refused: other service", "remote", ClientIP(r))
			ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Denied, "unknown service: this token endpoint serves %q", a.tokens.service))
			return
		}
		id, _, f = a.authenticate(r, false)
	case http.MethodPost:
		// The OAuth2 password grant containerd tries first.
		var ok bool
		if q, ok = a.readTokenForm(w, r); !ok {
			return
		}
		if s := q.Get("service"); s != "" && s != a.tokens.service {
			a.log.Warn("token request refused: other service", "remote", ClientIP(r))
			ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Denied, "unknown service: this token endpoint serves %q", a.tokens.service))
			return
		}
		id, f = a.password(r.Context(), ClientIP(r), func() (string, string, error) {
			u, p := q.Get("username"), q.Get("password")
			return u, p, checkCredentials(u, p)
		})
		q.Set("account", "") // the user name is the account
	default:
		w.Header().Set("Allow", "GET, POST")
		ocierr.Write(w, r, ocierr.New(http.StatusMethodNotAllowed, ocierr.Unsupported, "the token endpoint answers GET (Docker token flow) and POST (OAuth2 password grant)"))
		return
	}
	if f != nil {
		a.refuse(w, r, f, "", true)
		return
	}
	if !id.Authenticated() && len(a.anonymous) == 0 {
		a.log.Info("token request refused: authentication required", "remote", ClientIP(r))
		a.basicChallenge(w)
		ocierr.Write(w, r, ocierr.New(http.StatusUnauthorized, ocierr.Unauthorized, "authentication required"))
		return
	}
	if acct := q.Get("account"); acct != "" && id.Method == MethodBasic && acct != id.Subject {
		a.log.Warn("token request refused: account does not match the user", "remote", ClientIP(r), "user", id.Subject)
		ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Denied, "account does not match the authenticated user"))
		return
	}
	var scopes []string
	for _, s := range q["scope"] {
		scopes = append(scopes, strings.Fields(s)...)
	}
	if len(scopes) > maxScopes {
		ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Denied, "too many scopes (at most %d)", maxScopes))
		return
	}
	var access []Access
	var refused []string
	seen := map[string]bool{}
	for _, s := range scopes {
		if len(s) > maxScopeBytes {
			ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Denied, "scope longer than %d bytes", maxScopeBytes))
			return
		}
		typ, name, actions, ok := parseScope(s)
		if !ok {
			ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Denied, "malformed scope %q: expected repository:<name>:pull", s))
			return
		}
		if typ != "repository" || !(hasAction(actions, "pull") || hasAction(actions, "*")) || seen[name] {
			continue
		}
		seen[name] = true
		rt, err := parseRepoName(name)
		if err != nil || !a.Allowed(id.Principals, a.repoOf(rt)) {
			refused = append(refused, name)
			continue
		}
		access = append(access, Access{Type: "repository", Name: name, Actions: []string{"pull"}})
	}
	now := a.now()
	tok, err := a.tokens.issue(id.Subject, id.Principals, access, now)
	if err != nil {
		a.log.Error("signing a token failed", "error", err)
		ocierr.Write(w, r, ocierr.New(http.StatusInternalServerError, ocierr.Unavailable, "could not sign a token"))
		return
	}
	granted := make([]string, len(access))
	for i, e := range access {
		granted[i] = e.Name
	}
	a.log.Info("token issued", "remote", ClientIP(r), "user", id.user(), "method", id.Method,
		"granted", granted, "refused", refused, "ttl", a.tokens.ttl.String())
	w.Header().Set("Content-Type", "application/json")
	resp := tokenResponse{AccessToken: tok, ExpiresIn: int(a.tokens.ttl / time.Second), IssuedAt: now.UTC().Format(time.RFC3339)}
	if r.Method == http.MethodGet {
		resp.Token = tok
	} else {
		names := make([]string, len(access))
		for i, e := range access {
			names[i] = "repository:" + e.Name + ":pull"
		}
		resp.Scope = strings.Join(names, " ")
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// maxTokenForm bounds the POST body of the token endpoint.
const maxTokenForm = 16 << 10

// readTokenForm reads an OAuth2 password grant. Anything else is refused
// with 400, on which containerd falls back to the GET flow.
func (a *Authenticator) readTokenForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Unsupported, "POST /token takes an application/x-www-form-urlencoded OAuth2 password grant"))
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenForm))
	if err != nil {
		ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Unsupported, "token request body larger than %d bytes", maxTokenForm))
		return nil, false
	}
	q, err := url.ParseQuery(string(b))
	if err != nil {
		ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Unsupported, "malformed token request body"))
		return nil, false
	}
	if q.Get("grant_type") != "password" {
		a.log.Info("token request refused: unsupported grant type", "remote", ClientIP(r))
		ocierr.Write(w, r, ocierr.New(http.StatusBadRequest, ocierr.Unsupported, "unsupported grant_type: use password, or GET with Basic credentials"))
		return nil, false
	}
	return q, true
}

// parseScope splits "type:name:actions" where the name may contain ':'
// (host:port).
func parseScope(s string) (typ, name string, actions []string, ok bool) {
	i, j := strings.Index(s, ":"), strings.LastIndex(s, ":")
	if i <= 0 || j <= i+1 || j == len(s)-1 {
		return "", "", nil, false
	}
	typ, name = s[:i], s[i+1:j]
	for _, a := range strings.Split(s[j+1:], ",") {
		actions = append(actions, strings.TrimSpace(a))
	}
	return typ, name, actions, true
}

func (a *Authenticator) basicChallenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm=%q,charset="UTF-8"`, a.realm))
}
