//go:build linux

package proxy_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/admin"
	"github.com/pullgate/pullgate/test/harness"
)

// fullDisk fills and frees the disk under a proxy's storage: a small
// tmpfs holding a filler file where mounting works (root with
// CAP_SYS_ADMIN), otherwise (or with PULLGATE_TEST_NO_MOUNT=1) ENOSPC
// injected at the proxy's spool and commit (proxy.InjectDiskFault).
type fullDisk struct {
	dir    string // the tmpfs mount ("" when injected)
	leave  int64  // bytes left free by fill
	inject *proxy.DiskFault
}

// newFullDisk prepares mnt (the proxy's storage directory) as a 16 MiB
// tmpfs, or injects the fault. Call it before opening the proxy.
func newFullDisk(t *testing.T, mnt string, leave int64, spool, commit bool) *fullDisk {
	t.Helper()
	if err := mountSmallDisk(t, mnt); err != nil {
		t.Logf("mount -t tmpfs %s: %v: injecting ENOSPC instead", mnt, err)
		return &fullDisk{inject: proxy.InjectDiskFault(t, spool, commit)}
	}
	return &fullDisk{dir: mnt, leave: leave}
}

// smallDisk is the size of the filesystem under the storage in these tests.
const smallDisk = 16 << 20

// newSmallDisk puts mnt (the proxy's storage directory) on a 16 MiB tmpfs,
// or models one (proxy.InjectSmallDisk). Call it before opening the proxy.
func newSmallDisk(t *testing.T, mnt string) {
	t.Helper()
	if err := mountSmallDisk(t, mnt); err != nil {
		t.Logf("mount -t tmpfs %s: %v: modelling a 16 MiB filesystem instead", mnt, err)
		proxy.InjectSmallDisk(t, mnt, smallDisk)
	}
}

// mountSmallDisk mounts a 16 MiB tmpfs at mnt (created) until the test
// ends, unless PULLGATE_TEST_NO_MOUNT is set.
func mountSmallDisk(t *testing.T, mnt string) error {
	t.Helper()
	if err := os.MkdirAll(mnt, 0o750); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("PULLGATE_TEST_NO_MOUNT") != "" {
		return errors.New("PULLGATE_TEST_NO_MOUNT is set")
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+strconv.Itoa(smallDisk)); err != nil {
		return err
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
		}
	})
	t.Logf("storage on a 16 MiB tmpfs at %s", mnt)
	return nil
}

// fill leaves about d.leave bytes free.
func (d *fullDisk) fill(t *testing.T) {
	t.Helper()
	if d.inject != nil {
		d.inject.Fill()
		return
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize //nolint:unconvert
	f, err := os.Create(filepath.Join(d.dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for left := free - d.leave; left > 0; left -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
			t.Fatalf("filling the tmpfs: %v", err)
		}
	}
}

func (d *fullDisk) free(t *testing.T) {
	t.Helper()
	if d.inject != nil {
		d.inject.Free()
		return
	}
	if err := os.Remove(filepath.Join(d.dir, "filler")); err != nil {
		t.Fatal(err)
	}
}

// readyz asks the admin handler's /readyz of the proxy.
func readyz(t *testing.T, e *env) (int, string) {
	t.Helper()
	h := admin.New(admin.Options{Ready: e.srv.Ready})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code, rec.Body.String()
}

// startOnDisk starts an upstream and a proxy whose storage is prepared by
// prepare (given the storage directory) before the proxy opens.
func startOnDisk(t *testing.T, storageKeys string, prepare func(data string)) *env {
	t.Helper()
	up, err := upstream.Start(upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	e := &env{up: up, dir: t.TempDir(), storageKeys: storageKeys}
	prepare(filepath.Join(e.dir, "data"))
	e.open(t)
	return e
}

// leftovers lists files below the store's blobs that are not a whole,
// named blob (temporary links or copies).
func leftovers(e *env) []string {
	var out []string
	_ = filepath.Walk(filepath.Join(e.dir, "data", "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && filepath.Base(p) != "data" {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func noSpaceErrors(t *testing.T, e *env, op string) float64 {
	return counter(t, e.reg, "pullgate_storage_write_errors_total", map[string]string{"op": op, "reason": "no_space"})
}

// The spool's disk fills while a blob downloads: every client waiting on
// the fetch gets an error (a 200 cut off: the bytes spooled before the
// disk filled were streamed; or a 503 saying the proxy has no space), nothing partial is left in the spool or the store, the failure
// is counted, /readyz reports it; once space is freed /readyz is ready
// again and the blob is pulled and cached, without a restart.
func TestDiskFullWhileSpooling(t *testing.T) {
	var disk *fullDisk
	e := startOnDisk(t, "", func(data string) { disk = newFullDisk(t, data, 1<<20, true, false) })
	const size = 3 << 20
	img, ld := oneLayerImage(t, size)
	push(t, e.up.Host, "app/full:1", img)
	base := e.proxy.URL + "/v2/upstream.local/app/full"
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	if st, body := readyz(t, e); st != http.StatusOK {
		t.Fatalf("readyz before: %d %s", st, body)
	}
	disk.fill(t)

	const clients = 3
	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make(chan result, clients)
	for range clients {
		go func() {
			st, b, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
			results <- result{st, b, err}
		}()
	}
	for range clients {
		r := <-results
		switch {
		case r.status == http.StatusOK && r.err == nil:
			t.Errorf("a complete 200 (%d bytes) although the spool was full", len(r.body))
		case r.status == http.StatusOK:
			// aborted mid-stream: the client saw the transfer fail
		case r.status == http.StatusServiceUnavailable:
			oe, err := harness.ParseOCIError(r.body)
			if err != nil || !strings.Contains(oe.Message, "no space left") {
				t.Errorf("503 without an OCI error saying the proxy is out of space: %v %s", err, r.body)
			}
		default:
			t.Errorf("status %d (err %v): %s", r.status, r.err, r.body)
		}
	}
	if _, ok := e.srv.Store().Has(digestOf(ld)); ok {
		t.Fatal("a blob whose spool filled is in the store")
	}
	if _, err := os.Stat(storedPath(e, ld)); err == nil {
		t.Fatal("a blob whose spool filled is on disk")
	}
	waitUntil(t, "the spool to empty", time.Minute, func() bool { return len(spoolFiles(e)) == 0 })
	if n := noSpaceErrors(t, e, "spool"); n < 1 {
		t.Errorf("pullgate_storage_write_errors_total{op=spool,reason=no_space} = %v", n)
	}
	if st, body := readyz(t, e); st != http.StatusServiceUnavailable || !strings.Contains(body, "no space left") {
		t.Errorf("readyz with the spool full: %d %q", st, body)
	}

	disk.free(t)
	if st, body := readyz(t, e); st != http.StatusOK {
		t.Errorf("readyz once space is freed: %d %q", st, body)
	}
	st, body, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
	if err != nil || st != 200 || digest.FromBytes(body).String() != ld.String() {
		t.Fatalf("pull once space is freed: %d err=%v, %d bytes", st, err, len(body))
	}
	if _, ok := e.srv.Store().Has(digestOf(ld)); !ok {
		t.Error("the blob is not cached once space is freed")
	}
}

// The store's disk fills while a verified blob is committed (the spool is
// on another disk): the verified bytes stream through to the client, but
// nothing is cached and no partial copy is visible; the failure is counted
// and /readyz reports it; once space is freed the next pull caches it.
func TestDiskFullWhileCommitting(t *testing.T) {
	var disk *fullDisk
	spool := t.TempDir()
	e := startOnDisk(t, ", spoolDir: "+spool, func(data string) { disk = newFullDisk(t, data, 1<<20, false, true) })
	const size = 3 << 20
	img, ld := oneLayerImage(t, size)
	push(t, e.up.Host, "app/full:1", img)
	base := e.proxy.URL + "/v2/upstream.local/app/full"
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	disk.fill(t)

	st, body, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
	if err != nil || st != 200 || digest.FromBytes(body).String() != ld.String() {
		t.Fatalf("verified blob with the store full: %d err=%v, %d bytes", st, err, len(body))
	}
	waitUntil(t, "the commit to fail", time.Minute, func() bool { return noSpaceErrors(t, e, "commit") >= 1 })
	if _, ok := e.srv.Store().Has(digestOf(ld)); ok {
		t.Fatal("the blob is recorded in a full store")
	}
	if _, err := os.Stat(storedPath(e, ld)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a blob whose commit failed is visible: %v", err)
	}
	if l := leftovers(e); len(l) > 0 {
		t.Fatalf("partial copies left in the store: %v", l)
	}
	if st, body := readyz(t, e); st != http.StatusServiceUnavailable || !strings.Contains(body, "no space left") {
		t.Errorf("readyz with the store full: %d %q", st, body)
	}

	disk.free(t)
	if st, body := readyz(t, e); st != http.StatusOK {
		t.Errorf("readyz once space is freed: %d %q", st, body)
	}
	before := e.up.Count(http.MethodGet, "/blobs/"+ld.String())
	st, body, err = fetchBlob(t, base+"/blobs/"+ld.String(), nil)
	if err != nil || st != 200 || digest.FromBytes(body).String() != ld.String() {
		t.Fatalf("pull once space is freed: %d err=%v, %d bytes", st, err, len(body))
	}
	if e.up.Count(http.MethodGet, "/blobs/"+ld.String()) != before+1 {
		t.Error("the blob that was not cached was not fetched again")
	}
	waitUntil(t, "the blob to be cached", time.Minute, func() bool {
		_, ok := e.srv.Store().Has(digestOf(ld))
		return ok
	})
	if _, err := os.Stat(storedPath(e, ld)); err != nil {
		t.Fatal(err)
	}
}

// pullLayer pushes a one-layer image of size bytes as app/<name>:1 and
// pulls its manifest through the proxy; it returns the layer's URL.
func pullLayer(t *testing.T, e *env, name string, size int) (string, digest.Digest) {
	t.Helper()
	img, ld := oneLayerImage(t, size)
	push(t, e.up.Host, "app/"+name+":1", img)
	base := e.proxy.URL + "/v2/upstream.local/app/" + name
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	return base + "/blobs/" + ld.String(), digest.Digest(ld.String())
}

// pullCached pulls the blob at url through the proxy and waits until it
// is cached.
func pullCached(t *testing.T, e *env, url string, dg digest.Digest) {
	t.Helper()
	if st, body, err := fetchBlob(t, url, nil); err != nil || st != 200 || digest.FromBytes(body) != dg {
		t.Fatalf("pull %s: %d err=%v, %d bytes", url, st, err, len(body))
	}
	waitUntil(t, "the blob to be cached", time.Minute, func() bool {
		_, ok := e.srv.Store().Has(dg)
		return ok
	})
}

// pullTooBig pulls the blob at url, which does not fit in the spool, and
// checks that /readyz is ready once the failed fetch is over.
func pullTooBig(t *testing.T, e *env, url string) {
	t.Helper()
	if st, body, err := fetchBlob(t, url, nil); st == http.StatusOK && err == nil {
		t.Fatalf("a complete 200 (%d bytes) for a blob that does not fit", len(body))
	}
	waitUntil(t, "the spool to empty", time.Minute, func() bool { return len(spoolFiles(e)) == 0 })
	if n := noSpaceErrors(t, e, "spool"); n < 1 {
		t.Fatalf("pullgate_storage_write_errors_total{op=spool,reason=no_space} = %v", n)
	}
	if code, body := readyz(t, e); code != http.StatusOK {
		t.Fatalf("readyz once the failed fetch is over: %d %q", code, body)
	}
}

// A blob larger than the whole filesystem under the spool cannot be
// cached, but once its spool file is gone the disk is as empty as it will
// ever be: /readyz must be ready again, with no pull needed. (/readyz used
// to wait for the blob's whole size to be free, which never happens, and
// an unready replica gets no pull whose success would clear it: one such
// blob pulled through every replica took the service down.)
func TestReadyRecoversAfterOversizedBlob(t *testing.T) {
	e := startOnDisk(t, "", func(data string) { newSmallDisk(t, data) })
	url, _ := pullLayer(t, e, "big", smallDisk+4<<20)
	pullTooBig(t, e, url)
	// And it caches what fits.
	url, dg := pullLayer(t, e, "small", 1<<20)
	pullCached(t, e, url, dg)
}

// The store itself fills the disk it shares with the spool (its size
// limit is above what the disk holds; eviction used to run only past that
// limit, on a commit): a blob that does not fit makes the store evict its
// least recently used content, so that /readyz is ready again at once and
// the next pull of that blob is cached.
func TestReadyRecoversWhenStoreFillsDisk(t *testing.T) {
	e := startOnDisk(t, "", func(data string) { newSmallDisk(t, data) })
	const stored = 9 << 19 // 4.5 MiB: three leave about 2.5 MiB of the 16
	var old []digest.Digest
	for i := range 3 {
		url, dg := pullLayer(t, e, fmt.Sprintf("old%d", i), stored)
		pullCached(t, e, url, dg)
		old = append(old, dg)
	}
	url, dg := pullLayer(t, e, "new", 6<<20)
	pullTooBig(t, e, url)
	if _, ok := e.srv.Store().Has(old[0]); ok {
		t.Error("the least recently used blob was not evicted")
	}
	if _, ok := e.srv.Store().Has(old[2]); !ok {
		t.Error("the most recently used blob was evicted")
	}
	pullCached(t, e, url, dg)
}
