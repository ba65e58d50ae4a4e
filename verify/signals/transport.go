package signals

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// Exec transport bounds.
const (
	maxStderr = 4 << 10
	// execWaitDelay bounds the wait for the program's output to close
	// after it exited or was killed (a child it forked may hold it open).
	execWaitDelay = 250 * time.Millisecond
)

// attempt is one call's outcome: an answer, or an error and whether
// another attempt may help.
type attempt struct {
	answer *Answer
	err    *Error
	retry  bool
}

// ctxErr is the error of a call whose context ended.
func ctxErr(ctx context.Context, what string) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Kind: KindTimeout, Msg: what + ": no answer within the timeout"}
	}
	return &Error{Kind: KindTimeout, Msg: what + ": " + ctx.Err().Error()}
}

// askHTTP POSTs body to the provider once.
func askHTTP(ctx context.Context, c *http.Client, p *Provider, body []byte, want string) attempt {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return attempt{err: &Error{Kind: KindNetwork, Msg: err.Error()}}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "pullgate-signals")
	if p.TokenFile != "" {
		tok, err := readToken(p.TokenFile) // every call: the token rotates
		if err != nil {
			return attempt{err: &Error{Kind: KindNetwork, Msg: err.Error()}}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return attempt{err: ctxErr(ctx, "POST")}
		}
		return attempt{err: &Error{Kind: KindNetwork, Msg: err.Error()}, retry: true}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		snip, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
			msg += " (redirect to " + printable(loc) + " not followed)"
		}
		if s := printable(string(snip)); s != "" {
			msg += ": " + s
		}
		return attempt{
			err:   &Error{Kind: KindStatus, Msg: msg},
			retry: resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5,
		}
	}
	b, rerr := readCapped(resp.Body)
	if rerr != nil {
		if ctx.Err() != nil {
			return attempt{err: ctxErr(ctx, "reading the answer")}
		}
		return attempt{err: rerr, retry: rerr.Kind == KindNetwork}
	}
	a, perr := parseAnswer(b, want)
	return attempt{answer: a, err: perr}
}

// askExec runs the provider's program once: a minimal environment, the
// request on stdin, the answer on stdout (capped), stderr kept (capped)
// for the error. The program runs in its own process group, killed whole
// when ctx ends or the output passes the cap, and after it exits (no
// child of it outlives the ask).
func askExec(ctx context.Context, p *Provider, body []byte, want string) attempt {
	cmd := exec.CommandContext(ctx, p.Exec, p.Args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PULLGATE_SIGNALS_API=" + APIVersion}
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(body)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	killGroup := func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.Cancel = killGroup
	cmd.WaitDelay = execWaitDelay
	out := &capWriter{max: MaxAnswerSize, over: func() { _ = killGroup() }}
	errb := &capWriter{max: maxStderr}
	cmd.Stdout, cmd.Stderr = out, errb
	if err := cmd.Start(); err != nil {
		return attempt{err: &Error{Kind: KindExec, Msg: err.Error()}}
	}
	err := cmd.Wait()
	_ = killGroup() // children that outlived the program
	switch {
	case out.exceeded():
		return attempt{err: &Error{Kind: KindMalformed, Msg: fmt.Sprintf("answer larger than %d bytes", MaxAnswerSize)}}
	case ctx.Err() != nil:
		return attempt{err: ctxErr(ctx, "exec "+p.Exec)}
	case errors.Is(err, exec.ErrWaitDelay):
		return attempt{err: &Error{Kind: KindExec, Msg: "the program exited but a process it started kept its output open"}}
	case err != nil:
		msg := err.Error()
		if s := printable(errb.String()); s != "" {
			msg += ": " + s
		}
		return attempt{err: &Error{Kind: KindExec, Msg: msg}}
	}
	a, perr := parseAnswer(out.Bytes(), want)
	return attempt{answer: a, err: perr}
}

// capWriter keeps the first max bytes; past them it notes the excess,
// calls over once and drops the rest. (It has no ReadFrom: io.Copy must
// go through Write.)
type capWriter struct {
	buf  bytes.Buffer
	max  int
	n    int
	over func()
}

func (w *capWriter) Bytes() []byte  { return w.buf.Bytes() }
func (w *capWriter) String() string { return w.buf.String() }

func (w *capWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	if w.n > w.max && w.over != nil {
		w.over()
		w.over = nil
	}
	return len(p), nil
}

func (w *capWriter) exceeded() bool { return w.n > w.max }

// printable makes provider text safe for a log line or a reason: one
// line, no control characters, at most 512 bytes.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 512 {
		s = strings.ToValidUTF8(s[:512], "") + "…"
	}
	return s
}
