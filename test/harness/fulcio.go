package harness

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pullgate/pullgate/test/tools"
)

// StartFulcio runs Sigstore's real Fulcio (the fulcio binary, installed by
// test/tools/install.sh) with its in-memory CA (--ca ephemeralca), no CT
// log, and the given OIDC issuers (email type: the certificate SAN is the
// token's verified email; Fulcio fetches each issuer's discovery document
// and keys), on free loopback ports. It waits until Fulcio serves its CA
// chain (GET <url>/api/v1/rootCert) and returns its URL. It stops with
// the test.
func StartFulcio(t testing.TB, issuers ...string) string {
	t.Helper()
	bin := tools.Need(t, "fulcio")
	dir := t.TempDir()
	type issuer struct {
		IssuerURL, ClientID, Type string
	}
	cfg := map[string]map[string]issuer{"OIDCIssuers": {}}
	for _, u := range issuers {
		cfg["OIDCIssuers"][u] = issuer{IssuerURL: u, ClientID: "sigstore", Type: "email"}
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return startLoopbackServer(t, bin, "/api/v1/rootCert", func(port int) []string {
		return []string{"serve", "--ca", "ephemeralca", "--ct-log-url", "", "--config-path", cfgPath,
			"--host", "127.0.0.1", "--port", strconv.Itoa(port),
			"--grpc-host", "127.0.0.1", "--grpc-port", strconv.Itoa(FreePort(t)), "--metrics-port", strconv.Itoa(FreePort(t)),
			"--legacy-unix-domain-socket", filepath.Join(dir, "legacy-"+strconv.Itoa(port)+".sock"), "--log_type", "prod"}
	})
}
