// Package containerdtest runs a real containerd daemon for end-to-end tests:
// its own root, state and socket in a temp dir, the CRI plugin and other
// privileged or unneeded plugins disabled, and helpers that pull through a
// pullgate mirror configured with hosts.toml, as a Kubernetes node would.
//
// containerd needs root. Without root the tests skip, unless
// PULLGATE_REQUIRE_TOOLS=1 (CI), where they fail.
package containerdtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/tools"
)

// Namespace is the containerd namespace tests pull into.
const Namespace = "pullgate-e2e"

// Daemon is a running containerd.
type Daemon struct {
	Address string // unix socket
	Dir     string
	Root    string
	State   string
	LogPath string
	ctr     string

	cmd  *exec.Cmd
	done chan struct{}
}

// Options choose another containerd for StartWith.
type Options struct {
	// Containerd and Ctr are tool names (test/tools) of the daemon and its
	// client (default "containerd" and "ctr").
	Containerd, Ctr string
	// Config is TOML appended to the generated configuration (plugin
	// sections such as the image-verifier's).
	Config string
	// Env is added to the daemon's environment (what the verifiers it
	// runs inherit).
	Env []string
}

// Start runs containerd until the test ends.
func Start(t testing.TB) *Daemon { return StartWith(t, Options{}) }

// StartWith runs the containerd o names, with o.Config, until the test ends.
func StartWith(t testing.TB, o Options) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		if tools.Required() {
			t.Fatal("containerd tests need root (PULLGATE_REQUIRE_TOOLS=1)")
		}
		t.Skip("containerd tests need root")
	}
	if o.Containerd == "" {
		o.Containerd = "containerd"
	}
	if o.Ctr == "" {
		o.Ctr = "ctr"
	}
	bin := tools.Need(t, o.Containerd)
	ctr := tools.Need(t, o.Ctr)
	// Unix socket paths are limited to 108 bytes: keep the dir short.
	dir, err := os.MkdirTemp("", "pgctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	d := &Daemon{
		Address: filepath.Join(dir, "c.sock"),
		Dir:     dir,
		Root:    filepath.Join(dir, "root"),
		State:   filepath.Join(dir, "state"),
		LogPath: filepath.Join(dir, "containerd.log"),
		ctr:     ctr,
		done:    make(chan struct{}),
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
temp = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "info"

[metrics]
  address = ""
`, d.Root, d.State, filepath.Join(dir, "tmp"), d.Address, d.Address+".ttrpc") + o.Config
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + filepath.Join(dir, "tmp")}, o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	d.cmd = cmd
	go func() { _ = cmd.Wait(); logf.Close(); close(d.done) }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			b, _ := os.ReadFile(d.LogPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("containerd log (tail):\n%s", b)
		}
	})
	// containerd is ready when ctr reaches it; wait with the test's own
	// deadline (a loaded machine starts it slowly).
	ctx := harness.StartContext(t)
	pause := 20 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, harness.ClientTimeout)
		out, err := d.run(actx, "version")
		cancel()
		if err == nil && strings.Contains(out.Stdout, "Server:") {
			break
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.LogPath)
			t.Fatalf("containerd exited:\n%s", b)
		case <-ctx.Done():
			b, _ := os.ReadFile(d.LogPath)
			t.Fatalf("containerd did not start before the test's deadline: %v\n%s\n%s", err, out, b)
		case <-time.After(pause):
		}
		pause = min(pause*2, 500*time.Millisecond)
	}
	return d
}

func (d *Daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
	// The native snapshotter leaves no mounts; unmount anything left under
	// the root defensively so the temp dir can be removed.
	unmountUnder(d.Dir)
}

func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			mounts = append(mounts, fields[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// Ctr runs ctr against this daemon in Namespace.
func (d *Daemon) Ctr(t testing.TB, args ...string) harness.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.ClientTimeout)
	defer cancel()
	res, _ := d.run(ctx, args...)
	t.Logf("$ ctr %s\n%s", strings.Join(args, " "), res.Output())
	return res
}

func (d *Daemon) run(ctx context.Context, args ...string) (harness.Result, error) {
	full := append([]string{"--address", d.Address, "--namespace", Namespace}, args...)
	cmd := exec.CommandContext(ctx, d.ctr, full...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + d.Dir, "NO_PROXY=127.0.0.1,localhost"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return harness.Result{Stdout: out.String(), Stderr: errb.String(), Err: err}, err
}

// Mirror writes a hosts.toml that sends pulls of registry host upstreamName to
// the pullgate mirror at proxyHost (host:port, plain HTTP) and returns the
// hosts dir. containerd then requests /v2/<repo>/...?ns=<upstreamName> from
// the mirror. The fallback server is a closed loopback port, so a pull that
// the mirror refuses can never succeed by going around it (and nothing leaves
// the machine).
func (d *Daemon) Mirror(t testing.TB, upstreamName, proxyHost string) string {
	t.Helper()
	hostsDir := filepath.Join(d.Dir, "hosts")
	dir := filepath.Join(hostsDir, upstreamName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf(`server = "http://127.0.0.1:%d"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, closedPort(t), proxyHost)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return hostsDir
}

func closedPort(t testing.TB) int { return harness.FreePort(t) }

// Pull runs `ctr images pull --hosts-dir <hostsDir> --snapshotter native` for
// ref (<upstreamName>/<repo>:<tag>), plus extra flags such as --platform.
func (d *Daemon) Pull(t testing.TB, hostsDir, ref string, extra ...string) harness.Result {
	t.Helper()
	args := append([]string{"images", "pull", "--hosts-dir", hostsDir, "--snapshotter", "native"}, extra...)
	return d.Ctr(t, append(args, ref)...)
}

// ImageDigest is the target digest of an image in containerd's image store.
func (d *Daemon) ImageDigest(t testing.TB, ref string) string {
	t.Helper()
	res := d.Ctr(t, "images", "ls")
	if res.Err != nil {
		t.Fatalf("ctr images ls: %v", res)
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == ref {
			return f[2]
		}
	}
	t.Fatalf("image %s not in containerd:\n%s", ref, res.Stdout)
	return ""
}

// HasContent reports whether containerd's content store holds a blob.
func (d *Daemon) HasContent(t testing.TB, digest string) bool {
	t.Helper()
	res := d.Ctr(t, "content", "ls", "-q")
	return strings.Contains(res.Stdout, digest)
}
