package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

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
	ctx := StartContext(t)
	for attempt := 1; ; attempt++ {
		url, out, err := runFulcio(ctx, t, bin, issuers)
		if err == nil {
			return url
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			t.Fatalf("fulcio did not start: %v\n%s", err, out)
		}
	}
}

func runFulcio(ctx context.Context, t testing.TB, bin string, issuers []string) (string, string, error) {
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
	port, grpcPort, metricsPort := FreePort(t), FreePort(t), FreePort(t)
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "serve", "--ca", "ephemeralca", "--ct-log-url", "", "--config-path", cfgPath,
		"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--grpc-host", "127.0.0.1", "--grpc-port", strconv.Itoa(grpcPort),
		"--metrics-port", strconv.Itoa(metricsPort), "--legacy-unix-domain-socket", filepath.Join(dir, "legacy.sock"), "--log_type", "prod")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	t.Cleanup(stop)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	err := waitHTTP(ctx, url+"/api/v1/rootCert", done)
	if errors.Is(err, errExited) && portTaken(out.String()) {
		err = errPortTaken
	}
	if err != nil {
		stop()
		return "", out.String(), err
	}
	return url, "", nil
}
