package clientauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// payload decodes a JWT's claims without verifying (tests inspect what the
// endpoint issued).
func payload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTokenEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := time.Now().Add(-time.Second).Unix()
	resp, body := e.do(t, "GET", "/token?service=pullgate&account=alice"+
		"&scope=repository:upstream.local/app/img:pull,push"+
		"&scope=repository:upstream.local/secret/img:pull"+
		"&scope="+strings.ReplaceAll("repository:upstream.local/public/img:pull repository:upstream.local/app/img2:push", " ", "%20")+
		"&scope=registry:catalog:*", basicHeader("alice", passwords["alice"]))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		IssuedAt    string `json:"issued_at"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Token == "" || tr.Token != tr.AccessToken || tr.ExpiresIn != 300 {
		t.Fatalf("response %+v", tr)
	}
	if _, err := time.Parse(time.RFC3339, tr.IssuedAt); err != nil {
		t.Fatalf("issued_at %q: %v", tr.IssuedAt, err)
	}
	// The signature verifies with the configured key.
	parsed, err := jwt.ParseSigned(tr.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.Claims
	if err := parsed.Claims(e.tokenKey.Public(), &c); err != nil {
		t.Fatalf("signature: %v", err)
	}
	m := payload(t, tr.Token)
	if m["iss"] != "pullgate" || m["sub"] != "alice" || m["aud"] != "pullgate" || m["jti"] == "" {
		t.Fatalf("claims %v", m)
	}
	exp, nbf, iat := int64(m["exp"].(float64)), int64(m["nbf"].(float64)), int64(m["iat"].(float64))
	if iat < before || nbf != iat || exp != iat+300 {
		t.Fatalf("times iat=%d nbf=%d exp=%d", iat, nbf, exp)
	}
	access, _ := json.Marshal(m["access"])
	want := `[{"actions":["pull"],"name":"upstream.local/app/img","type":"repository"},{"actions":["pull"],"name":"upstream.local/public/img","type":"repository"}]`
	if string(access) != want {
		t.Fatalf("access %s\nwant   %s", access, want)
	}

	// The token opens exactly what it grants.
	if resp, _ := e.do(t, "GET", "/v2/upstream.local/app/img/manifests/v1", bearerHeader(tr.Token)); resp.StatusCode != 200 {
		t.Fatalf("app with token: %d", resp.StatusCode)
	}
	// (The registry behind does not know ?ns=: it answers 404, but the
	// request got through as alice.)
	if resp, body := e.do(t, "GET", "/v2/app/img/manifests/v1?ns=upstream.local", bearerHeader(tr.Token)); resp.StatusCode == 401 || resp.StatusCode == 403 ||
		e.userAtPath("/v2/app/img/manifests/v1") != "alice" {
		t.Fatalf("app (ns form) with token: %d %s", resp.StatusCode, body)
	}
	// Another repository alice may pull: ask for a token with that scope.
	resp, _ = e.do(t, "GET", "/v2/upstream.local/app/img2/manifests/v1", bearerHeader(tr.Token))
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="repository:upstream.local/app/img2:pull",error="insufficient_scope"`) {
		t.Fatalf("app/img2 with app/img token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// One she may not: DENIED.
	resp, body = e.do(t, "GET", "/v2/upstream.local/secret/img/manifests/v1", bearerHeader(tr.Token))
	if code, msg := ociError(t, body); resp.StatusCode != 403 || code != "DENIED" || !strings.Contains(msg, "upstream.local/secret/img") {
		t.Fatalf("secret with alice's token: %d %s", resp.StatusCode, body)
	}
	if n := e.upstreamHits("upstream.local/secret/img") + e.upstreamHits("upstream.local/app/img2"); n != 0 {
		t.Fatalf("%d refused requests reached the registry", n)
	}
	if got := e.userAt("upstream.local/app/img"); got != "alice" {
		t.Fatalf("identity %q", got)
	}

	// Anonymous tokens grant the anonymous repositories only.
	anon := e.token(t, "", "repository:upstream.local/public/img:pull", "repository:upstream.local/app/img:pull")
	access, _ = json.Marshal(payload(t, anon)["access"])
	if string(access) != `[{"actions":["pull"],"name":"upstream.local/public/img","type":"repository"}]` {
		t.Fatalf("anonymous access %s", access)
	}
	if _, ok := payload(t, anon)["sub"]; ok {
		t.Fatalf("anonymous token has a subject")
	}
	resp, _ = e.do(t, "GET", "/v2/upstream.local/app/img/manifests/v1", bearerHeader(anon))
	if resp.StatusCode != 401 {
		t.Fatalf("anonymous token on app: %d", resp.StatusCode)
	}

	// Refusals of the endpoint itself.
	for _, c := range []struct {
		name, method, query string
		hdr                 http.Header
		status              int
	}{
		{"other service", "GET", "service=registry.docker.io&scope=repository:upstream.local/app/img:pull", basicHeader("alice", passwords["alice"]), 400},
		{"account mismatch", "GET", "service=pullgate&account=carol&scope=repository:upstream.local/app/img:pull", basicHeader("alice", passwords["alice"]), 400},
		{"malformed scope", "GET", "service=pullgate&scope=repository", basicHeader("alice", passwords["alice"]), 400},
		{"too many scopes", "GET", "service=pullgate" + strings.Repeat("&scope=repository:upstream.local/app/img:pull", 65), basicHeader("alice", passwords["alice"]), 400},
		{"PUT", "PUT", "service=pullgate", basicHeader("alice", passwords["alice"]), 405},
		{"wrong password", "GET", "service=pullgate&scope=repository:upstream.local/app/img:pull", basicHeader("alice", wrongPassword), 401},
		{"bearer is not a login", "GET", "service=pullgate", bearerHeader(tr.Token), 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.do(t, c.method, "/token?"+c.query, c.hdr)
			if resp.StatusCode != c.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, c.status)
			}
			ociError(t, body)
			if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Fatalf("challenge %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	e.secret(tr.Token)
	e.secret(anon)
}

// forge signs claims with key.
func forge(t *testing.T, key crypto.Signer, alg jose.SignatureAlgorithm, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Tokens with a bad signature, expired, not yet valid, for another service,
// from another issuer, without expiry, or unsigned are refused with 401
// invalid_token before anything reaches the registry, and logged without
// the token.
func TestTokenValidation(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := time.Now()
	good := func() map[string]any {
		return map[string]any{
			"iss": "pullgate", "sub": "alice", "aud": "pullgate", "jti": "x",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
			"access":              []map[string]any{{"type": "repository", "name": "upstream.local/app/img", "actions": []string{"pull"}}},
			"pullgate_principals": []string{"alice"},
		}
	}
	with := func(k string, v any) map[string]any { m := good(); m[k] = v; return m }
	without := func(k string) map[string]any { m := good(); delete(m, k); return m }
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// A correctly signed token passes (so the refusals below are about
	// what each one changes).
	ok := forge(t, e.tokenKey, jose.ES256, good())
	e.secret(ok)
	if resp, body := e.do(t, "GET", "/v2/upstream.local/app/img/manifests/v1", bearerHeader(ok)); resp.StatusCode != 200 {
		t.Fatalf("good token: %d %s", resp.StatusCode, body)
	}
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(mustJSON(good())) + "."
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	hsTok, _ := jwt.Signed(hs).Claims(good()).Serialize()

	for _, c := range []struct {
		name, tok, reason string
	}{
		{"bad signature", forge(t, otherKey, jose.ES256, good()), "bad signature"},
		{"tampered payload", tamper(t, ok), "bad signature"},
		{"expired", forge(t, e.tokenKey, jose.ES256, with("exp", now.Add(-10*time.Minute).Unix())), "token expired"},
		{"not yet valid", forge(t, e.tokenKey, jose.ES256, with("nbf", now.Add(10*time.Minute).Unix())), "token not valid yet"},
		{"other service", forge(t, e.tokenKey, jose.ES256, with("aud", "registry.docker.io")), "token for another service"},
		{"wrong issuer", forge(t, e.tokenKey, jose.ES256, with("iss", "evil")), "token from another issuer"},
		{"no expiry", forge(t, e.tokenKey, jose.ES256, without("exp")), "token has no expiry"},
		{"alg none", unsigned, "malformed token"},
		{"HS256", hsTok, "malformed token"},
		{"garbage", "not-a-token", "malformed token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.secret(c.tok)
			resp, body := e.do(t, "GET", "/v2/upstream.local/app/img/manifests/v1", bearerHeader(c.tok))
			if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
			if code, msg := ociError(t, body); code != "UNAUTHORIZED" || !strings.Contains(msg, c.reason) {
				t.Fatalf("%s: %s, want reason %q", code, msg, c.reason)
			}
			found := false
			for _, r := range e.logRecords("client authentication failed") {
				if r["reason"] == "invalid token: "+c.reason && r["method"] == "bearer" {
					found = true
				}
			}
			if !found {
				t.Fatalf("no log record for %q:\n%s", c.reason, e.logs.String())
			}
		})
	}
	// A token for another repository: alice may not pull secret at all.
	other := forge(t, e.tokenKey, jose.ES256, with("access", []map[string]any{{"type": "repository", "name": "upstream.local/secret/img", "actions": []string{"push"}}}))
	e.secret(other)
	if resp, _ := e.do(t, "GET", "/v2/upstream.local/secret/img/manifests/v1", bearerHeader(other)); resp.StatusCode != 403 {
		t.Fatalf("push-only token for a repository alice may not pull: %d", resp.StatusCode)
	}
	// A token granting carol's repository signed for a subject the rules
	// do not allow there is refused too (rules are checked on use).
	granted := forge(t, e.tokenKey, jose.ES256, with("access", []map[string]any{{"type": "repository", "name": "upstream.local/secret/img", "actions": []string{"pull"}}}))
	e.secret(granted)
	if resp, _ := e.do(t, "GET", "/v2/upstream.local/secret/img/manifests/v1", bearerHeader(granted)); resp.StatusCode != 403 {
		t.Fatalf("token granting a repository the rules refuse: %d", resp.StatusCode)
	}
	if n := e.upstreamHits("upstream.local/app/img"); n != 1 {
		t.Fatalf("%d requests reached the registry for app/img, want 1 (the good token)", n)
	}
	if n := e.upstreamHits("upstream.local/secret/img"); n != 0 {
		t.Fatalf("%d refused requests reached the registry", n)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// tamper swaps the payload of a signed token for one granting more.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	m := payload(t, tok)
	m["sub"] = "carol"
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(mustJSON(m)) + "." + parts[2]
}

// containerd first tries the OAuth2 password grant (POST /token); it gets
// the same token, and falls back to GET on the 400 for anything else.
func TestTokenPasswordGrant(t *testing.T) {
	e := newEnv(t, envOptions{})
	post := func(ctype, body string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.url+"/token", strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	form := url.Values{
		"grant_type": {"password"}, "username": {"alice"}, "password": {passwords["alice"]},
		"service": {"pullgate"}, "client_id": {"containerd-client"},
		"scope": {"repository:upstream.local/app/img:pull repository:upstream.local/secret/img:pull"},
	}
	resp, body := post("application/x-www-form-urlencoded", form.Encode())
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" || tr.ExpiresIn != 300 {
		t.Fatalf("response %s", body)
	}
	e.secret(tr.AccessToken)
	if tr.Scope != "repository:upstream.local/app/img:pull" || payload(t, tr.AccessToken)["sub"] != "alice" {
		t.Fatalf("scope %q, claims %v", tr.Scope, payload(t, tr.AccessToken))
	}
	if resp, _ := e.do(t, "GET", "/v2/upstream.local/app/img/manifests/v1", bearerHeader(tr.AccessToken)); resp.StatusCode != 200 {
		t.Fatalf("with the token: %d", resp.StatusCode)
	}

	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("password", wrongPassword)
	if resp, body := post("application/x-www-form-urlencoded", bad.Encode()); resp.StatusCode != 401 {
		t.Fatalf("wrong password: %d %s", resp.StatusCode, body)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"whatever-Secret-1"}, "service": {"pullgate"}}
	e.secret("whatever-Secret-1")
	if resp, body := post("application/x-www-form-urlencoded", refresh.Encode()); resp.StatusCode != 400 {
		t.Fatalf("refresh grant: %d %s", resp.StatusCode, body)
	}
	if resp, body := post("application/json", `{"grant_type":"password"}`); resp.StatusCode != 400 {
		t.Fatalf("JSON body: %d %s", resp.StatusCode, body)
	}
	if resp, body := post("application/x-www-form-urlencoded", "grant_type=password&username=alice&password="+strings.Repeat("x", 20000)); resp.StatusCode != 400 {
		t.Fatalf("oversized body: %d %s", resp.StatusCode, body)
	}
	recs := e.logRecords("client authentication failed")
	if len(recs) != 1 || recs[0]["reason"] != "wrong password" || recs[0]["user"] != "alice" {
		t.Fatalf("failed logins logged: %v", recs)
	}
}
