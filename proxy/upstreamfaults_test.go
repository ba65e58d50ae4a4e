package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/harness"
)

// upstreamFault is how a faulty upstream fails a request it was armed for.
type upstreamFault int32

const (
	faultNone upstreamFault = iota
	// faultReset sends the headers and half the body, then resets the
	// connection (RST).
	faultReset
	// fault5xx answers 503 with an OCI error body.
	fault5xx
	// faultStall sends the headers and half the body (a blob), or nothing
	// (a manifest), and then nothing more.
	faultStall
)

func (f upstreamFault) String() string {
	return [...]string{"none", "reset", "5xx", "stall"}[f]
}

// faultyUpstream wraps an upstream registry: GETs whose path contains the
// armed target are held until fire is closed (so that every client is
// waiting on the same fetch first), then failed the armed way. While held,
// a body already started trickles one byte every 50ms (never the last),
// so that the proxy's stall timeout only runs once the fault fires.
type faultyUpstream struct {
	mu     sync.Mutex
	target string
	fault  upstreamFault
	fire   chan struct{}
	hits   atomic.Int32
	closed chan struct{}
}

func newFaultyUpstream(t *testing.T) *faultyUpstream {
	f := &faultyUpstream{closed: make(chan struct{})}
	t.Cleanup(func() { close(f.closed) })
	return f
}

// arm makes GETs of paths containing target fail with fault once the
// returned channel is closed.
func (f *faultyUpstream) arm(target string, fault upstreamFault) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target, f.fault, f.fire = target, fault, make(chan struct{})
	f.hits.Store(0)
	return f.fire
}

func (f *faultyUpstream) disarm() {
	f.mu.Lock()
	f.target, f.fault = "", faultNone
	f.mu.Unlock()
}

func (f *faultyUpstream) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		target, fault, fire := f.target, f.fault, f.fire
		f.mu.Unlock()
		if fault == faultNone || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, target) {
			next.ServeHTTP(w, r)
			return
		}
		f.hits.Add(1)
		wait := func() bool {
			select {
			case <-fire:
				return true
			case <-r.Context().Done():
			case <-f.closed:
			}
			return false
		}
		if fault == fault5xx || fault == faultStall && strings.Contains(target, "/manifests/") {
			if !wait() {
				return
			}
			if fault == fault5xx {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}`)
				return
			}
			select { // stall: no headers at all
			case <-r.Context().Done():
			case <-f.closed:
			}
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		b := rec.Body.Bytes()
		sent := len(b) / 2
		_, _ = w.Write(b[:sent])
		w.(http.Flusher).Flush()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
	held:
		for {
			select {
			case <-fire:
				break held
			case <-tick.C:
				if sent < len(b)-1 {
					_, _ = w.Write(b[sent : sent+1])
					w.(http.Flusher).Flush()
					sent++
				}
			case <-r.Context().Done():
				return
			case <-f.closed:
				return
			}
		}
		switch fault {
		case faultReset:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close with RST
			}
			_ = conn.Close()
		case faultStall:
			select {
			case <-r.Context().Done():
			case <-f.closed:
			}
		}
	})
}

// waitUntil polls cond until it holds or the test's deadline (at most
// limit) passes.
func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	if d, ok := t.Deadline(); ok && d.Before(deadline) {
		deadline = d.Add(-5 * time.Second)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spoolFiles lists what the proxy's spool holds.
func spoolFiles(e *env) []string {
	names, _ := filepath.Glob(filepath.Join(e.dir, "data", "_spool", "*"))
	return names
}

// An upstream that resets the connection in the middle of a blob, answers
// 503, or stops sending: every client waiting on the one coalesced fetch
// gets an error (an OCI error, or a 200 whose body is cut off so that the
// client sees a failed transfer, never a complete-looking short body),
// nothing is cached or left in the spool, and the next request fetches
// the blob again and succeeds.
func TestUpstreamFaultDuringColdBlob(t *testing.T) {
	for _, fault := range []upstreamFault{faultReset, fault5xx, faultStall} {
		t.Run(fault.String(), func(t *testing.T) {
			fu := newFaultyUpstream(t)
			e := startWith(t, fu.wrap, testPolicy, "timeout: 1s")
			const size = 2 << 20
			img, ld := oneLayerImage(t, size)
			push(t, e.up.Host, "app/fault:1", img)
			base := e.proxy.URL + "/v2/upstream.local/app/fault"
			if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
				t.Fatalf("manifest: %d %s", resp.StatusCode, b)
			}
			fire := fu.arm("/blobs/"+ld.String(), fault)
			coalesced := counter(t, e.reg, "pullgate_coalesced_fetches_total", nil)

			const clients = 6
			type result struct {
				status int
				length int64 // Content-Length announced
				body   []byte
				err    error
			}
			results := make(chan result, clients)
			for range clients {
				go func() {
					resp, err := http.Get(base + "/blobs/" + ld.String())
					if err != nil {
						results <- result{err: err}
						return
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					results <- result{resp.StatusCode, resp.ContentLength, b, err}
				}()
			}
			// Every client is on the one fetch before the upstream fails it.
			waitUntil(t, "clients to join the fetch", time.Minute, func() bool {
				return counter(t, e.reg, "pullgate_coalesced_fetches_total", nil)-coalesced >= clients-1
			})
			if n := fu.hits.Load(); n != 1 {
				t.Fatalf("upstream blob GETs before the fault: %d, want 1", n)
			}
			close(fire)
			for range clients {
				r := <-results
				switch {
				case r.status == http.StatusOK && r.err == nil:
					t.Errorf("a client got a complete 200 response (%d of %d bytes, Content-Length %d) from a failed fetch", len(r.body), size, r.length)
				case r.status == http.StatusOK:
					// Aborted: the client saw the transfer fail.
					if len(r.body) >= size {
						t.Errorf("aborted client holds all %d bytes", len(r.body))
					}
					if r.length != size {
						t.Errorf("200 with Content-Length %d, want %d: a client could not tell a cut body", r.length, size)
					}
				case r.status == 0:
					t.Errorf("request failed: %v", r.err)
				default:
					if r.status < 500 {
						t.Errorf("status %d for an upstream fault, want 5xx", r.status)
					}
					if _, err := harness.ParseOCIError(r.body); err != nil {
						t.Errorf("status %d without an OCI error: %v: %s", r.status, err, r.body)
					}
				}
			}
			// Nothing cached, nothing left over.
			if _, ok := e.srv.Store().Has(digestOf(ld)); ok {
				t.Fatal("the blob of a failed fetch is in the store")
			}
			if _, err := os.Stat(storedPath(e, ld)); err == nil {
				t.Fatal("the blob of a failed fetch is on disk")
			}
			waitUntil(t, "the spool to empty", time.Minute, func() bool { return len(spoolFiles(e)) == 0 })

			fu.disarm()
			before := e.up.Count(http.MethodGet, "/blobs/"+ld.String())
			st, body, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
			if err != nil || st != 200 || digest.FromBytes(body).String() != ld.String() {
				t.Fatalf("after the fault: %d err=%v, %d bytes", st, err, len(body))
			}
			if after := e.up.Count(http.MethodGet, "/blobs/"+ld.String()); after != before+1 {
				t.Fatalf("upstream blob GETs after the fault: %d -> %d, want one refetch", before, after)
			}
		})
	}
}

// The same faults on a manifest: the client gets an OCI error, nothing is
// stored, and the next request (upstream healthy) is served the manifest.
func TestUpstreamFaultDuringManifest(t *testing.T) {
	for _, fault := range []upstreamFault{faultReset, fault5xx, faultStall} {
		t.Run(fault.String(), func(t *testing.T) {
			fu := newFaultyUpstream(t)
			e := startWith(t, fu.wrap, testPolicy, "timeout: 1s")
			img, _ := oneLayerImage(t, 4096)
			md := push(t, e.up.Host, "app/mf:1", img)
			raw, _ := img.RawManifest()
			close(fu.arm("/app/mf/manifests/", fault))
			for _, ref := range []string{"1", md.String()} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.proxy.URL+"/v2/upstream.local/app/mf/manifests/"+ref, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				cancel()
				if resp.StatusCode == 200 {
					t.Fatalf("manifest %s from a failing upstream: 200 (%d bytes, err %v)", ref, len(b), rerr)
				}
				if resp.StatusCode < 500 {
					t.Errorf("manifest %s: status %d, want 5xx", ref, resp.StatusCode)
				}
				if _, err := harness.ParseOCIError(b); err != nil {
					t.Errorf("manifest %s: %d without an OCI error: %v", ref, resp.StatusCode, err)
				}
			}
			if fu.hits.Load() == 0 {
				t.Fatal("the fault was never hit")
			}
			if _, ok := e.srv.Store().Has(digest.Digest(md.String())); ok {
				t.Fatal("a manifest whose fetch failed is in the store")
			}
			fu.disarm()
			resp, b := get(t, e.proxy.URL+"/v2/upstream.local/app/mf/manifests/1")
			if resp.StatusCode != 200 || string(b) != string(raw) {
				t.Fatalf("after the fault: %d, %d bytes", resp.StatusCode, len(b))
			}
		})
	}
}
