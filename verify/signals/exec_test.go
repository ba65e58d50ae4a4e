package signals

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script.
func script(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "provider.sh")
	if err := os.WriteFile(f, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

func execService(t *testing.T, path string, timeout time.Duration, args ...string) *Service {
	return newService(t, Options{}, Provider{Name: "scanner", Exec: path, Args: args, Timeout: timeout, CacheTTL: time.Hour})
}

func TestExecAnswers(t *testing.T) {
	// The script checks what it was given: the request on stdin, its
	// arguments, and an environment with nothing inherited.
	t.Setenv("SECRET_FROM_PULLGATE", "leak")
	path := script(t, `req=$(cat)
case "$req" in *'"digest":"`+digestA+`"'*) ;; *) echo "no digest in $req" >&2; exit 9;; esac
printf '{"apiVersion":"%s","provider":{"name":"scanner","version":"0.1"},"subject":{"digest":"%s"},"status":"done","verdict":"clean","facts":{"arg":"%s","secret":"%s","home":"%s","path":"%s"}}' \
  "$PULLGATE_SIGNALS_API" "`+digestA+`" "$1" "$SECRET_FROM_PULLGATE" "$HOME" "$PATH"`)
	r := execService(t, path, 5*time.Second, "--db=/var/db").Ask(context.Background(), "scanner", request(digestA))
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	f := r.Answer.Facts
	if r.Answer.Verdict != "clean" || f["arg"] != "--db=/var/db" || f["secret"] != "" || f["home"] != "" || f["path"] != "/usr/bin:/bin" {
		t.Fatalf("%+v", r.Answer)
	}
}

func TestExecFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("garbage", func(t *testing.T) {
		wantKind(t, execService(t, script(t, `echo 'scan complete: 0 issues'`), 5*time.Second).Ask(ctx, "scanner", request(digestA)),
			KindMalformed, "not a JSON object")
	})
	t.Run("exit 3", func(t *testing.T) {
		r := execService(t, script(t, `echo "vulnerability database missing" >&2; exit 3`), 5*time.Second).Ask(ctx, "scanner", request(digestA))
		wantKind(t, r, KindExec, "exit status 3: vulnerability database missing")
	})
	t.Run("endless output", func(t *testing.T) {
		start := time.Now()
		r := execService(t, script(t, `exec yes '{}'`), time.Minute).Ask(ctx, "scanner", request(digestA))
		wantKind(t, r, KindMalformed, "larger than")
		if time.Since(start) > 30*time.Second {
			t.Fatal("not stopped at the output cap")
		}
	})
	t.Run("not executable", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "missing")
		wantKind(t, execService(t, f, time.Second).Ask(ctx, "scanner", request(digestA)), KindExec, "")
	})
}

// killLeft kills the process of the pid in file at the end of the test,
// should the code under test have left it running.
func killLeft(t *testing.T, file string) {
	t.Cleanup(func() {
		if b, err := os.ReadFile(file); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// alive reports whether the process of the pid in file is still running.
func alive(t *testing.T, file string) func() bool {
	return func() bool {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("the script wrote no pid: %v", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
}

func TestExecHangsKilled(t *testing.T) {
	// The program and a child holding its stdout both hang: both are
	// killed at the timeout and the ask returns.
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	killLeft(t, pidFile)
	path := script(t, `sleep 1000 &
echo $! > `+pidFile+`
wait`)
	const timeout = 500 * time.Millisecond
	start := time.Now()
	r := execService(t, path, timeout).Ask(context.Background(), "scanner", request(digestA))
	wantKind(t, r, KindTimeout, "within the timeout")
	if el := time.Since(start); el > 10*timeout {
		t.Fatalf("returned after %v with a timeout of %v", el, timeout)
	}
	waitFor(t, "the child to be killed", func() bool { return !alive(t, pidFile)() })
}

func TestExecChildKeepsOutputOpen(t *testing.T) {
	// The program answers and exits, but leaves a child holding stdout
	// open: the ask does not wait for the child, which is killed.
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	killLeft(t, pidFile)
	path := script(t, `sleep 1000 &
echo $! > `+pidFile+`
printf '%s' '`+answerJSON(digestA, StatusDone, "1", "")+`'
exit 0`)
	start := time.Now()
	r := execService(t, path, time.Minute).Ask(context.Background(), "scanner", request(digestA))
	wantKind(t, r, KindExec, "kept its output open")
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("waited %v for the child", el)
	}
	waitFor(t, "the child to be killed", func() bool { return !alive(t, pidFile)() })
}
