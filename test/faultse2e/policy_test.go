// Package faultse2e runs the pullgate binary (`pullgate serve`) through
// faults of its own files while it serves.
package faultse2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/tools"
)

// pullgateBin is the CLI, built once in TestMain.
var pullgateBin string

func TestMain(m *testing.M) { tools.RunWithPullgate(m, &pullgateBin) }

// served is a running `pullgate serve`.
type served struct {
	url, admin string
	cmd        *exec.Cmd
	mu         sync.Mutex
	log        strings.Builder
}

func (s *served) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// serve starts `pullgate serve --config cfg` and waits (within the test's
// deadline) until it logged its listeners and /readyz answers 200.
func serve(t *testing.T, cfg string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, pullgateBin, "serve", "--config", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &served{cmd: cmd}
	addrs := make(chan [2]string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var listen, admin string
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			switch m["msg"] {
			case "admin listener":
				admin, _ = m["addr"].(string)
			case "pullgate serving":
				listen, _ = m["listen"].(string)
				addrs <- [2]string{listen, admin}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cancel()
			<-done
		}
		_ = cmd.Wait()
		cancel()
		if t.Failed() {
			t.Logf("pullgate log:\n%s", s.logText())
		}
	})
	deadline := time.Now().Add(time.Minute)
	if d, ok := t.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	select {
	case a := <-addrs:
		s.url, s.admin = "http://"+a[0], "http://"+a[1]
	case <-done:
		t.Fatalf("pullgate exited before serving:\n%s", s.logText())
	case <-time.After(time.Until(deadline)):
		t.Fatalf("pullgate did not start:\n%s", s.logText())
	}
	waitFor(t, "readyz", func() bool {
		resp, err := http.Get(s.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-5*time.Second).Before(deadline) {
		deadline = d.Add(-5 * time.Second)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads one sample of the admin listener's /metrics.
func (s *served) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get(s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// The policy file truncated, cut in the middle of a write, deleted (and a
// SIGHUP meanwhile) while pullgate serves: the last good policy stays in
// force, every failed reload is logged and counted, and a later good file
// is picked up.
func TestPolicyFileBrokenWhileServing(t *testing.T) {
	up := harness.StartUpstream(t, harness.UpstreamOptions{})
	up.PushImage(t, "open/app", "v1", harness.ImageOptions{})
	up.PushImage(t, "blocked/app", "v1", harness.ImageOptions{})
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	good := gate.DefaultPolicy(up.Name)
	if err := os.WriteFile(policy, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	const lockdown = "pg-rule-lockdown"
	lockdownPolicy := fmt.Sprintf("rules:\n  - name: %s\n    match: [%q]\n    action: deny\n", lockdown, up.Name+"/open/app") + strings.TrimPrefix(good, "rules:\n")
	cfg := filepath.Join(dir, "pullgate.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
storage: {path: %s}
upstreams:
  - name: %s
    url: %s
policy: %s
audit: {path: %s}
log: {level: info, format: json}
`, filepath.Join(dir, "data"), up.Name, up.URL, policy, filepath.Join(dir, "audit.jsonl"))), 0o600); err != nil {
		t.Fatal(err)
	}
	s := serve(t, cfg)

	// decision GETs a manifest: its status and, when denied, the rule.
	decision := func(repo string) (int, string) {
		st, _, body, err := harness.Get(context.Background(), s.url+"/v2/"+up.Name+"/"+repo+"/manifests/v1", nil)
		if err != nil {
			t.Fatal(err)
		}
		msg := ""
		if st != 200 {
			oe, _ := harness.ParseOCIError(body)
			msg = oe.Message
		}
		return st, msg
	}
	expect := func(stage, repo string, want int, rule string) {
		t.Helper()
		st, msg := decision(repo)
		if st != want || !strings.Contains(msg, rule) {
			t.Fatalf("%s: %s: %d %q, want %d naming %q", stage, repo, st, msg, want, rule)
		}
	}
	const failedSeries = `pullgate_policy_reloads_total{result="failed"}`
	failed := s.metric(t, failedSeries)
	breakAndCheck := func(stage string, rule string, breakIt func()) {
		t.Helper()
		before := s.metric(t, failedSeries)
		breakIt()
		waitFor(t, stage+": a failed reload", func() bool { return s.metric(t, failedSeries) > before })
		// The last good policy is in force.
		if rule == gate.AllowRule {
			expect(stage, "open/app", 200, "")
		} else {
			expect(stage, "open/app", 403, rule)
		}
		expect(stage, "blocked/app", 403, gate.DenyRule)
	}
	expect("start", "open/app", 200, "")
	expect("start", "blocked/app", 403, gate.DenyRule)

	breakAndCheck("truncated to 0 bytes", gate.AllowRule, func() {
		if err := os.Truncate(policy, 0); err != nil {
			t.Fatal(err)
		}
	})

	// A writer rewrites the file in place and stops in the middle of a
	// rule (as a full disk or a slow editor leaves it).
	f, err := os.OpenFile(policy, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cut := strings.Index(lockdownPolicy, "action: deny") + len("action: de")
	breakAndCheck("cut mid-write", gate.AllowRule, func() {
		if _, err := f.WriteString(lockdownPolicy[:cut]); err != nil {
			t.Fatal(err)
		}
	})
	// The writer finishes: the new policy is picked up.
	if _, err := f.WriteString(lockdownPolicy[cut:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	waitFor(t, "the completed policy", func() bool { st, _ := decision("open/app"); return st == 403 })
	expect("completed", "open/app", 403, lockdown)

	breakAndCheck("deleted", lockdown, func() {
		if err := os.Remove(policy); err != nil {
			t.Fatal(err)
		}
	})
	breakAndCheck("SIGHUP while deleted", lockdown, func() {
		if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	})

	// A good file again (written elsewhere and renamed into place).
	tmp := policy + ".new"
	if err := os.WriteFile(tmp, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, policy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restored policy", func() bool { st, _ := decision("open/app"); return st == 200 })
	expect("restored", "blocked/app", 403, gate.DenyRule)

	if n := s.metric(t, failedSeries) - failed; n < 4 {
		t.Errorf("%s grew by %v, want >= 4", failedSeries, n)
	}
	if log := s.logText(); strings.Count(log, "policy reload failed") < 4 {
		t.Errorf("failed reloads not logged:\n%s", log)
	}
}
