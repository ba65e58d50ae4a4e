package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
)

// heldWalk is a filesystem storage driver whose walks wait until release
// is closed: a store too large to walk in the time a client waits.
type heldWalk struct {
	storagedriver.StorageDriver
	started, release chan struct{}
	once             sync.Once
}

func (d *heldWalk) Walk(ctx context.Context, p string, f storagedriver.WalkFn, opts ...func(*storagedriver.WalkOptions)) error {
	d.once.Do(func() { close(d.started) })
	select {
	case <-d.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return d.StorageDriver.Walk(ctx, p, f, opts...)
}

// heldWalks are the drivers of "heldwalk-test", by their "name" parameter.
type heldWalks struct {
	mu sync.Mutex
	m  map[string]*heldWalk
}

var heldWalkDrivers = &heldWalks{m: map[string]*heldWalk{}}

func (h *heldWalks) Create(_ context.Context, p map[string]any) (storagedriver.StorageDriver, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.m[fmt.Sprint(p["name"])]
	if !ok {
		return nil, fmt.Errorf("heldwalk-test: no driver %v", p["name"])
	}
	return d, nil
}

func init() { factory.Register("heldwalk-test", heldWalkDrivers) }

// A restarted proxy serves a stored blob before the index of its store is
// built (it walked the whole store before it served anything: minutes for
// a million blobs), says on /readyz and in a metric that the index is being
// built, and counts that blob once when the walk reaches it.
func TestServesStoredBlobBeforeIndexComplete(t *testing.T) {
	e := start(t, nil)
	img, ld := oneLayerImage(t, 1<<20)
	push(t, e.up.Host, "app/restart:1", img)
	root := filepath.Join(e.dir, "shared")
	// open opens a proxy on the store in root in the background.
	open := func(name string, held bool) (*heldWalk, chan openResult) {
		d := &heldWalk{StorageDriver: filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}),
			started: make(chan struct{}), release: make(chan struct{})}
		if !held {
			close(d.release)
		}
		heldWalkDrivers.mu.Lock()
		heldWalkDrivers.m[name] = d
		heldWalkDrivers.mu.Unlock()
		cfg, err := config.Parse([]byte(fmt.Sprintf(`
storage: {driver: heldwalk-test, parameters: {name: %s}, spoolDir: %s}
upstreams:
  - name: upstream.local
    url: %s
policy: %s
`, name, filepath.Join(e.dir, "spool-"+name), e.up.URL, filepath.Join(e.dir, "policy.yaml"))))
		if err != nil {
			t.Fatal(err)
		}
		res := make(chan openResult, 1)
		go func() {
			reg := prometheus.NewRegistry()
			srv, err := proxy.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), proxy.Options{Registerer: reg})
			res <- openResult{srv, reg, err}
		}()
		return d, res
	}
	serve := func(r openResult) (string, *proxy.Server, *prometheus.Registry) {
		if r.err != nil {
			t.Fatal(r.err)
		}
		ps := httptest.NewServer(r.srv.Handler())
		t.Cleanup(func() { ps.Close(); r.srv.Close() })
		return ps.URL, r.srv, r.reg
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// First run: pull the image, so that the store holds it.
	name := strings.ReplaceAll(t.Name(), "/", "-")
	_, res := open(name+"-1", false)
	url, _, _ := serve(<-res)
	base := url + "/v2/upstream.local/app/restart"
	if resp, _ := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("manifest")
	}
	st, orig, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
	if st != 200 || err != nil || len(orig) != 1<<20 {
		t.Fatalf("cold pull: %d, %d bytes, %v", st, len(orig), err)
	}

	// Restart with the walk of the store held; the upstream is gone, so
	// that what is served comes from the store.
	e.up.Close()
	d, res := open(name+"-2", true)
	release := sync.OnceFunc(func() { close(d.release) })
	defer release() // a failing test lets the walk go
	select {
	case <-d.started:
	case <-ctx.Done():
		t.Fatal("the walk never started")
	}
	var r openResult
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy does not open before the walk of its store is done")
	}
	url, srv, reg := serve(r)
	status := srv.ReadyStatus
	base = url + "/v2/upstream.local/app/restart"
	st, body, err := fetchBlob(t, base+"/blobs/"+ld.String(), nil)
	if st != 200 || err != nil || !bytes.Equal(body, orig) {
		t.Fatalf("stored blob while the index is built: %d, %v", st, err)
	}
	if n := verifications(t, reg, "ok"); n != 1 {
		t.Fatalf("the stored copy was served with %v verifications, want 1 (hashed before it counts)", n)
	}
	if g := gauge(t, reg, "pullgate_store_index_complete"); g != 0 {
		t.Fatalf("pullgate_store_index_complete = %v while the walk is held", g)
	}
	if s := status(); !strings.Contains(s, "store index: building") {
		t.Fatalf("readiness status while the walk is held: %q", s)
	}

	release()
	for gauge(t, reg, "pullgate_store_index_complete") != 1 {
		if ctx.Err() != nil {
			t.Fatal("the index was not completed once the walk was released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := status(); !strings.Contains(s, "store index: complete") {
		t.Fatalf("readiness status once complete: %q", s)
	}
	var onDisk int64
	_ = d.StorageDriver.Walk(ctx, "/blobs", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			onDisk += fi.Size()
		}
		return nil
	})
	if g := gauge(t, reg, "pullgate_store_indexed_bytes"); int64(g) != onDisk {
		t.Fatalf("the index counts %v bytes, the store holds %d", g, onDisk)
	}
	if resp, _ := get(t, base+"/blobs/"+ld.String()); resp.StatusCode != http.StatusOK {
		t.Fatalf("stored blob once indexed: %d", resp.StatusCode)
	}
}

type openResult struct {
	srv *proxy.Server
	reg *prometheus.Registry
	err error
}

// gauge is the value of a gauge without labels.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
