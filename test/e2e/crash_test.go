package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/tools"
)

// kill -9 of pullgate during a commit, then a restart on the same store: no
// partial blob is visible (on disk or over HTTP), the store index is
// rebuilt, and a stored copy counts as verified only once the new process
// hashed it; a copy corrupted while pullgate was down is not served.
//
// The binary runs as in production (bin/pullgate serve). It is killed at
// two points: with all but the last byte of a large blob spooled (the
// upstream holds the last byte back), and at the commit itself, on entry to
// the rename that makes the verified blob visible (strace delivers SIGKILL
// there).
func TestKillDuringCommitAndRestart(t *testing.T) {
	straceBin := tools.Need(t, "strace")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	var stalling atomic.Bool
	stalled := make(chan struct{}, 1)
	var layerPath atomic.Value // "/v2/<repo>/blobs/<layer digest>"
	layerPath.Store("-")
	up := harness.StartUpstream(t, harness.UpstreamOptions{Disk: true, Wrap: func(next http.Handler) http.Handler {
		return holdLastByte(next, &stalling, &layerPath, stalled)
	}})
	img := up.PushImage(t, "open/big", "v1", harness.ImageOptions{Layers: 1, LayerSize: 8 << 20})
	layer := img.Layers[0]
	layerPath.Store("/v2/open/big/blobs/" + layer.Digest)

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	hexd := strings.TrimPrefix(layer.Digest, "sha256:")
	stored := filepath.Join(data, "blobs", "sha256", hexd[:2], hexd, "data")
	pg := newPullgateConfig(t, buildPullgate(t), dir, up)
	blobURL := func(p *pgProcess) string { return p.url + "/v2/" + up.Name + "/open/big/blobs/" + layer.Digest }
	manifest := func(p *pgProcess) {
		t.Helper()
		st, _, body, err := harness.Get(ctx, p.url+"/v2/"+up.Name+"/open/big/manifests/v1", nil)
		if st != http.StatusOK || err != nil {
			t.Fatalf("manifest through pullgate: %d %v %s\n%s", st, err, trunc(body), p.logs())
		}
	}

	// 1. Killed with all but the last byte of the layer spooled.
	a := pg.start(ctx, t, nil)
	manifest(a)
	stalling.Store(true)
	type pull struct {
		status int
		body   []byte
		err    error
	}
	pulled := make(chan pull, 1)
	go func() {
		st, _, body, err := harness.Get(ctx, blobURL(a), nil)
		pulled <- pull{st, body, err}
	}()
	select {
	case <-stalled:
	case <-ctx.Done():
		t.Fatal("the upstream was never asked for the layer")
	}
	waitFor(ctx, t, "all but the last byte spooled", func() bool {
		spools, _ := filepath.Glob(filepath.Join(data, "_spool", "*"))
		for _, s := range spools {
			if fi, err := os.Stat(s); err == nil && fi.Size() == layer.Size-1 {
				return true
			}
		}
		return false
	})
	a.kill(t)
	if p := <-pulled; p.err == nil && p.status == http.StatusOK && int64(len(p.body)) == layer.Size {
		t.Fatal("the client received the whole layer from a process killed before the last byte came")
	}
	stalling.Store(false)
	if _, err := os.Stat(stored); !os.IsNotExist(err) {
		t.Fatalf("killed while spooling: the layer is in the store (%v)", err)
	}
	checkOnlyWholeBlobs(t, data)

	// 2. Killed at the commit: on entry to the rename that makes the
	// verified layer visible.
	b := pg.start(ctx, t, []string{straceBin, "-f", "-qq", "-o", "/dev/null",
		"-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:signal=KILL", "-P", stored})
	manifest(b)
	st, _, body, err := harness.Get(ctx, blobURL(b), nil)
	if err == nil && st == http.StatusOK && int64(len(body)) == layer.Size {
		t.Log("the layer was sent whole before the commit") // verified: allowed
	}
	b.wait(ctx, t)
	if _, err := os.Stat(stored); !os.IsNotExist(err) {
		t.Fatalf("killed at the commit rename: the layer is in the store (%v)", err)
	}
	// Killed after the verified layer was linked for the commit: the link
	// is outside the blobs (and removed at the next start).
	if up, _ := os.ReadDir(filepath.Join(data, "_uploads")); len(up) != 1 {
		t.Errorf("_uploads holds %d entries after a kill at the commit, want the layer's link", len(up))
	}
	checkOnlyWholeBlobs(t, data)

	// 3. Restart: leftovers gone, index rebuilt, the layer fetched again
	// and committed (recorded as verified: no re-hash on the next pull).
	c := pg.start(ctx, t, nil)
	for _, leftover := range []string{"_uploads", "_spool"} {
		entries, _ := os.ReadDir(filepath.Join(data, leftover))
		if len(entries) != 0 {
			t.Errorf("%s after the restart holds %d entries, want none", leftover, len(entries))
		}
	}
	checkIndexRebuilt(ctx, t, c, data)
	before := up.Reg.Count(http.MethodGet, "/blobs/"+layer.Digest)
	c.pullWhole(ctx, t, blobURL(c), layer)
	if n := up.Reg.Count(http.MethodGet, "/blobs/"+layer.Digest) - before; n != 1 {
		t.Fatalf("upstream GETs of the layer after the restart: %d, want 1", n)
	}
	c.pullWhole(ctx, t, blobURL(c), layer)
	if n := c.metric(ctx, t, `pullgate_store_blob_verifications_total{result="ok"}`); n != 0 {
		t.Fatalf("the copy this process committed was hashed again (%v)", n)
	}
	checkOnlyWholeBlobs(t, data)

	// 4. kill -9, restart: the intact copy is hashed once before it
	// counts as verified.
	c.kill(t)
	d := pg.start(ctx, t, nil)
	before = up.Reg.Count(http.MethodGet, "/blobs/"+layer.Digest)
	for i := 0; i < 2; i++ {
		d.pullWhole(ctx, t, blobURL(d), layer)
		if n := d.metric(ctx, t, `pullgate_store_blob_verifications_total{result="ok"}`); n != 1 {
			t.Fatalf("pull %d after the restart: %v verifications of the stored copy, want 1", i, n)
		}
	}
	if n := up.Reg.Count(http.MethodGet, "/blobs/"+layer.Digest) - before; n != 0 {
		t.Fatalf("the intact stored layer was fetched again (%d)", n)
	}

	// 5. kill -9, the stored copy rots while pullgate is down (same size,
	// inode and modification time), restart: it is not served.
	d.kill(t)
	fi, err := os.Stat(stored)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{'X'}, int(fi.Size()))
	if err := os.WriteFile(stored, junk, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(stored, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	e := pg.start(ctx, t, nil)
	st, _, body, err = harness.Get(ctx, blobURL(e), nil)
	if err == nil && st == http.StatusOK && bytes.Equal(body, junk) {
		t.Fatal("a copy corrupted while pullgate was down was served whole after the restart")
	}
	if bytes.Contains(body, junk[:64<<10]) && int64(len(body)) > layer.Size-64<<10 {
		t.Fatalf("%d bytes of the corrupt copy were sent: the tail was not held back", len(body))
	}
	if n := e.metric(ctx, t, `pullgate_store_blob_verifications_total{result="corrupt"}`); n != 1 {
		t.Fatalf("corrupt verifications = %v, want 1", n)
	}
	e.pullWhole(ctx, t, blobURL(e), layer)
	checkOnlyWholeBlobs(t, data)
}

// holdLastByte makes the upstream, while stalling is set, send the blob at
// path except its last byte, then nothing until the request ends.
func holdLastByte(next http.Handler, stalling *atomic.Bool, path *atomic.Value, stalled chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != path.Load().(string) || !stalling.Load() {
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
		if len(b) > 0 {
			b = b[:len(b)-1]
		}
		for len(b) > 0 {
			n, err := w.Write(b[:min(len(b), 256<<10)])
			if err != nil {
				return
			}
			b = b[n:]
		}
		w.(http.Flusher).Flush()
		select {
		case stalled <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	})
}

// buildPullgate builds bin/pullgate's command into the test's directory.
func buildPullgate(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(t.TempDir(), "pullgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pullgate")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pullgate: %v\n%s", err, out)
	}
	return bin
}

// pgConfig is a pullgate.yaml (store in <dir>/data) for the binary.
type pgConfig struct {
	bin, path string
}

func newPullgateConfig(t *testing.T, bin, dir string, up *harness.Upstream) *pgConfig {
	t.Helper()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(gate.DefaultPolicy(up.Name)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "pullgate.yaml")
	text := fmt.Sprintf("listen: 127.0.0.1:%d\nadmin: 127.0.0.1:%d\nstorage: {path: %s}\n"+
		"upstreams: [{name: %s, url: %s}]\npolicy: %s\nlog: {level: info, format: text}\n",
		harness.FreePort(t), harness.FreePort(t), filepath.Join(dir, "data"), up.Name, up.URL, pol)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return &pgConfig{bin: bin, path: cfg}
}

// pgProcess is a running pullgate.
type pgProcess struct {
	cmd        *exec.Cmd
	url, admin string
	exited     chan struct{}
	mu         sync.Mutex
	out        bytes.Buffer
}

func (p *pgProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *pgProcess) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs the binary (under wrapper, e.g. strace, when given) and waits
// until its admin listener answers.
func (c *pgConfig) start(ctx context.Context, t *testing.T, wrapper []string) *pgProcess {
	t.Helper()
	text, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProcess{exited: make(chan struct{})}
	for _, l := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(l, "listen: "); ok {
			p.url = "http://" + v
		}
		if v, ok := strings.CutPrefix(l, "admin: "); ok {
			p.admin = "http://" + v
		}
	}
	argv := append(append([]string{}, wrapper...), c.bin, "serve", "--config", c.path)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	// A group of its own: a tracer killed at cleanup would leave its
	// tracee running.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	})
	for {
		select {
		case <-p.exited:
			t.Fatalf("pullgate exited at start: %v\n%s", p.cmd.ProcessState, p.logs())
		case <-ctx.Done():
			t.Fatalf("pullgate did not come up\n%s", p.logs())
		case <-time.After(20 * time.Millisecond):
		}
		if st, _, _, err := harness.Get(ctx, p.admin+"/healthz", nil); err == nil && st == http.StatusOK {
			return p
		}
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *pgProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// wait waits for the process to end by itself (killed by its wrapper).
func (p *pgProcess) wait(ctx context.Context, t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatalf("pullgate was not killed at the commit\n%s", p.logs())
	}
	if p.cmd.ProcessState.Success() {
		t.Fatalf("pullgate ended cleanly, not killed: %v", p.cmd.ProcessState)
	}
}

// pullWhole GETs a blob and wants all of it, with its digest.
func (p *pgProcess) pullWhole(ctx context.Context, t *testing.T, url string, b harness.Blob) {
	t.Helper()
	st, _, body, err := harness.Get(ctx, url, nil)
	if st != http.StatusOK || err != nil || harness.Sha256(body) != b.Digest {
		t.Fatalf("GET %s: %d, %d bytes, %v\n%s", url, st, len(body), err, p.logs())
	}
}

// metric reads one series from /metrics (0 when absent).
func (p *pgProcess) metric(ctx context.Context, t *testing.T, series string) float64 {
	t.Helper()
	st, _, body, err := harness.Get(ctx, p.admin+"/metrics", nil)
	if st != http.StatusOK || err != nil {
		t.Fatalf("/metrics: %d %v", st, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// checkOnlyWholeBlobs fails unless every file among the store's blobs is
// a blob's data whose bytes have the digest its path names.
func checkOnlyWholeBlobs(t *testing.T, data string) {
	t.Helper()
	root := filepath.Join(data, "blobs", "sha256")
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 3 || parts[2] != "data" {
			t.Errorf("the store's blobs hold %s, which is not a blob", rel)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			return nil
		}
		if got := harness.Sha256(b); got != "sha256:"+parts[1] {
			t.Errorf("the store holds %s with other bytes (%s): a partial or corrupt blob", rel, got)
		}
		return nil
	})
}

// checkIndexRebuilt waits for the index of the store to be complete and
// checks that it counts what the store holds.
func checkIndexRebuilt(ctx context.Context, t *testing.T, p *pgProcess, data string) {
	t.Helper()
	waitFor(ctx, t, "store index complete", func() bool {
		return p.metric(ctx, t, "pullgate_store_index_complete") == 1
	})
	var n, size int64
	_ = filepath.Walk(filepath.Join(data, "blobs"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n, size = n+1, size+fi.Size()
		}
		return nil
	})
	if got := p.metric(ctx, t, "pullgate_store_indexed_blobs"); int64(got) != n {
		t.Errorf("the rebuilt index holds %v blobs, the store %d", got, n)
	}
	if got := p.metric(ctx, t, "pullgate_store_indexed_bytes"); int64(got) != size {
		t.Errorf("the rebuilt index counts %v bytes, the store holds %d", got, size)
	}
	st, _, body, err := harness.Get(ctx, p.admin+"/readyz", nil)
	if st != http.StatusOK || err != nil || !strings.Contains(string(body), "store index: complete") {
		t.Errorf("/readyz after the restart: %d %v %q", st, err, body)
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
