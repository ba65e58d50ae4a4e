package promotee2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
)

// TestPromoteInterrupted: an interrupt while a layer streams ends the run
// as a failure: a non-zero exit, no write at the destination, and no
// temporary copy left in $TMPDIR.
func TestPromoteInterrupted(t *testing.T) {
	e := newEnv(t)
	img := e.src.PushImage(t, "apps/slow", "1.0", harness.ImageOptions{Layers: 1})
	e.releaseSign("apps/slow", img.Digest)

	// The source, behind a gate that holds the layer's download until the
	// client goes away.
	g := holdBlob(t, e.src, img.Layers[0].Digest)
	gateHost, held := g.host, g.held
	if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(policyFor(gateHost)), 0o644); err != nil {
		t.Fatal(err)
	}

	tmp := filepath.Join(e.dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pullgateBin, "promote", gateHost+"/apps/slow:1.0", e.dst.Ref("prod/slow:1.0"),
		"--policy", "policy.yaml", "--key", "promote.key", "--plain-http")
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "HOME="+e.dir, "DOCKER_CONFIG="+filepath.Join(e.dir, ".docker"), "COSIGN_PASSWORD="+password, "TMPDIR="+tmp)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatalf("promote never asked for the layer\n%s", out.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || !ee.Exited() || ee.ExitCode() != 1 {
		t.Fatalf("promote after an interrupt: %v (want exit 1, not killed by the signal)\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "interrupted") {
		t.Errorf("output does not say the run was interrupted:\n%s", out.String())
	}
	left, _ := os.ReadDir(tmp)
	for _, d := range left {
		t.Errorf("left in $TMPDIR: %s", d.Name())
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("interrupted promote made %d write requests to the destination", w)
	}
	e.assertDstEmpty("prod/slow", img.Digest)
}

// blobGate is a source registry behind a reverse proxy that holds the
// download of one blob: held is closed when it is asked for, and the
// download goes on once release is closed (or ends when the client goes).
type blobGate struct {
	host          string
	held, release chan struct{}
}

func holdBlob(t *testing.T, src *harness.Upstream, dgst string) *blobGate {
	target, _ := url.Parse(src.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	g := &blobGate{held: make(chan struct{}), release: make(chan struct{})}
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/blobs/"+dgst) {
			once.Do(func() { close(g.held) })
			select {
			case <-r.Context().Done():
				return
			case <-g.release:
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.host = strings.TrimPrefix(srv.URL, "http://")
	return g
}
