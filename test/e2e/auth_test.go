package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// The proxy's upstream client authenticates with basic auth, the bearer-token
// flow (WWW-Authenticate challenge, token server), credentials from a Docker
// config.json, and trusts a private CA given as `ca:`. Each case also checks
// that the upstream really requires what is configured: without it the pull
// through the proxy fails.
func TestUpstreamAuth(t *testing.T) {
	cases := []struct {
		name         string
		up           harness.UpstreamOptions
		dockerConfig bool
	}{
		{"basic", harness.UpstreamOptions{Basic: true}, false},
		{"bearer-token", harness.UpstreamOptions{Token: true}, false},
		{"docker-config-basic", harness.UpstreamOptions{Basic: true}, true},
		{"docker-config-token", harness.UpstreamOptions{Token: true}, true},
		{"custom-ca", harness.UpstreamOptions{TLS: true}, false},
		{"custom-ca-bearer-token", harness.UpstreamOptions{TLS: true, Token: true}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.up, gate.Options{DockerConfig: c.dockerConfig})
			if f.up.Token != nil {
				f.up.Token.ResetScopes() // forget the seeding's push scopes
			}
			d, err := harness.GGCRPull(f.ref("open/app:v1"))
			if err != nil || d != f.allowed.Digest {
				t.Fatalf("pull through proxy: %s %v", d, err)
			}
			res := harness.CraneDigest(t, f.ref("open/app:v1"))
			if res.Err != nil || strings.TrimSpace(res.Stdout) != f.allowed.Digest {
				t.Fatalf("crane digest: %v", res)
			}
			if f.up.Token != nil {
				if f.up.Token.Issued() == 0 {
					t.Fatal("no token was issued: the bearer flow was not used")
				}
				// The proxy asks for pull access to the repository it reads, nothing more.
				scopes := f.up.Token.Scopes()
				if !slices.Contains(scopes, "repository:open/app:pull") {
					t.Errorf("proxy never requested repository:open/app:pull; scopes %v", scopes)
				}
				for _, s := range scopes {
					if strings.Contains(s, "push") || strings.Contains(s, "delete") || strings.Contains(s, "*") {
						t.Errorf("proxy requested scope %q", s)
					}
				}
			}
			// The denied image stays denied with working credentials.
			if _, err := harness.GGCRPull(f.ref("blocked/app:v1")); err == nil || !strings.Contains(err.Error(), gate.DenyRule) {
				t.Fatalf("denied pull: %v", err)
			}

			// Negative control: the same upstream through a proxy without
			// the credentials (or without the CA) does not work.
			px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{f.up}, Edit: func(doc map[string]any) {
				for _, u := range doc["upstreams"].([]map[string]any) {
					if f.up.CA != nil && f.up.Creds == nil {
						delete(u, "ca")
						continue
					}
					delete(u, "dockerConfig")
					if u["password"] != nil {
						u["password"] = "wrong-password"
					}
				}
			}})
			if d, err := harness.GGCRPull(px.Ref(f.up, "open/app:v1")); err == nil {
				t.Fatalf("pull through a proxy without credentials/CA succeeded: %s", d)
			}
		})
	}
}
