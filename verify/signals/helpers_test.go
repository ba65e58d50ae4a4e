package signals

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func request(dg string) Request {
	return Request{Subject: Subject{Digest: dg, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Upstream: "upstream.local", Repository: "upstream.local/models/m", Tag: "v1"}}
}

// answerJSON is an answer as a provider would write it.
func answerJSON(dg, status, dbVersion string, extra string) string {
	s := `{"apiVersion":"` + APIVersion + `","provider":{"name":"sandbox","version":"1.2.0","dbVersion":"` + dbVersion + `"},` +
		`"subject":{"digest":"` + dg + `"},"status":"` + status + `"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, generated for the test; the server requires a client
// certificate of this CA.
type pki struct {
	dir                           string
	caFile, clientCert, clientKey string
	otherCA                       string // a CA that signed nothing the server uses
	serverTLS                     *tls.Config
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca := harness.NewCA(t)
	p := &pki{dir: t.TempDir(), caFile: ca.CertFile, otherCA: harness.NewCA(t).CertFile}
	p.clientCert, p.clientKey = ca.ClientCert(t, "pullgate")
	p.serverTLS = ca.Server.Clone()
	p.serverTLS.ClientCAs = ca.Pool
	p.serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	return p
}

// provider is a real HTTPS provider requiring a client certificate and a
// bearer token; answer decides each reply, calls counts them.
type testProvider struct {
	*httptest.Server
	pki       *pki
	tokenFile string
	token     atomic.Value // string the server expects
	calls     atomic.Int64
	answer    atomic.Value // func(w http.ResponseWriter, r *http.Request, req Request)
}

func newTestProvider(t testing.TB) *testProvider {
	t.Helper()
	tp := &testProvider{pki: newPKI(t)}
	tp.tokenFile = filepath.Join(tp.pki.dir, "token")
	tp.setToken(t, "token-1")
	tp.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.calls.Add(1)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+tp.token.Load().(string) {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		var req Request
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.APIVersion != APIVersion {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		tp.answer.Load().(func(http.ResponseWriter, *http.Request, Request))(w, r, req)
	}))
	tp.TLS = tp.pki.serverTLS
	tp.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	tp.StartTLS()
	t.Cleanup(tp.Close)
	tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
		w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, "db-1", `"verdict":"clean"`)))
	})
	return tp
}

func (tp *testProvider) setToken(t testing.TB, tok string) {
	t.Helper()
	if err := os.WriteFile(tp.tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tp.token.Store(tok)
}

func (tp *testProvider) reply(f func(w http.ResponseWriter, r *http.Request, req Request)) {
	tp.answer.Store(f)
}

func (tp *testProvider) provider() Provider {
	return Provider{Name: "sandbox", URL: tp.URL + "/v1/signals", CA: tp.pki.caFile,
		ClientCert: tp.pki.clientCert, ClientKey: tp.pki.clientKey, TokenFile: tp.tokenFile,
		Timeout: 5 * time.Second, CacheTTL: time.Hour}
}

func newService(t testing.TB, o Options, ps ...Provider) *Service {
	t.Helper()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s, err := NewService(ps, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// waitFor polls cond until it holds or the test's deadline nears.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	if d, ok := t.Deadline(); ok && time.Until(d) < 35*time.Second {
		end = d.Add(-5 * time.Second)
	}
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantKind(t *testing.T, r Result, kind string, msgPart string) {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("answer %+v, want an error of kind %s", r.Answer, kind)
	}
	if r.Answer != nil {
		t.Errorf("error and answer both set")
	}
	if r.Err.Kind != kind || !strings.Contains(r.Err.Msg, msgPart) || r.Err.Provider == "" {
		t.Fatalf("error %+v, want kind %s with %q", r.Err, kind, msgPart)
	}
}
