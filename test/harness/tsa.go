package harness

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
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
func StartTSA(t testing.TB) string {
	t.Helper()
	bin := tools.Need(t, "timestamp-server")
	ctx := StartContext(t)
	for attempt := 1; ; attempt++ {
		url, out, err := runTSA(ctx, t, bin)
		if err == nil {
			return url
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			t.Fatalf("timestamp-server did not start: %v\n%s", err, out)
		}
	}
}

func runTSA(ctx context.Context, t testing.TB, bin string) (string, string, error) {
	port := FreePort(t)
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "serve", "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--timestamp-signer", "memory", "--disable-ntp-monitoring", "--log-type", "prod")
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
	err := waitHTTP(ctx, url+"/ping", done)
	if errors.Is(err, errExited) && portTaken(out.String()) {
		err = errPortTaken
	}
	if err != nil {
		stop()
		return "", out.String(), err
	}
	return url, "", nil
}
