package clientauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/proxy/clientauth"
	"github.com/pullgate/pullgate/proxy/config"
)

const baseYAML = `
listen: 127.0.0.1:5000
upstreams:
  - name: upstream.local
    url: https://upstream.local
policy: ./policy.yaml
`

// The auth section of pullgate.yaml as documented loads with the server's
// own config loader, and New accepts it.
func TestConfigAuthSection(t *testing.T) {
	dir := t.TempDir()
	writeHtpasswd(t, filepath.Join(dir, "htpasswd"), passwords)
	writeECKey(t, filepath.Join(dir, "token-key.pem"))
	p := newPKI(t, dir)
	src := baseYAML + `
tls:
  cert: ./server.pem
  key: ./server-key.pem
auth:
  realm: pullgate
  anonymous: [ "upstream.local/public/**" ]
  htpasswd: ./htpasswd
  token:
    issuer: pullgate
    service: pullgate
    key: ./token-key.pem
    ttl: 5m
    realm: https://pullgate.example.com/token
  mtls:
    clientCA: ./clients-ca.pem
  groups: { platform: [alice, "cn:node-*"], admins: [carol] }
  access:
    - repositories: ["upstream.local/app/**"]
      allow: [alice, "group:platform", "cn:node-*"]
    - repositories: ["**"]
      allow: ["group:admins"]
  rateLimit: { failuresPerMinute: 10, burst: 5 }
`
	path := filepath.Join(dir, "pullgate.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth == nil || cfg.Auth.Token.TTL.D().String() != "5m0s" || len(cfg.Auth.Access) != 2 || cfg.Auth.MTLS.ClientCA != "./clients-ca.pem" {
		t.Fatalf("auth %+v", cfg.Auth)
	}
	a, err := clientauth.New(cfg.Auth, cfg.Resolve, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		principals []string
		repo       string
		want       bool
	}{
		{nil, "upstream.local/public/x", true},
		{nil, "upstream.local/app/x", false},
		{[]string{"alice"}, "upstream.local/app/x/y", true},
		{[]string{"alice"}, "upstream.local/other", false},
		{[]string{"cn:node-7", "ou:gpu"}, "upstream.local/app/x", true},
		{[]string{"cn:laptop"}, "upstream.local/app/x", false},
		{[]string{"carol"}, "upstream.local/app/x", false}, // first match wins
		{[]string{"carol"}, "docker.io/library/alpine", true},
		{[]string{"node-7"}, "upstream.local/app/x", false}, // a user is not a cn
	} {
		if got := a.Allowed(c.principals, c.repo); got != c.want {
			t.Errorf("Allowed(%v, %s) = %v, want %v", c.principals, c.repo, got, c.want)
		}
	}
	_ = p
}

func TestConfigAuthErrors(t *testing.T) {
	for _, c := range []struct{ name, auth, want string }{
		{"unknown key", "auth:\n  htpasswd: x\n  bogus: 1\n", "field bogus not found"},
		{"unknown token key", "auth:\n  anonymous: [\"**\"]\n  token: {secret: x}\n", "field secret not found"},
		{"undefined group", "auth:\n  htpasswd: x\n  access: [{repositories: [\"**\"], allow: [\"group:nope\"]}]\n", `"group:nope": no such group`},
		{"nested group", "auth:\n  htpasswd: x\n  groups: {a: [\"group:b\"], b: [x]}\n  access: [{repositories: [\"**\"], allow: [\"group:a\"]}]\n", "groups cannot contain groups"},
		{"bad principal kind", "auth:\n  htpasswd: x\n  access: [{repositories: [\"**\"], allow: [\"uid:1\"]}]\n", "principals are user names"},
		{"bad glob", "auth:\n  htpasswd: x\n  access: [{repositories: [\"/abs\"], allow: [alice]}]\n", "must not start with '/'"},
		{"bad anonymous glob", "auth:\n  anonymous: [\"a/[b\"]\n", "anonymous[0]"},
		{"empty allow", "auth:\n  htpasswd: x\n  access: [{repositories: [\"**\"]}]\n", "access[0].allow"},
		{"nobody could pull", "auth:\n  htpasswd: x\n", "nobody could pull"},
		{"rules without login", "auth:\n  access: [{repositories: [\"**\"], allow: [alice]}]\n", "need a way to log in"},
		{"mtls without tls", "auth:\n  mtls: {clientCA: ca.pem}\n  access: [{repositories: [\"**\"], allow: [\"cn:*\"]}]\n", "client certificates need TLS"},
		{"ttl too long", "auth:\n  anonymous: [\"**\"]\n  token: {ttl: 48h}\n", "token.ttl"},
		{"ttl under the token spec's 60s", "auth:\n  anonymous: [\"**\"]\n  token: {ttl: 30s}\n", "token.ttl 30s: must be between 1m0s"},
		{"realm not a URL", "auth:\n  anonymous: [\"**\"]\n  token: {realm: /token}\n", "token.realm"},
		{"quote in service", "auth:\n  anonymous: [\"**\"]\n  token: {service: 'a\"b'}\n", "printable ASCII"},
		{"negative rate", "auth:\n  anonymous: [\"**\"]\n  rateLimit: {burst: -1}\n", "rateLimit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(baseYAML + c.auth))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
	// New validates too (a configuration built in code).
	if _, err := clientauth.New(&config.Auth{}, nil, nil); err == nil || !strings.Contains(err.Error(), "nobody could pull") {
		t.Fatalf("New of an empty section: %v", err)
	}
	// Files are checked when the authenticator is built.
	_, err := clientauth.New(&config.Auth{Htpasswd: "/nonexistent/htpasswd", Anonymous: []string{"**"}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "htpasswd") {
		t.Fatalf("missing htpasswd: %v", err)
	}
}
