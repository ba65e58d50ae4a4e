package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Real servers (MinIO, distribution's registry, containerd) start slowly on
// a loaded machine. Tests wait for them with the test's own deadline, not
// a fixed timeout, and retry only start-up errors that a second attempt can
// cure (a port taken between choosing it and binding it, a server that
// answers before it finished initialising).

// noDeadline bounds a wait for a test run without -timeout (and benchmarks,
// which have no deadline).
const noDeadline = 10 * time.Minute

// deadlineMargin is kept from the test's deadline for reporting a failure
// and cleaning up before the test binary panics.
const deadlineMargin = 15 * time.Second

// StartContext is the context a test waits in for a server to come up: it
// ends shortly before the test's deadline (go test -timeout). It ends with
// the test.
func StartContext(t testing.TB) context.Context {
	t.Helper()
	end := time.Now().Add(noDeadline)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			end = dl.Add(-deadlineMargin)
			if until := time.Until(dl); until < 2*deadlineMargin {
				end = dl.Add(-until / 2)
			}
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	t.Cleanup(cancel)
	return ctx
}

// errExited is a server process that ended while it was awaited.
var errExited = errors.New("process exited")

// waitHTTP polls url until it answers 200, the process ends (exited is
// closed) or ctx ends. Polls back off from 20 ms to 500 ms.
func waitHTTP(ctx context.Context, url string, exited <-chan struct{}) error {
	var last error
	pause := 20 * time.Millisecond
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		select {
		case <-exited:
			return errExited
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s answered %s", url, resp.Status)
		} else if ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("not ready before the test's deadline: %w", last)
		case <-exited:
			return errExited
		case <-time.After(pause):
		}
		pause = min(pause*2, 500*time.Millisecond)
	}
}

// portTaken reports whether a server's output says that its port was in
// use: another process took the port between FreePort and the server's
// bind, and a start on another port will do.
func portTaken(output string) bool {
	return strings.Contains(output, "address already in use")
}

// startAttempts bounds the starts of one server on fresh ports.
const startAttempts = 3
