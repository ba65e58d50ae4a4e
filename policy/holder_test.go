package policy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const policyA = `rules:
  - name: a
    match: ["up/**"]
    action: allow
`

const policyB = `rules:
  - name: b
    match: ["up/**"]
    action: deny
`

const policyInvalid = `rules:
  - name: b
    match: ["up/**"]
    action: maybe
`

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestHolder(t *testing.T, path string, events *[]ReloadEvent, mu *sync.Mutex) (*Holder, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	h, err := NewHolder(path, HolderOptions{
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Debounce: 20 * time.Millisecond,
		OnReload: func(ev ReloadEvent) {
			if events != nil {
				mu.Lock()
				*events = append(*events, ev)
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, logs
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", within, what)
}

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestHolderStartInvalidIsError(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": policyInvalid})
	if _, err := NewHolder(filepath.Join(dir, "p.yaml"), HolderOptions{}); err == nil {
		t.Fatal("started with an invalid policy")
	}
}

func TestHolderReloadOnWrite(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": policyA})
	path := filepath.Join(dir, "p.yaml")
	var events []ReloadEvent
	var mu sync.Mutex
	h, logs := newTestHolder(t, path, &events, &mu)
	if err := h.Watch(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	revA := h.Current().Revision()

	// In-place write.
	if err := os.WriteFile(path, []byte(policyB), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revision B", time.Second, func() bool { return h.Current().Revision() != revA })
	if h.Current().Rules[0].Name != "b" {
		t.Fatal("wrong policy installed")
	}
	revB := h.Current().Revision()

	// Invalid policy: old kept, failure counted and logged with its diagnostic.
	failuresBefore := h.ReloadFailures()
	if err := os.WriteFile(path, []byte(policyInvalid), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reload failure", time.Second, func() bool { return h.ReloadFailures() > failuresBefore })
	time.Sleep(50 * time.Millisecond)
	if h.Current().Revision() != revB {
		t.Fatal("invalid policy replaced the valid one")
	}
	if l := logs.String(); !strings.Contains(l, "keeping the previous policy") || !strings.Contains(l, `rule b.action \"maybe\" is not one of allow, deny, verify`) {
		t.Fatalf("logs lack the diagnostic:\n%s", l)
	}
	mu.Lock()
	var sawFail bool
	for _, ev := range events {
		if ev.Err != nil && len(ev.Diagnostics) == 1 && ev.OldRevision == revB && ev.NewRevision == revB && !ev.Changed {
			sawFail = true
		}
	}
	mu.Unlock()
	if !sawFail {
		t.Fatalf("OnReload did not report the failure: %+v", events)
	}

	// Editor-style rename-replace back to A.
	writeAtomic(t, path, policyA)
	waitFor(t, "revision A after rename", time.Second, func() bool { return h.Current().Revision() == revA })
	if h.Reloads() < 2 {
		t.Fatalf("reloads = %d", h.Reloads())
	}
}

func TestHolderReloadManual(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": policyA})
	path := filepath.Join(dir, "p.yaml")
	var events []ReloadEvent
	var mu sync.Mutex
	h, _ := newTestHolder(t, path, &events, &mu) // not watching: only explicit reloads (SIGHUP)
	revA := h.Current().Revision()
	if err := h.Reload(); err != nil || h.Current().Revision() != revA || h.Reloads() != 1 {
		t.Fatalf("unchanged reload: %v %d", err, h.Reloads())
	}
	os.WriteFile(path, []byte(policyB), 0o644)
	if h.Current().Revision() != revA {
		t.Fatal("changed without reload")
	}
	if err := h.ReloadFrom("signal"); err != nil {
		t.Fatal(err)
	}
	if h.Current().Revision() == revA || h.Reloads() != 2 {
		t.Fatal("SIGHUP reload did not install the new policy")
	}
	os.WriteFile(path, []byte(policyInvalid), 0o644)
	err := h.Reload()
	if err == nil || h.ReloadFailures() != 1 || h.Current().Rules[0].Name != "b" {
		t.Fatalf("invalid reload: err=%v failures=%d", err, h.ReloadFailures())
	}
	os.Remove(path)
	if err := h.Reload(); err == nil || h.ReloadFailures() != 2 || h.Current().Rules[0].Name != "b" {
		t.Fatal("missing file must keep the old policy")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 4 || events[1].Trigger != "signal" || !events[1].Changed || events[0].Changed {
		t.Fatalf("events = %+v", events)
	}
}

func TestHolderReloadOnKeyRotation(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"keys/cosign.pub": "@key",
		"p.yaml": `trust:
  keys: [{name: release, path: ./keys/cosign.pub}]
rules:
  - {name: a, match: ["**"], require: {signatures: [release]}}
`})
	h, _ := newTestHolder(t, filepath.Join(dir, "p.yaml"), nil, nil)
	if err := h.Watch(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rev := h.Current().Revision()
	os.WriteFile(filepath.Join(dir, "keys/cosign.pub"), genKeyPEM(t), 0o644)
	waitFor(t, "revision after key rotation", time.Second, func() bool { return h.Current().Revision() != rev })
	// A broken key keeps the policy with the good key.
	rev = h.Current().Revision()
	os.WriteFile(filepath.Join(dir, "keys/cosign.pub"), []byte("garbage"), 0o644)
	waitFor(t, "failure on broken key", time.Second, func() bool { return h.ReloadFailures() > 0 })
	if h.Current().Revision() != rev {
		t.Fatal("broken key replaced the policy")
	}
}

// TestHolderConfigMapSwap reproduces the Kubernetes atomic writer: the file
// is a symlink through "..data", which is swapped by renaming a new symlink
// over it; the old timestamped directory is then removed.
func TestHolderConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(ts, content string) {
		os.MkdirAll(filepath.Join(dir, ts), 0o755)
		os.WriteFile(filepath.Join(dir, ts, "policy.yaml"), []byte(content), 0o644)
	}
	mk("..2026_01_01_00_00_00.1", policyA)
	if err := os.Symlink("..2026_01_01_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/policy.yaml", filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	h, _ := newTestHolder(t, filepath.Join(dir, "policy.yaml"), nil, nil)
	if err := h.Watch(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	revA := h.Current().Revision()

	mk("..2026_01_01_00_01_00.2", policyB)
	if err := os.Symlink("..2026_01_01_00_01_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_00.1"))
	waitFor(t, "revision after ConfigMap swap", time.Second, func() bool { return h.Current().Revision() != revA })
	if h.Current().Rules[0].Name != "b" {
		t.Fatal("wrong policy after swap")
	}
	if h.ReloadFailures() != 0 {
		t.Fatalf("swap caused %d failed reloads", h.ReloadFailures())
	}
}

func TestHolderCloseStopsWatching(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": policyA})
	path := filepath.Join(dir, "p.yaml")
	h, _ := newTestHolder(t, path, nil, nil)
	if err := h.Watch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Watch(context.Background()); err == nil {
		t.Fatal("second Watch accepted")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	rev := h.Current().Revision()
	os.WriteFile(path, []byte(policyB), 0o644)
	time.Sleep(150 * time.Millisecond)
	if h.Current().Revision() != rev || h.Reloads() != 0 {
		t.Fatal("reloaded after Close")
	}
}

// TestHolderConcurrentReaders evaluates from several goroutines while the
// policy is swapped: every decision must come from one whole policy (its
// rule and revision belong together).
func TestHolderConcurrentReaders(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": policyA})
	path := filepath.Join(dir, "p.yaml")
	h, _ := newTestHolder(t, path, nil, nil)
	revA := h.Current().Revision()
	os.WriteFile(path, []byte(policyB), 0o644)
	pB, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	revB := pB.Revision()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := h.Current().Evaluate(Input{Repository: "up/x", Digest: dgst})
				ok := (d.Revision == revA && d.Rule == "a" && d.Allowed) || (d.Revision == revB && d.Rule == "b" && !d.Allowed)
				if !ok {
					select {
					case errs <- d.Revision + " " + d.Rule:
					default:
					}
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		content := policyA
		if i%2 == 0 {
			content = policyB
		}
		os.WriteFile(path, []byte(content), 0o644)
		if err := h.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatalf("inconsistent decision: %s", e)
	default:
	}
	if h.Current().Revision() != revA {
		t.Fatal("last reload not in force")
	}
}
