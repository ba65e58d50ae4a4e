package load

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pullgate/pullgate/test/harness"
)

// Phase is the client-facing configuration of one run of the mix.
type Phase string

const (
	// PhaseOpen: no auth: section, the registry API is open.
	PhaseOpen Phase = "open"
	// PhaseToken: client auth on: htpasswd users, pullgate's token
	// endpoint (Bearer challenges), access rules per repository.
	PhaseToken Phase = "token"
)

// Users of the token phase: Loader may pull everything, Guest only open/**.
var (
	Loader = harness.Credentials{Username: "loader", Password: "loader-pw-" + strconv.Itoa(os.Getpid())}
	Guest  = harness.Credentials{Username: "guest", Password: "guest-pw-" + strconv.Itoa(os.Getpid())}
)

// TokenTTL is the lifetime of tokens in the token phase: the minimum the
// token spec allows, so that runs longer than a minute refresh them.
const TokenTTL = time.Minute

// Pullgate is a running bin/pullgate process (its own process, so that its
// RSS, file descriptors and goroutines are measured alone).
type Pullgate struct {
	URL      string // http://127.0.0.1:port
	AdminURL string
	Port     int
	Admin    int
	Upstream int // the upstream's port (connections to it are pullgate's pool)
	Pid      int
	Dir      string
	LogPath  string

	cmd  *exec.Cmd
	done chan struct{}
}

// StartPullgate writes pullgate.yaml (Policy, the corpus' key, and for
// PhaseToken an auth: section) into a fresh directory and runs bin serve.
// It is stopped when the test ends; its log is printed when the test fails.
func StartPullgate(t testing.TB, bin string, up *harness.Upstream, c *Corpus, phase Phase) *Pullgate {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("release.pub", c.PublicKey)
	write("policy.yaml", []byte(Policy))
	upPort, err := strconv.Atoi(up.Host[strings.LastIndex(up.Host, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	p := &Pullgate{Port: harness.FreePort(t), Admin: harness.FreePort(t), Upstream: upPort, Dir: dir,
		LogPath: filepath.Join(dir, "pullgate.log"), done: make(chan struct{})}
	p.URL = fmt.Sprintf("http://127.0.0.1:%d", p.Port)
	p.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", p.Admin)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
admin: 127.0.0.1:%d
storage: {path: ./data}
upstreams: [{name: %s, url: %s}]
policy: ./policy.yaml
audit: {path: ./audit.jsonl}
log: {level: warn, format: json}
`, p.Port, p.Admin, up.Name, up.URL)
	if phase == PhaseToken {
		var hp strings.Builder
		for _, u := range []harness.Credentials{Loader, Guest} {
			// bcrypt's minimum cost: the run measures the proxy, not bcrypt
			// (at the default cost 10 every token costs ~60 ms of CPU).
			h, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&hp, "%s:%s\n", u.Username, h)
		}
		write("htpasswd", []byte(hp.String()))
		// The default failed-login limit (burst 5 a client address), though
		// every client of the run logs in from 127.0.0.1: concurrent valid
		// logins must not be refused for it.
		cfg += fmt.Sprintf(`auth:
  htpasswd: ./htpasswd
  token: {issuer: pullgate-load, service: pullgate, ttl: %s}
  access:
    - repositories: ["%[2]s/open/**"]
      allow: [%[3]s, %[4]s]
    - repositories: ["%[2]s/**"]
      allow: [%[3]s]
`, TokenTTL, up.Name, Loader.Username, Guest.Username)
	}
	cfgPath := write("pullgate.yaml", []byte(cfg))
	logf, err := os.Create(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "serve", "--config", cfgPath)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	p.Pid = p.cmd.Process.Pid
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(p.LogPath); err == nil {
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("pullgate log (last 8000 bytes):\n%s", b)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout(t))
	defer cancel()
	if err := p.waitReady(ctx); err != nil {
		b, _ := os.ReadFile(p.LogPath)
		t.Fatalf("pullgate did not start: %v\n%s", err, b)
	}
	return p
}

// startTimeout is how long pullgate may take to answer: a minute, or what
// is left of the test's own deadline when that is shorter.
func startTimeout(t testing.TB) time.Duration {
	d := time.Minute
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := tt.Deadline(); ok && time.Until(dl) < 2*d {
			d = time.Until(dl) / 2
		}
	}
	return d
}

func (p *Pullgate) waitReady(ctx context.Context) error {
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("pullgate exited")
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.AdminURL+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("readyz: %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Exited reports whether the process has ended.
func (p *Pullgate) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after 10 s).
func (p *Pullgate) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Sample is one measurement of the pullgate process.
type Sample struct {
	At         time.Duration // since the run started
	RSS        int64         // VmRSS, bytes
	HWM        int64         // VmHWM (peak RSS so far), bytes
	Goroutines int           // go_goroutines of /metrics
	FDs        int           // entries of /proc/<pid>/fd
	// Sockets among FDs, by peer: connections of registry API clients,
	// of admin clients (the sampler's own scrape), and pullgate's
	// connections to the upstream (its keep-alive pool).
	ClientConns, AdminConns, UpstreamConns int
}

// Others is FDs that are neither client, admin nor upstream connections.
func (s Sample) Others() int { return s.FDs - s.ClientConns - s.AdminConns - s.UpstreamConns }

// sampleClient scrapes /metrics without keeping a connection open.
var sampleClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// Measure reads /proc/<pid>/{status,fd} and /proc/net/tcp, then scrapes
// go_goroutines from /metrics.
func (p *Pullgate) Measure(ctx context.Context) (Sample, error) {
	var s Sample
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				s.RSS = kb << 10
			} else {
				s.HWM = kb << 10
			}
		}
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", p.Pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return s, err
	}
	s.FDs = len(ents)
	socks := tcpSockets()
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		c, ok := socks[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")]
		if !ok || c.listen {
			continue
		}
		switch {
		case c.local == p.Port:
			s.ClientConns++
		case c.local == p.Admin:
			s.AdminConns++
		case c.remote == p.Upstream:
			s.UpstreamConns++
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.AdminURL+"/metrics", nil)
	resp, err := sampleClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := false
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return s, fmt.Errorf("go_goroutines %q: %v", v, err)
			}
			s.Goroutines, found = int(f), true
		}
	}
	if !found {
		return s, fmt.Errorf("no go_goroutines in /metrics")
	}
	return s, sc.Err()
}

type tcpSock struct {
	local, remote int
	listen        bool
}

// tcpSockets maps socket inodes to their ports (IPv4 and IPv6 tables).
func tcpSockets() map[string]tcpSock {
	out := map[string]tcpSock{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if i == 0 || len(fs) < 10 {
				continue
			}
			out[fs[9]] = tcpSock{local: hexPort(fs[1]), remote: hexPort(fs[2]), listen: fs[3] == "0A"}
		}
	}
	return out
}

func hexPort(addr string) int {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return 0
	}
	v, _ := strconv.ParseInt(addr[i+1:], 16, 32)
	return int(v)
}
