package harness

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/tools"
)

// StartTSA runs Sigstore's real RFC 3161 timestamp authority
// (timestamp-server from github.com/sigstore/timestamp-authority, installed
// by test/tools/install.sh) with its in-memory signer on a free loopback
// port, waits until it answers /ping and returns its URL (the certificate
// chain is at <url>/api/v1/timestamp/certchain). It stops with the test.
//
// timestamp-server v2.1.3 always serves its metrics on :2112 (its
// pkg/server/prometheus.go; no flag) and exits when that port is taken, so
// one runs at a time on a machine: StartTSA holds a lock file in the temp
// directory, across test processes, until its server stopped.
func StartTSA(t testing.TB) string {
	t.Helper()
	bin := tools.Need(t, "timestamp-server")
	lockTSA(StartContext(t), t)
	return startLoopbackServer(t, bin, "/ping", func(port int) []string {
		return []string{"serve", "--host", "127.0.0.1", "--port", strconv.Itoa(port),
			"--timestamp-signer", "memory", "--disable-ntp-monitoring", "--log-type", "prod"}
	})
}

// lockTSA takes the machine-wide timestamp-server lock (waiting for it
// within the test's deadline) and releases it when the test ends, after
// the server it guards stopped (cleanups run last-registered first).
func lockTSA(ctx context.Context, t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "pullgate-timestamp-server.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	pause := 20 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			t.Fatalf("locking %s: %v", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			t.Fatalf("another test's timestamp-server held %s until the test's deadline", f.Name())
		case <-time.After(pause):
		}
		pause = min(pause*2, 500*time.Millisecond)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}
