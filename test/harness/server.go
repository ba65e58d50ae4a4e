package harness

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// startProcess starts cmd in its own process group (killed if the test
// process dies) and returns a channel closed when it exits and a stop
// function: SIGTERM to the group, SIGKILL after 5 seconds.
func startProcess(t testing.TB, cmd *exec.Cmd) (<-chan struct{}, func()) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return done, func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// startLoopbackServer runs bin with args(port) for a free loopback port,
// waits (within the test's deadline) until http://127.0.0.1:<port><ready>
// answers 200 and returns http://127.0.0.1:<port>; a start that lost its
// port to another process is retried on another. It stops with the test.
func startLoopbackServer(t testing.TB, bin, ready string, args func(port int) []string) string {
	t.Helper()
	url, _ := startLoopbackCommand(t, bin, ready, func(port int) *exec.Cmd {
		cmd := exec.Command(bin, args(port)...)
		cmd.Dir = t.TempDir()
		return cmd
	})
	return url
}

// startLoopbackCommand is startLoopbackServer for a command made by
// cmdFor(port) (its own environment, files written per port); it also
// returns the function that stops the process (also called when the test
// ends).
func startLoopbackCommand(t testing.TB, name, ready string, cmdFor func(port int) *exec.Cmd) (string, func()) {
	t.Helper()
	ctx := StartContext(t)
	for attempt := 1; ; attempt++ {
		url, stop, out, err := runLoopbackCommand(ctx, t, ready, cmdFor)
		if err == nil {
			return url, stop
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			t.Fatalf("%s did not start: %v\n%s", name, err, out)
		}
	}
}

func runLoopbackCommand(ctx context.Context, t testing.TB, ready string, cmdFor func(port int) *exec.Cmd) (string, func(), string, error) {
	port := FreePort(t)
	out := &lockedBuffer{}
	cmd := cmdFor(port)
	cmd.Stdout, cmd.Stderr = out, out
	done, stop := startProcess(t, cmd)
	t.Cleanup(stop)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	err := waitHTTP(ctx, url+ready, done)
	if errors.Is(err, errExited) && portTaken(out.String()) {
		err = errPortTaken
	}
	if err != nil {
		stop()
		return "", nil, out.String(), err
	}
	return url, stop, "", nil
}
