package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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
	var out bytes.Buffer
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none", "OTEL_SDK_DISABLED=true")
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
	u := &Upstream{Name: upstreamName, URL: "http://" + host, Host: host, Liar: NewLiar(), close: stop}
	t.Cleanup(u.Down)
	if err := waitHTTP(context.Background(), u.URL+"/v2/", 20*time.Second, done); err != nil {
		t.Fatalf("registry binary did not start: %v\n%s", err, out.String())
	}
	return u
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

func waitHTTP(ctx context.Context, url string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("process exited")
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timeout: %v", last)
}
