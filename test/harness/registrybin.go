package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	url, stop := startLoopbackCommand(t, "registry binary", "/v2/", func(port int) *exec.Cmd {
		dir := t.TempDir()
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
  addr: 127.0.0.1:%d
  secret: pullgate-test-secret
`, filepath.Join(dir, "storage"), port)
		if remoteURL != "" {
			cfg += fmt.Sprintf("proxy:\n  remoteurl: %s\n", remoteURL)
		}
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", cfgPath)
		cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none", "OTEL_SDK_DISABLED=true")
		return cmd
	})
	host := strings.TrimPrefix(url, "http://")
	u := &Upstream{Name: upstreamName, URL: url, Host: host, Liar: NewLiar(), close: stop}
	t.Cleanup(u.Down)
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
