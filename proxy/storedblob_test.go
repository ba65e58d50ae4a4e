package proxy_test

// Stored blobs changed at rest are never served: a copy this process did not
// verify is hashed before or while it is sent; a corrupt one is removed and
// fetched again.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
)

// counter sums a counter family's series whose labels include want.
func counter(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func verifications(t *testing.T, reg *prometheus.Registry, result string) float64 {
	return counter(t, reg, "pullgate_store_blob_verifications_total", map[string]string{"result": result})
}

// fetchBlob GETs a URL and returns the status, what was read and the read error.
func fetchBlob(t *testing.T, url string, hdr map[string]string) (int, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func storedPath(e *env, h v1.Hash) string {
	return filepath.Join(e.dir, "data", "blobs", "sha256", h.Hex[:2], h.Hex, "data")
}

// corrupt overwrites a stored blob in place with same-length junk. With
// keepMtime the file's metadata (size, inode, modification time) is as
// before: only a process without a record of the copy can notice.
func corrupt(t *testing.T, p string, keepMtime bool) []byte {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !keepMtime {
		// File timestamps have a clock tick of granularity: make sure
		// the rewrite is seen as one.
		time.Sleep(50 * time.Millisecond)
	}
	bad := bytes.Repeat([]byte{'X'}, int(fi.Size()))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bad); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if keepMtime {
		if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	return bad
}

// noCleanJunk fails the test if a response delivered the junk as a clean,
// complete 200.
func noCleanJunk(t *testing.T, what string, status int, got []byte, rerr error, bad []byte) {
	t.Helper()
	if status == http.StatusOK && rerr == nil && bytes.Equal(got, bad) {
		t.Fatalf("%s: corrupt stored content was served as a complete 200 (%d bytes)", what, len(got))
	}
	if len(bad) > 64<<10 && len(got) > len(bad)-64<<10 && bytes.Equal(got, bad[:len(got)]) {
		t.Fatalf("%s: %d of %d junk bytes sent: the tail was not held back", what, len(got), len(bad))
	}
}

// Regression (security review): a stored blob overwritten with same-length
// junk after a pull was served with a 200 and the original digest.
func TestCorruptStoredBlobNotServedAndRefetched(t *testing.T) {
	for _, size := range []int{8192, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			e := start(t, nil)
			reg := e.open(t)
			img, ld := oneLayerImage(t, size)
			push(t, e.up.Host, "app/rest:1", img)
			base := e.proxy.URL + "/v2/upstream.local/app/rest"
			if resp, _ := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
				t.Fatal("manifest")
			}
			st, orig, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
			if st != 200 || err != nil || len(orig) != size {
				t.Fatalf("cold pull: %d, %d bytes, %v", st, len(orig), err)
			}
			bad := corrupt(t, storedPath(e, ld), false)
			e.up.ResetCounts()

			st, got, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
			noCleanJunk(t, "GET after corruption", st, got, err, bad)
			if size > 64<<10 {
				// Large: streamed while hashing, so the response
				// started and must be aborted.
				if err == nil {
					t.Fatalf("GET of a corrupt copy ended cleanly: %d, %d bytes", st, len(got))
				}
			} else if st != 200 || err != nil || !bytes.Equal(got, orig) {
				// Small: hashed before anything is sent, then
				// served as a miss.
				t.Fatalf("GET of a corrupt small copy: %d, %d bytes, %v; want the refetched blob", st, len(got), err)
			}
			if n := verifications(t, reg, "corrupt"); n != 1 {
				t.Fatalf("corrupt verifications = %v, want 1", n)
			}
			st, got, err = fetchBlob(t, base+"/blobs/"+ld.String(), nil)
			if st != 200 || err != nil || !bytes.Equal(got, orig) {
				t.Fatalf("next GET: %d, %d bytes, %v; want the original blob", st, len(got), err)
			}
			if n := e.up.Count("GET", "/blobs/"+ld.String()); n != 1 {
				t.Fatalf("upstream blob GETs after the corruption = %d, want 1 (refetch)", n)
			}
			if b, _ := os.ReadFile(storedPath(e, ld)); !bytes.Equal(b, orig) {
				t.Fatal("the store does not hold the refetched blob")
			}
		})
	}
}

// After a restart nothing is recorded as verified: the first serve of each
// stored blob hashes it, so a copy corrupted without any trace in its
// metadata is caught; an intact copy is hashed once, then sent as is.
func TestRestartReverifiesStoredBlobs(t *testing.T) {
	e := start(t, nil)
	e.open(t)
	img, ld := oneLayerImage(t, 1<<20)
	push(t, e.up.Host, "app/rs:1", img)
	base := func() string { return e.proxy.URL + "/v2/upstream.local/app/rs" }
	if resp, _ := get(t, base()+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("manifest")
	}
	_, orig, err := fetchBlob(t, base()+"/blobs/"+ld.String(), nil)
	if err != nil || len(orig) != 1<<20 {
		t.Fatalf("cold pull: %d bytes, %v", len(orig), err)
	}

	// Intact copy: one re-hash after the restart, none after that.
	reg := e.open(t)
	for i := 0; i < 2; i++ {
		st, got, err := fetchBlob(t, base()+"/blobs/"+ld.String(), nil)
		if st != 200 || err != nil || !bytes.Equal(got, orig) {
			t.Fatalf("warm pull %d after restart: %d, %v", i, st, err)
		}
		if n := verifications(t, reg, "ok"); n != 1 {
			t.Fatalf("after warm pull %d: verified = %v, want 1", i, n)
		}
	}

	// Bit rot: the bytes change, the metadata does not.
	bad := corrupt(t, storedPath(e, ld), true)
	reg = e.open(t)
	e.up.ResetCounts()
	st, got, err := fetchBlob(t, base()+"/blobs/"+ld.String(), nil)
	noCleanJunk(t, "first GET after restart", st, got, err, bad)
	if err == nil {
		t.Fatalf("GET of a corrupt copy after restart ended cleanly: %d, %d bytes", st, len(got))
	}
	if n := verifications(t, reg, "corrupt"); n != 1 {
		t.Fatalf("corrupt verifications = %v, want 1", n)
	}
	st, got, err = fetchBlob(t, base()+"/blobs/"+ld.String(), nil)
	if st != 200 || err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("next GET: %d, %v; want the refetched blob", st, err)
	}
	if n := e.up.Count("GET", "/blobs/"+ld.String()); n != 1 {
		t.Fatalf("upstream blob GETs = %d, want 1", n)
	}
}

// Range and HEAD on a corrupt copy the process has no record of: the whole
// copy is hashed before anything is sent; the corrupt copy is removed and
// the request served as a miss.
func TestRangeAndHeadOnCorruptUnrecordedBlob(t *testing.T) {
	e := start(t, nil)
	e.open(t)
	img, ld := oneLayerImage(t, 1<<20)
	push(t, e.up.Host, "app/rg:1", img)
	base := func() string { return e.proxy.URL + "/v2/upstream.local/app/rg" }
	if resp, _ := get(t, base()+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("manifest")
	}
	_, orig, err := fetchBlob(t, base()+"/blobs/"+ld.String(), nil)
	if err != nil || len(orig) != 1<<20 {
		t.Fatalf("cold pull: %d bytes, %v", len(orig), err)
	}

	corrupt(t, storedPath(e, ld), true)
	reg := e.open(t)
	st, got, err := fetchBlob(t, base()+"/blobs/"+ld.String(), map[string]string{"Range": "bytes=100-199"})
	if st == http.StatusOK || st == http.StatusPartialContent {
		want := orig[100:200]
		if st == http.StatusOK {
			want = orig
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Range on a corrupt copy: %d, %d bytes (%q...), %v; want the original bytes", st, len(got), got[:min(len(got), 8)], err)
		}
	}
	if bytes.Contains(got, []byte("XXXXXXXX")) {
		t.Fatalf("Range on a corrupt copy sent junk: %d %q", st, got)
	}
	if n := verifications(t, reg, "corrupt"); n != 1 {
		t.Fatalf("corrupt verifications = %v, want 1", n)
	}
	// Whatever the range got, a full GET now serves the original.
	st, got, err = fetchBlob(t, base()+"/blobs/"+ld.String(), nil)
	if st != 200 || err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("GET after the range: %d, %v", st, err)
	}

	corrupt(t, storedPath(e, ld), true)
	reg = e.open(t)
	req, _ := http.NewRequest(http.MethodHead, base()+"/blobs/"+ld.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := verifications(t, reg, "corrupt"); n != 1 {
		t.Fatalf("HEAD: corrupt verifications = %v, want 1", n)
	}
	if _, ok := e.srv.Store().Has(digestOf(ld)); ok {
		t.Fatal("HEAD left the corrupt copy in the store")
	}
	if resp.StatusCode == 200 && resp.ContentLength != 1<<20 {
		t.Fatalf("HEAD: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
}

// A cold pull records the copy it committed: warm pulls in the same process
// send it without hashing it again.
func TestWarmPullAfterColdPullDoesNotRehash(t *testing.T) {
	e := start(t, nil)
	reg := e.open(t)
	img, ld := oneLayerImage(t, 1<<20)
	push(t, e.up.Host, "app/warm:1", img)
	base := e.proxy.URL + "/v2/upstream.local/app/warm"
	if resp, _ := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("manifest")
	}
	_, orig, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
	if err != nil || len(orig) != 1<<20 {
		t.Fatalf("cold pull: %d bytes, %v", len(orig), err)
	}
	hits := counter(t, reg, "pullgate_cache_requests_total", map[string]string{"kind": "blob", "result": "hit"})
	for i := 0; i < 3; i++ {
		st, got, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
		if st != 200 || err != nil || !bytes.Equal(got, orig) {
			t.Fatalf("warm pull %d: %d, %v", i, st, err)
		}
	}
	st, got, err := fetchBlob(t, base+"/blobs/"+ld.String(), map[string]string{"Range": "bytes=10-19"})
	if st != http.StatusPartialContent || err != nil || !bytes.Equal(got, orig[10:20]) {
		t.Fatalf("warm range: %d, %v", st, err)
	}
	if n := counter(t, reg, "pullgate_cache_requests_total", map[string]string{"kind": "blob", "result": "hit"}) - hits; n != 4 {
		t.Fatalf("store hits = %v, want 4", n)
	}
	if n := counter(t, reg, "pullgate_store_blob_verifications_total", nil); n != 0 {
		t.Fatalf("warm pulls re-hashed the stored blob %v times", n)
	}
}

// The same on a storage driver other than the local filesystem (replicas
// sharing an object store): the record names the object's size and
// modification time; a rewritten object is hashed while it is served.
func TestCorruptBlobInDriverStore(t *testing.T) {
	e := start(t, nil)
	pol := filepath.Join(e.dir, "policy.yaml")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
storage: {driver: inmemory, spoolDir: %s}
upstreams:
  - name: upstream.local
    url: %s
policy: %s
`, filepath.Join(e.dir, "spool"), e.up.URL, pol)))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := proxy.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), proxy.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ps.Close(); srv.Close() })

	img, ld := oneLayerImage(t, 1<<20)
	push(t, e.up.Host, "app/s3:1", img)
	base := ps.URL + "/v2/upstream.local/app/s3"
	if resp, _ := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("manifest")
	}
	_, orig, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
	if err != nil || len(orig) != 1<<20 {
		t.Fatalf("cold pull: %d bytes, %v", len(orig), err)
	}
	if st, got, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil); st != 200 || err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("warm pull: %d, %v", st, err)
	}
	if n := counter(t, reg, "pullgate_store_blob_verifications_total", nil); n != 0 {
		t.Fatalf("warm pull re-hashed the stored blob %v times", n)
	}

	time.Sleep(5 * time.Millisecond)
	bad := bytes.Repeat([]byte{'X'}, len(orig))
	p := "/blobs/sha256/" + ld.Hex[:2] + "/" + ld.Hex + "/data"
	if err := srv.Store().Driver().PutContent(context.Background(), p, bad); err != nil {
		t.Fatal(err)
	}
	st, got, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
	noCleanJunk(t, "GET after corruption", st, got, err, bad)
	if err == nil {
		t.Fatalf("GET of a corrupt object ended cleanly: %d, %d bytes", st, len(got))
	}
	if n := verifications(t, reg, "corrupt"); n != 1 {
		t.Fatalf("corrupt verifications = %v, want 1", n)
	}
	if st, got, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil); st != 200 || err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("next GET: %d, %v; want the refetched blob", st, err)
	}
}
