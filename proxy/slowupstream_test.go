package proxy_test

import (
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// pausingBlobs wraps an upstream so that, while pausing is set, a blob GET
// sends the first at(size) bytes of the blob in 4 KiB flushed writes and
// then nothing until resume is closed (or the request ends), then the rest.
func pausingBlobs(pausing *atomic.Bool, at func(size int) int, resume <-chan struct{}) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") || !pausing.Load() {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			b := rec.Body.Bytes()
			pause, paused := at(len(b)), false
			for i := 0; i < len(b); i += 4096 {
				if i >= pause && !paused {
					paused = true
					select {
					case <-resume:
					case <-r.Context().Done():
						return
					}
				}
				if _, err := w.Write(b[i:min(i+4096, len(b))]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		})
	}
}

// streamDuringPause pulls blob ld through the proxy while the upstream
// pauses after 300 KiB, and checks that the client receives the bytes that
// arrived before the pause (all but the held-back tail) while the upstream
// still pauses, then the whole verified blob once it resumes.
func streamDuringPause(t *testing.T, base string, ld digest.Digest, pausing *atomic.Bool, resume chan struct{}) {
	t.Helper()
	pausing.Store(true)
	const before = 200 << 10 // 300 KiB sent, less the 64 KiB hold-back, and then some margin
	head := make([]byte, before)
	var resp *http.Response
	got := make(chan error, 1)
	go func() {
		var err error
		if resp, err = http.Get(base + "/blobs/" + ld.String()); err == nil {
			_, err = io.ReadFull(resp.Body, head)
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("reading the first %d bytes: %v", before, err)
		}
	case <-time.After(20 * time.Second):
		close(resume)
		t.Fatalf("the client received none of the first %d bytes while the upstream paused: they were held back", before)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("cold pull: %d", resp.StatusCode)
	}
	close(resume)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || digest.FromBytes(append(head, rest...)) != ld {
		t.Fatalf("after the pause: err=%v, %d bytes", err, before+len(rest))
	}
}

// Bytes a slow upstream has sent reach clients as they arrive, not once a
// spool chunk fills: a client whose upstream pauses (well under its
// timeout) keeps receiving what was already received.
func TestClientsReceiveBytesWhileUpstreamPauses(t *testing.T) {
	var pausing atomic.Bool
	resume := make(chan struct{})
	e := start(t, pausingBlobs(&pausing, func(int) int { return 300 << 10 }, resume))
	img, ld := oneLayerImage(t, 1<<20+12345)
	push(t, e.up.Host, "app/slow:1", img)
	base := e.proxy.URL + "/v2/upstream.local/app/slow"
	if resp, _ := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	streamDuringPause(t, base, digestOf(ld), &pausing, resume)
}

// The same with content inspection: the safetensors header is accepted as
// soon as it arrived, and what follows it streams while the upstream pauses.
func TestInspectedLayerStreamsWhileUpstreamPauses(t *testing.T) {
	var pausing atomic.Bool
	resume := make(chan struct{})
	e := startWith(t, pausingBlobs(&pausing, func(int) int { return 300 << 10 }, resume), `rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack]
      formats: { safetensors: {}, pickle: deny }
`)
	const n = 1 << 20
	header := []byte(`{"w":{"dtype":"U8","shape":[1048576],"data_offsets":[0,1048576]}}`)
	blob := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	blob = append(blob, header...)
	blob = append(blob, make([]byte, n)...)
	for i := range n {
		blob[len(blob)-n+i] = byte(i * 7)
	}
	h, repo := e.up.Host, "models/slow"
	cfg := ivPushBlob(t, h, repo, []byte(`{"descriptor":{},"config":{},"modelfs":{"type":"layers","diffIds":[]}}`), "application/vnd.cncf.model.config.v1+json")
	w := ivPushBlob(t, h, repo, blob, "application/vnd.cncf.model.weight.v1.raw")
	ivImage(t, h, repo+":1", cfg, w)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	streamDuringPause(t, base, digestOf(w.Digest), &pausing, resume)
}
