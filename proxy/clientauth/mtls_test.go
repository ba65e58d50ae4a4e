package clientauth_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Client certificates from the trusted CA are identities ("cn:", "ou:")
// that the access rules and groups match; a certificate from another CA
// never completes the handshake.
func TestMTLS(t *testing.T) {
	e := newEnv(t, envOptions{mtls: true})
	_, _, node := e.pki.clientCA.issue(t, "node-1", nil, false)                         // group platform via cn:node-*
	_, _, reader := e.pki.clientCA.issue(t, "batch", []string{"secret-readers"}, false) // ou rule
	_, _, stranger := e.pki.clientCA.issue(t, "laptop", nil, false)                     // in no rule
	_, _, forged := e.pki.untrusted.issue(t, "node-1", nil, false)                      // same name, other CA

	for _, c := range []struct {
		name   string
		cert   *tls.Certificate
		repo   string
		status int
		user   string
	}{
		{"node cert/app", &node, "upstream.local/app/img", 0, "cn:node-1"},
		{"node cert/secret refused", &node, "upstream.local/secret/img", 403, ""},
		{"ou cert/secret", &reader, "upstream.local/secret/img", 0, "cn:batch"},
		{"ou cert/app refused", &reader, "upstream.local/app/img", 403, ""},
		{"cert in no rule/app refused", &stranger, "upstream.local/app/img", 403, ""},
		{"cert in no rule/public", &stranger, "upstream.local/public/img", 0, "cn:laptop"},
		{"no cert/app refused", nil, "upstream.local/app/img", 401, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.upstreamHits(c.repo)
			err := e.pull(t, c.repo, authn.Anonymous, c.cert)
			if c.status == 0 {
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				if got := e.userAt(c.repo); got != c.user {
					t.Fatalf("identity %q, want %q", got, c.user)
				}
				return
			}
			if status, _ := statusOf(err); status != c.status {
				t.Fatalf("pull error %v, want %d", err, c.status)
			}
			if n := e.upstreamHits(c.repo) - before; n != 0 {
				t.Fatalf("%d refused requests reached the registry", n)
			}
		})
	}

	t.Run("untrusted CA: handshake refused", func(t *testing.T) {
		before := e.upstreamHits("upstream.local/public/img")
		err := e.pull(t, "upstream.local/public/img", authn.Anonymous, &forged)
		// TLS 1.3 reports the refusal after the client's last flight: the
		// client sees an alert or a broken connection, never an HTTP answer.
		if status, _ := statusOf(err); err == nil || status != 0 {
			t.Fatalf("pull with an untrusted certificate: %v", err)
		}
		// The server logs the refusal (its goroutine may finish after the
		// client gave up).
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(e.serverLog.String(), "TLS handshake error") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(e.serverLog.String(), "TLS handshake error") || !strings.Contains(e.serverLog.String(), "certificate") {
			t.Fatalf("handshake refusal not logged: %q", e.serverLog.String())
		}
		if n := e.upstreamHits("upstream.local/public/img") - before; n != 0 {
			t.Fatalf("%d requests reached the registry", n)
		}
	})

	t.Run("Basic still works over TLS without a certificate", func(t *testing.T) {
		if err := e.pull(t, "upstream.local/app/img", &authn.Basic{Username: "alice", Password: passwords["alice"]}, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("token for a certificate", func(t *testing.T) {
		c := &http.Client{Transport: e.transport(&node)}
		resp, body := e.doWith(t, c, "GET", "/token?service=pullgate&scope=repository:upstream.local/app/img:pull&scope=repository:upstream.local/secret/img:pull", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var tr struct{ Token string }
		_ = json.Unmarshal(body, &tr)
		m := payload(t, tr.Token)
		access, _ := json.Marshal(m["access"])
		if m["sub"] != "cn:node-1" || string(access) != `[{"actions":["pull"],"name":"upstream.local/app/img","type":"repository"}]` {
			t.Fatalf("claims %v", m)
		}
		// The token works without the certificate.
		resp, _ = e.do(t, "GET", "/v2/upstream.local/app/img/manifests/v1", bearerHeader(tr.Token))
		if resp.StatusCode != 200 {
			t.Fatalf("token from a certificate: %d", resp.StatusCode)
		}
	})
}

// When the listener does not verify certificates itself (a listener that
// requests any certificate), the middleware still refuses one that its
// client CA did not issue: 401, logged.
func TestMTLSMiddlewareVerifies(t *testing.T) {
	e := newEnv(t, envOptions{mtls: true})
	_, _, forged := e.pki.untrusted.issue(t, "node-1", nil, false)
	_, _, node := e.pki.clientCA.issue(t, "node-1", nil, false)
	srv := &http.Server{Handler: e.handler, ErrorLog: log.New(io.Discard, "", 0)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(e.pki.serverCert, e.pki.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	get := func(cert tls.Certificate) (*http.Response, []byte) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: e.pki.serverPool, ServerName: "pullgate.test", Certificates: []tls.Certificate{cert}}}}
		resp, err := c.Get("https://" + ln.Addr().String() + "/v2/upstream.local/app/img/manifests/v1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get(forged)
	if code, msg := ociError(t, body); resp.StatusCode != 401 || code != "UNAUTHORIZED" || !strings.Contains(msg, "trusted client CA") {
		t.Fatalf("forged certificate: %d %s", resp.StatusCode, body)
	}
	found := false
	for _, r := range e.logRecords("client authentication failed") {
		found = found || r["method"] == "mtls"
	}
	if !found {
		t.Fatalf("refusal not logged:\n%s", e.logs.String())
	}
	if resp, body := get(node); resp.StatusCode != 200 {
		t.Fatalf("trusted certificate: %d %s", resp.StatusCode, body)
	}
	_ = filepath.Join
}
