package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/tools"
)

// Real dockerd (Debian's docker.io) on a private "node": its own data root,
// exec root (and so its own containerd), pidfile, socket and daemon.json, no
// iptables and no bridge, vfs storage. Nothing of the host's Docker (the
// system daemon.json, its images, credentials) applies, and the host's
// network configuration is left alone. The docker CLI has its own
// DOCKER_CONFIG. pullgate listens on plain HTTP on 127.0.0.1, listed in
// insecure-registries.

// dockerNode is one private dockerd and the CLI talking to it.
type dockerNode struct {
	dockerd string
	cli     string
	dir     string
	sock    string
	logPath string
	env     []string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startDockerd starts a private dockerd whose daemon.json is conf, and waits
// for its API on its socket with the test's deadline. It is stopped when the
// test ends.
func startDockerd(t *testing.T, conf map[string]any) *dockerNode {
	t.Helper()
	bin := tools.Need(t, "dockerd")
	// The docker CLI of the same package when there is one (the API
	// versions match), else any docker CLI.
	cli := filepath.Join(filepath.Dir(bin), "docker")
	if _, err := os.Stat(cli); err != nil {
		cli = tools.Need(t, "docker")
	}
	if os.Geteuid() != 0 {
		// dockerd (rootful) needs root for its mounts and namespaces; the
		// rootless mode needs a user namespace setup CI does not have.
		if tools.Required() {
			t.Fatal("dockerd needs root: run the Docker end-to-end tests as root")
		}
		t.Skip("dockerd needs root")
	}
	// A unix socket path is limited to 108 bytes: t.TempDir's is long.
	dir, err := os.MkdirTemp("", "pgdk")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerNode{dockerd: bin, cli: cli, dir: dir, sock: filepath.Join(dir, "docker.sock"),
		logPath: filepath.Join(dir, "dockerd.log"), exited: make(chan struct{})}
	for _, s := range []string{"data", "exec", "home", "cli"} {
		if err := os.MkdirAll(filepath.Join(dir, s), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	full := map[string]any{
		// dockerd 20.10 keeps a libtrust key in /etc/docker/key.json unless
		// told otherwise (a daemon.json key only: its flag is gone).
		"deprecated-key-path": filepath.Join(dir, "key.json"),
	}
	for k, v := range conf {
		full[k] = v
	}
	b, err := json.MarshalIndent(full, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	daemonJSON := filepath.Join(dir, "daemon.json")
	write(t, daemonJSON, string(b))
	d.env = []string{
		"HOME=" + filepath.Join(dir, "home"),
		"PATH=" + os.Getenv("PATH"),
		"DOCKER_CONFIG=" + filepath.Join(dir, "cli"),
		"NO_PROXY=*",
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin,
		"--config-file", daemonJSON, // not /etc/docker/daemon.json
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", "unix://"+d.sock,
		"--iptables=false", "--ip6tables=false", "--bridge=none",
		"--storage-driver=vfs",
	)
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start dockerd: %v", err)
	}
	go func() { _ = d.cmd.Wait(); logf.Close(); close(d.exited) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			if b, err := os.ReadFile(d.logPath); err == nil {
				t.Logf("dockerd log (last 6000 bytes):\n%s", tailString(string(b), 6000))
			}
		}
		_ = os.RemoveAll(dir)
	})
	if err := d.wait(harness.StartContext(t)); err != nil {
		b, _ := os.ReadFile(d.logPath)
		t.Fatalf("dockerd did not come up: %v\n%s", err, tailString(string(b), 4000))
	}
	return d
}

// wait polls GET /_ping on the socket until it answers 200, dockerd exits or
// ctx ends.
func (d *dockerNode) wait(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.sock)
		},
	}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	delay := 20 * time.Millisecond
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://dockerd/_ping", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /_ping: %s", resp.Status)
		}
		select {
		case <-d.exited:
			return fmt.Errorf("dockerd exited: %v", d.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		if delay < 500*time.Millisecond {
			delay *= 2
		}
	}
}

// stop ends dockerd (SIGTERM: it stops its containerd), then anything left
// in its process group.
func (d *dockerNode) stop(t *testing.T) {
	select {
	case <-d.exited:
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			t.Logf("dockerd did not stop in 30s after SIGTERM: killing it")
		}
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.exited
}

// run runs the docker CLI against this dockerd.
func (d *dockerNode) run(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return runNodeClient(t, "docker", d.cli, d.env, d.dir, append([]string{"-H", "unix://" + d.sock}, args...), args)
}

func (d *dockerNode) pull(t *testing.T, ref string) harness.Result {
	t.Helper()
	return d.run(t, "pull", "--quiet", ref)
}

// repoDigest is the first of the image's RepoDigests (name@sha256:...).
func (d *dockerNode) repoDigest(t *testing.T, ref string) string {
	t.Helper()
	res := d.run(t, "image", "inspect", "--format", "{{index .RepoDigests 0}}", ref)
	if res.Err != nil {
		t.Fatalf("docker image inspect %s: %v", ref, res)
	}
	return strings.TrimSpace(res.Stdout)
}

// log is what dockerd logged so far.
func (d *dockerNode) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// shippedDockerDaemonJSON is deploy/nodes/docker/daemon.json with pullgate's
// example address replaced by addr.
func shippedDockerDaemonJSON(t *testing.T, addr string) map[string]any {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "nodes", "docker", "daemon.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("the shipped example: %v", err)
	}
	if !bytes.Contains(b, []byte(exampleAddr)) {
		t.Fatalf("%s does not use pullgate's example address %s", p, exampleAddr)
	}
	var conf map[string]any
	if err := json.Unmarshal(bytes.ReplaceAll(b, []byte(exampleAddr), []byte(addr)), &conf); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return conf
}

// insecure is a daemon.json that reaches pullgate at addr over plain HTTP
// in the path form only (no registry-mirrors).
func insecure(addr string) map[string]any {
	return map[string]any{"insecure-registries": []string{addr}}
}

// An allowed pull in the path form, by tag and by digest, stores the
// upstream's manifest digest.
func TestDockerAllowedPullSameDigest(t *testing.T) {
	tools.Need(t, "dockerd") // before the fixture: skips or fails (CI) here
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	d := startDockerd(t, insecure(f.px.Host))
	name := f.px.Host + "/" + f.up.Name + "/open/app"
	want := name + "@" + f.allowed.Digest
	for _, tc := range []struct{ name, ref string }{
		{"by-tag", name + ":v1"},
		{"by-digest", want},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := d.pull(t, tc.ref); res.Err != nil {
				t.Fatalf("docker pull %s: %v", tc.ref, res)
			}
			if got := d.repoDigest(t, tc.ref); got != want {
				t.Fatalf("docker stored %s for %s, upstream has %s", got, tc.ref, want)
			}
			// An empty store for the next case: everything through pullgate.
			if res := d.run(t, "image", "rm", "--force", tc.ref); res.Err != nil {
				t.Fatalf("docker image rm: %v", res)
			}
		})
	}
	if f.up.Reg.Total() == 0 {
		t.Fatal("the pulls reached no upstream: pullgate did not fetch them")
	}
	checkAllowed(t, f, "open/app")
}

// A denied pull in the path form fails and the user sees pullgate's reason
// (dockerd passes the registry's error message on), and the audit log has
// exactly one decision for it. By tag dockerd resolves with HEAD and, when
// that is refused, asks again with GET (distribution's client): pullgate
// records the pull once, as the HEAD (it recorded both before).
func TestDockerDeniedPullDecisions(t *testing.T) {
	tools.Need(t, "dockerd") // before the fixture: skips or fails (CI) here
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	d := startDockerd(t, insecure(f.px.Host))
	for _, tc := range []struct {
		name, reference string
		methods         []string // of the audit lines, in order
	}{
		{"by-tag", "v1", []string{"HEAD"}},
		{"by-digest", f.denied.Digest, []string{"GET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sep := ":"
			if strings.HasPrefix(tc.reference, "sha256:") {
				sep = "@"
			}
			ref := f.px.Host + "/" + f.up.Name + "/blocked/app" + sep + tc.reference
			before := len(decisions(t, f.px, f.up.Name, "blocked/app"))
			res := d.pull(t, ref)
			if res.Err == nil {
				t.Fatalf("docker pulled denied %s: %v", ref, res)
			}
			want := "denied: pullgate denied " + f.up.Name + "/blocked/app@" + tc.reference + ": rule " + gate.DenyRule
			if !strings.Contains(res.Stderr, want) {
				t.Fatalf("docker stderr does not show pullgate's denial %q: %q", want, res.Stderr)
			}
			if n := f.up.Count("", "/blocked/app/blobs/"); n != 0 {
				t.Errorf("upstream served %d blob requests of the denied image", n)
			}
			checkDenials(t, decisions(t, f.px, f.up.Name, "blocked/app")[before:], tc.methods)
		})
	}
}

// checkDenials checks that ds are denials by gate.DenyRule of manifest
// requests with the given methods, in order.
func checkDenials(t *testing.T, ds []gate.AuditEvent, methods []string) {
	t.Helper()
	var got []string
	for _, d := range ds {
		m, _ := d.Raw["method"].(string)
		got = append(got, m)
		if d.Decision != "deny" || d.Rule != gate.DenyRule {
			t.Errorf("audit decision %q rule %q, want deny by %s: %v", d.Decision, d.Rule, gate.DenyRule, d.Raw)
		}
	}
	if strings.Join(got, " ") != strings.Join(methods, " ") {
		t.Fatalf("audit has %d decisions (methods %v) for one denied docker pull, want %v: %+v", len(ds), got, methods, ds)
	}
}

// hubFixture is pullgate fronting a local registry under the upstream name
// docker.io, as its defaultUpstream (as the shipped manifests do), so that
// dockerd's registry-mirrors paths (/v2/<repo>/..., no prefix) reach it.
func hubFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixture(t, harness.UpstreamOptions{Name: "docker.io"}, gate.Options{
		Edit: func(doc map[string]any) { doc["defaultUpstream"] = "docker.io" },
	})
}

// The shipped daemon.json (registry-mirrors at pullgate): an allowed Docker
// Hub pull comes through pullgate with the upstream's digest; a denied one is
// refused by pullgate, and dockerd falls back to Docker Hub. This machine
// cannot reach Docker Hub (as a node behind the egress control cannot), so
// the user sees the fallback's error, not pullgate's reason; pullgate
// recorded the denial once, and dockerd's log has pullgate's reason.
func TestDockerMirrorFallsBackToHub(t *testing.T) {
	tools.Need(t, "dockerd") // before the fixture: skips or fails (CI) here
	f := hubFixture(t)
	d := startDockerd(t, shippedDockerDaemonJSON(t, f.px.Host))

	t.Run("allowed", func(t *testing.T) {
		if res := d.pull(t, "open/app:v1"); res.Err != nil {
			t.Fatalf("docker pull through the mirror: %v", res)
		}
		want := "open/app@" + f.allowed.Digest
		if got := d.repoDigest(t, "open/app:v1"); got != want {
			t.Fatalf("docker stored %s, upstream has %s", got, want)
		}
		ds := decisions(t, f.px, f.up.Name, "open/app")
		if len(ds) == 0 || ds[0].Decision != "allow" {
			t.Fatalf("pullgate did not decide the mirror pull: %+v", ds)
		}
	})
	t.Run("denied", func(t *testing.T) {
		res := d.pull(t, "blocked/app:v1")
		if res.Err == nil {
			t.Fatalf("docker pulled denied docker.io/blocked/app:v1: %v", res)
		}
		if !strings.Contains(res.Stderr, "registry-1.docker.io") {
			t.Errorf("docker stderr is not the fallback's error: %q", res.Stderr)
		}
		if strings.Contains(res.Stderr, "pullgate denied") || strings.Contains(res.Stderr, gate.DenyRule) {
			t.Errorf("docker stderr shows pullgate's reason (the docs say it hides it): %q", res.Stderr)
		}
		// One decision (HEAD, then the GET recorded with it: see
		// TestDockerDeniedPullDecisions); then the fallback to Docker Hub.
		checkDenials(t, decisions(t, f.px, f.up.Name, "blocked/app"), []string{"HEAD"})
		want := "pullgate denied docker.io/blocked/app@v1: rule " + gate.DenyRule
		for _, l := range strings.Split(d.log(), "\n") {
			if strings.Contains(l, want) {
				t.Logf("dockerd's log: %s", l)
				return
			}
		}
		t.Errorf("dockerd's log does not have pullgate's reason %q", want)
	})
}

// With pullgate stopped a path-form pull fails: there is no other registry
// to fall back to, and the upstream sees no request. Through the mirror,
// dockerd falls back to Docker Hub: the error is the fallback's.
func TestDockerPullgateDown(t *testing.T) {
	tools.Need(t, "dockerd") // before the fixture: skips or fails (CI) here
	f := hubFixture(t)
	pgHost := f.px.Host
	conf := shippedDockerDaemonJSON(t, pgHost)
	f.px.Close()
	d := startDockerd(t, conf)

	t.Run("path-form", func(t *testing.T) {
		f.up.Reg.ResetCounts()
		refusedWhileDown(t, "docker", d.pull(t, pgHost+"/"+f.up.Name+"/open/app:v1"), pgHost, "pullgate's address", f.up.Reg)
	})
	t.Run("mirror", func(t *testing.T) {
		f.up.Reg.ResetCounts()
		refusedWhileDown(t, "docker", d.pull(t, "open/app:v1"), "registry-1.docker.io", "the fallback's host", f.up.Reg)
	})
}
