package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pullgate/pullgate/test/tools"
)

// StartRegistryBinary runs distribution's `registry` binary (installed by
// test/tools/install.sh) as an upstream: filesystem storage in a temp dir,
// plain HTTP on a free loopback port. It has no request counting and no liar.
func StartRegistryBinary(t testing.TB, upstreamName string) *Upstream {
	t.Helper()
	return startRegistryBinary(t, upstreamName, "")
}

// StartRegistryProxy runs distribution's registry binary in pull-through
// proxy mode in front of remoteURL (the peer pullgate is compared with in
// benchmarks). Its content is whatever the remote has.
func StartRegistryProxy(t testing.TB, name, remoteURL string) *Upstream {
	t.Helper()
	return startRegistryBinary(t, name, remoteURL)
}

func startRegistryBinary(t testing.TB, upstreamName, remoteURL string) *Upstream {
	t.Helper()
	bin := tools.Need(t, "registry")
	ctx := StartContext(t)
	for attempt := 1; ; attempt++ {
		u, out, err := runRegistryBinary(ctx, t, bin, upstreamName, remoteURL)
		if err == nil {
			return u
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			t.Fatalf("registry binary did not start: %v\n%s", err, out)
		}
	}
}

// runRegistryBinary starts one registry binary on a free port and waits
// until it answers /v2/; errPortTaken when another process took the port.
func runRegistryBinary(ctx context.Context, t testing.TB, bin, upstreamName, remoteURL string) (*Upstream, string, error) {
	dir := t.TempDir()
	port := FreePort(t)
	host := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: pullgate-test-secret
`, filepath.Join(dir, "storage"), host)
	if remoteURL != "" {
		cfg += fmt.Sprintf("proxy:\n  remoteurl: %s\n", remoteURL)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	done, stop := startProcess(t, cmd)
	u := &Upstream{Name: upstreamName, URL: "http://" + host, Host: host, Liar: NewLiar(), close: stop}
	t.Cleanup(u.Down)
	err := waitHTTP(ctx, u.URL+"/v2/", done)
	if errors.Is(err, errExited) && portTaken(out.String()) {
		err = errPortTaken
	}
	if err != nil {
		u.Down()
		return nil, out.String(), err
	}
	return u, "", nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
