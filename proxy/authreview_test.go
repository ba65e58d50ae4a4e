package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy/config"
)

// authProxy serves a proxy with client auth (htpasswd user alice, the token
// service) in front of one upstream named upName, alice allowed on
// <upName>/app/**.
func authProxy(t *testing.T, upName string) (*httptest.Server, *upstream.Registry, *prometheus.Registry) {
	t.Helper()
	up, err := upstream.Start(upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret-pw"), bcrypt.MinCost)
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("alice:"+string(hash)+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(fmt.Sprintf("rules:\n  - {name: open, match: [\"%s/**\"], action: allow}\n", upName)), 0o644)
	cfg, err := config.Load(writeFile(t, dir, "pullgate.yaml", fmt.Sprintf(`
storage: {path: data}
upstreams: [{name: %q, url: %s}]
policy: policy.yaml
auth:
  htpasswd: htpasswd
  token: {issuer: pullgate, service: pullgate}
  access:
    - repositories: ["%s/app/**"]
      allow: [alice]
`, upName, up.URL, upName)))
	if err != nil {
		t.Fatal(err)
	}
	_, ps, reg := serveProxy(t, cfg)
	return ps, up, reg
}

var challengeScope = regexp.MustCompile(`scope="([^"]*)"`)

// An upstream whose name has a port (containerd mirrors registry.internal:5000
// with ?ns=registry.internal:5000, the only form such a name can take) is
// reachable with the token flow: the scope of the challenge is one the token
// endpoint grants, and the token it grants opens the repository.
func TestTokenFlowForUpstreamWithPort(t *testing.T) {
	const upName = "registry.internal:5000"
	ps, up, _ := authProxy(t, upName)
	img, _ := random.Image(256, 1)
	want := push(t, up.Host, "app/a:1", img)
	path := "/v2/app/a/manifests/1?ns=" + url.QueryEscape(upName)

	get := func(path, user, pass, bearer string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", ps.URL+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	// Basic works: the repository is alice's.
	if resp, body := get(path, "alice", "s3cret-pw", ""); resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("basic: %d %s", resp.StatusCode, body)
	}
	// The token flow, as containerd runs it: challenge, token with the
	// challenge's scope, Bearer.
	resp, _ := get(path, "", "", "")
	m := challengeScope.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
	if resp.StatusCode != 401 || m == nil {
		t.Fatalf("challenge: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, body := get("/token?service=pullgate&scope="+url.QueryEscape(m[1]), "alice", "s3cret-pw", "")
	var tr struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &tr) != nil || tr.Token == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	resp, body = get(path, "", "", tr.Token)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("token granted for the challenge's scope %q does not open it: %d %q %s", m[1], resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	// And only that repository of that upstream.
	resp, _ = get("/v2/other/a/manifests/1?ns="+url.QueryEscape(upName), "", "", tr.Token)
	if resp.StatusCode != 403 {
		t.Fatalf("other repository with the token: %d", resp.StatusCode)
	}
}

// Requests that clients send before authenticating must not grow the
// metrics without bound: the method label of pullgate_requests_total only
// takes the methods the API knows, whatever method token a client sends.
func TestRequestMetricsMethodLabelBounded(t *testing.T) {
	ps, _, reg := authProxy(t, "upstream.local")
	for i := 0; i < 50; i++ {
		req, _ := http.NewRequest(fmt.Sprintf("X%d", i), ps.URL+"/v2/upstream.local/app/a/manifests/1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("unauthenticated %s: %d", req.Method, resp.StatusCode)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "pullgate_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					methods[l.GetValue()] = true
				}
			}
		}
	}
	if len(methods) > 2 {
		var names []string
		for m := range methods {
			names = append(names, m)
		}
		t.Fatalf("unauthenticated clients created %d method label values (%s...)", len(methods), strings.Join(names[:5], ","))
	}
}
