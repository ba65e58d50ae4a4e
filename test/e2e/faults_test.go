package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/containerdtest"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// With the upstream down, content verified earlier is still served (by tag,
// within the offline grace, and by digest); content never pulled is not.
func TestUpstreamDownServesVerifiedCache(t *testing.T) {
	// tagTTL 1ms: every tag resolution must try the upstream, so the offline
	// path is what serves it.
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{TagTTL: "1ms"})
	uncached := f.up.PushImage(t, "open/uncached", "v1", harness.ImageOptions{})
	if d, err := harness.GGCRPull(f.ref("open/app:v1")); err != nil || d != f.allowed.Digest {
		t.Fatalf("warm-up pull: %s %v", d, err)
	}
	f.up.Down()
	time.Sleep(5 * time.Millisecond)

	// A node pulling during the outage gets the verified image.
	t.Run("containerd", func(t *testing.T) {
		d := containerdtest.Start(t)
		hosts := d.Mirror(t, f.up.Name, f.px.Host)
		cref := f.up.Name + "/open/app:v1"
		if res := d.Pull(t, hosts, cref); res.Err != nil {
			t.Fatalf("containerd pull during the outage: %v", res)
		}
		if got := d.ImageDigest(t, cref); got != f.allowed.Digest {
			t.Errorf("containerd digest %s, want %s", got, f.allowed.Digest)
		}
	})
	for _, r := range []string{"open/app:v1", "open/app@" + f.allowed.Digest} {
		d, err := harness.GGCRPull(f.ref(r))
		if err != nil || d != f.allowed.Digest {
			t.Errorf("offline pull %s: %s %v", r, d, err)
		}
	}
	res := harness.CraneDigest(t, f.ref("open/app:v1"))
	if res.Err != nil || strings.TrimSpace(res.Stdout) != f.allowed.Digest {
		t.Errorf("offline crane digest: %v", res)
	}
	if _, err := harness.GGCRPull(f.ref("open/uncached:v1")); err == nil {
		t.Error("offline pull of never-verified content succeeded")
	}
	for _, r := range []string{"v1", uncached.Digest} {
		st, _, body, err := harness.Get(ctx(t), f.url("open/uncached/manifests/"+r), nil)
		if err != nil {
			t.Fatal(err)
		}
		if st < 400 {
			t.Errorf("offline GET uncached manifest %s: %d", r, st)
		}
		if _, perr := harness.ParseOCIError(body); perr != nil {
			t.Errorf("offline uncached: %v", perr)
		}
	}
	st, _, _, _ := harness.Get(ctx(t), f.url("open/uncached/blobs/"+uncached.Layers[0].Digest), nil)
	if st == http.StatusOK {
		t.Error("offline GET of an unverified blob served")
	}
	// The denied image stays denied offline.
	st, _, body, _ := harness.Get(ctx(t), f.url("blocked/app/manifests/v1"), nil)
	expectOCIError(t, "offline denied", st, body, http.StatusForbidden, "DENIED")
}

// A negative offlineGrace disables serving tags from the last resolution when
// the upstream is down (content by digest is still verified content).
func TestUpstreamDownNoGrace(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{TagTTL: "1ms", OfflineGrace: "-1s"})
	if d, err := harness.GGCRPull(f.ref("open/app:v1")); err != nil || d != f.allowed.Digest {
		t.Fatalf("warm-up pull: %s %v", d, err)
	}
	f.up.Down()
	time.Sleep(5 * time.Millisecond)
	if d, err := harness.GGCRPull(f.ref("open/app:v1")); err == nil {
		t.Errorf("tag served offline with grace disabled: %s", d)
	}
	if d, err := harness.GGCRPull(f.ref("open/app@" + f.allowed.Digest)); err != nil || d != f.allowed.Digest {
		t.Errorf("verified content by digest offline: %s %v", d, err)
	}
}

// A lying upstream serves other bytes (same length) for a layer: the client
// gets an error, never the complete body; nothing is cached; once the
// upstream is honest again the next pull fetches the blob again and succeeds.
// The 8 MiB case is streamed by the proxy, so it must hold back the tail and
// abort: the client may see a prefix but never all bytes.
func TestLyingUpstreamBlob(t *testing.T) {
	for _, size := range []int64{1024, 8 << 20} {
		t.Run(strconv.FormatInt(size, 10), func(t *testing.T) {
			f := newFixture(t, harness.UpstreamOptions{Disk: true}, gate.Options{})
			img := f.up.PushImage(t, "open/lied", "v1", harness.ImageOptions{LayerSize: size, Static: true})
			layer := img.Layers[0]
			lie := make([]byte, len(layer.Data))
			for i, b := range layer.Data {
				lie[i] = b ^ 0xff
			}
			f.up.Liar.LieBlob(layer.Digest)

			// The manifest is fine and allowed.
			st, _, _, err := harness.Get(ctx(t), f.url("open/lied/manifests/v1"), map[string]string{"Accept": img.MediaType})
			if err != nil || st != http.StatusOK {
				t.Fatalf("manifest: %d %v", st, err)
			}
			st, _, body, err := harness.Get(ctx(t), f.url("open/lied/blobs/"+layer.Digest), nil)
			t.Logf("client saw: status %d, %d of %d bytes, err %v", st, len(body), layer.Size, err)
			if err == nil && st == http.StatusOK {
				t.Fatalf("proxy completed a 200 response for a blob whose bytes do not match (got %s, %d bytes)", harness.Sha256(body), len(body))
			}
			if st == http.StatusOK && int64(len(body)) >= layer.Size {
				t.Fatalf("client received all %d bytes of a blob that failed verification", len(body))
			}
			if f.up.Liar.Lies() == 0 {
				t.Fatal("the proxy never fetched the lying blob")
			}
			if _, err := harness.GGCRPull(f.ref("open/lied:v1")); err == nil {
				t.Fatal("ggcr pull succeeded from a lying upstream")
			}
			if files := filesWithDigest(t, f.px.StoragePath, harness.Sha256(lie)); len(files) > 0 {
				t.Fatalf("lying bytes were stored: %v", files)
			}

			f.up.Liar.Honest()
			before := f.up.Count(http.MethodGet, "/blobs/"+layer.Digest)
			d, err := harness.GGCRPull(f.ref("open/lied:v1"))
			if err != nil || d != img.Digest {
				t.Fatalf("pull after the upstream is honest: %s %v", d, err)
			}
			if after := f.up.Count(http.MethodGet, "/blobs/"+layer.Digest); after <= before {
				t.Fatalf("no honest fetch of %s after the lie (upstream GETs %d -> %d): something was cached", layer.Digest, before, after)
			}
			st, _, body, err = harness.Get(ctx(t), f.url("open/lied/blobs/"+layer.Digest), nil)
			if err != nil || st != http.StatusOK || !bytes.Equal(body, layer.Data) {
				t.Fatalf("honest blob: %d %v", st, err)
			}
		})
	}
}

// A lying upstream answers a manifest request (by tag and by digest) with
// another image's manifest under the honest digest header: refused; after
// the upstream is honest the right manifest is served.
func TestLyingUpstreamManifest(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	evil := f.up.PushImage(t, "open/evil", "v1", harness.ImageOptions{})
	target := f.up.PushImage(t, "open/target", "v1", harness.ImageOptions{})
	f.up.Liar.LieManifest(target.Digest, evil.Manifest)

	for _, r := range []string{"v1", target.Digest} {
		st, _, body, err := harness.Get(ctx(t), f.url("open/target/manifests/"+r), map[string]string{"Accept": target.MediaType})
		if err == nil && st == http.StatusOK {
			t.Errorf("GET manifest %s from a lying upstream: 200 with %s", r, harness.Sha256(body))
		}
		if bytes.Equal(body, evil.Manifest) {
			t.Errorf("client received the substituted manifest")
		}
	}
	if _, err := harness.GGCRPull(f.ref("open/target:v1")); err == nil {
		t.Error("ggcr pull of a lied-about manifest succeeded")
	}
	if f.up.Liar.Lies() == 0 {
		t.Fatal("the proxy never fetched the manifest")
	}
	f.up.Liar.Honest()
	d, err := harness.GGCRPull(f.ref("open/target:v1"))
	if err != nil || d != target.Digest {
		t.Fatalf("pull after honesty: %s %v", d, err)
	}
}

// Twenty clients asking at once for one uncached 32 MiB blob cause exactly
// one upstream GET of it, and all receive the same, correct bytes, although
// the client that started the fetch disconnected early.
func TestConcurrentFetchCoalescing(t *testing.T) {
	const clients = 20
	var slow sync.Map // digest -> true: upstream delays these blob GETs
	up := harness.UpstreamOptions{Disk: true, Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 {
					if _, ok := slow.Load(r.URL.Path[i+len("/blobs/"):]); ok {
						time.Sleep(400 * time.Millisecond)
					}
				}
			}
			h.ServeHTTP(w, r)
		})
	}}
	t0 := time.Now()
	f := newFixture(t, up, gate.Options{})
	big := f.up.PushImage(t, "open/big", "v1", harness.ImageOptions{LayerSize: 32 << 20, Static: true})
	layer := big.Layers[0]
	if layer.Size < 32<<20 {
		t.Fatalf("layer is %d bytes", layer.Size)
	}
	t.Logf("seeded in %s", time.Since(t0))
	slow.Store(layer.Digest, true)
	// The manifest is decided first (a blob is served only for an allowed manifest).
	st, _, _, err := harness.Get(ctx(t), f.url("open/big/manifests/v1"), map[string]string{"Accept": big.MediaType})
	if err != nil || st != http.StatusOK {
		t.Fatalf("manifest: %d %v", st, err)
	}
	f.up.Reg.ResetCounts()

	// A first client starts the fetch and disconnects after 1 MiB: the
	// fetch others wait on must go on.
	quitter := make(chan error, 1)
	go func() {
		c, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(c, http.MethodGet, f.url("open/big/blobs/"+layer.Digest), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			quitter <- err
			return
		}
		_, err = io.CopyN(io.Discard, resp.Body, 1<<20)
		cancel()
		resp.Body.Close()
		quitter <- err
	}()
	time.Sleep(100 * time.Millisecond)

	var wg sync.WaitGroup
	errs := make([]string, clients)
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.Get(f.url("open/big/blobs/" + layer.Digest))
			if err != nil {
				errs[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			h := newHasher()
			n, err := io.Copy(h, resp.Body)
			switch {
			case err != nil:
				errs[i] = err.Error()
			case resp.StatusCode != http.StatusOK:
				errs[i] = resp.Status
			case n != layer.Size || h.digest() != layer.Digest:
				errs[i] = "wrong bytes: " + h.digest()
			}
		}()
	}
	t1 := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d clients × %d MiB in %s", clients, layer.Size>>20, time.Since(t1))
	if err := <-quitter; err != nil {
		t.Errorf("disconnecting client: %v", err)
	}
	for i, e := range errs {
		if e != "" {
			t.Errorf("client %d: %s", i, e)
		}
	}
	if n := f.up.Count(http.MethodGet, "/blobs/"+layer.Digest); n != 1 {
		t.Errorf("upstream GETs of the blob: %d, want exactly 1", n)
	}
}

// The content store survives a restart: a new proxy on the same directory
// serves content verified by the previous one, by digest, with the upstream
// gone; and still refuses the denied image.
func TestStoreSurvivesRestart(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	if d, err := harness.GGCRPull(f.ref("open/app:v1")); err != nil || d != f.allowed.Digest {
		t.Fatalf("warm-up pull: %s %v", d, err)
	}
	f.px.Close()
	f.up.Down()
	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{f.up}, Dir: f.px.Dir})
	d, err := harness.GGCRPull(px.Ref(f.up, "open/app@"+f.allowed.Digest))
	if err != nil || d != f.allowed.Digest {
		t.Fatalf("pull by digest after restart, upstream down: %s %v", d, err)
	}
	st, _, body, _ := harness.Get(ctx(t), px.URL+"/v2/"+f.up.Name+"/blocked/app/blobs/"+f.denied.Layers[1].Digest, nil)
	expectOCIError(t, "denied shared layer after restart", st, body, http.StatusForbidden, "DENIED")
}

// Upstream answers whose size does not match (extra or missing bytes, with a
// matching Content-Length) are refused like a digest mismatch; a manifest
// served under another media type is not passed on as that type.
func TestLyingUpstreamSizeAndMediaType(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	for _, delta := range []int{+7, -7} {
		img := f.up.PushImage(t, "open/sized", strconv.Itoa(delta+10), harness.ImageOptions{})
		layer := img.Layers[0]
		f.up.Liar.LieBlobSize(layer.Digest, delta)
		ref := f.ref("open/sized@" + img.Digest)
		if _, err := harness.GGCRPull(ref); err == nil {
			t.Errorf("pull with a blob %+d bytes off succeeded", delta)
		}
		st, _, body, err := harness.Get(ctx(t), f.url("open/sized/blobs/"+layer.Digest), nil)
		if err == nil && st == http.StatusOK {
			t.Errorf("blob %+d bytes off: 200 with %d bytes", delta, len(body))
		}
		f.up.Liar.Honest()
		if d, err := harness.GGCRPull(ref); err != nil || d != img.Digest {
			t.Errorf("pull after honesty (%+d): %s %v", delta, d, err)
		}
	}

	img := f.up.PushImage(t, "open/typed", "v1", harness.ImageOptions{})
	f.up.Liar.LieManifestType(img.Digest, "application/vnd.oci.image.index.v1+json")
	st, h, body, err := harness.Get(ctx(t), f.url("open/typed/manifests/v1"), map[string]string{"Accept": "application/vnd.oci.image.index.v1+json, " + img.MediaType})
	if err != nil {
		t.Fatal(err)
	}
	if f.up.Liar.Lies() == 0 {
		t.Fatal("the proxy never fetched the mistyped manifest")
	}
	if st == http.StatusOK {
		if ct := h.Get("Content-Type"); ct != img.MediaType {
			t.Errorf("manifest with media type %s served as %q", img.MediaType, ct)
		}
		if string(body) != string(img.Manifest) {
			t.Error("manifest bytes differ")
		}
	} else if _, perr := harness.ParseOCIError(body); perr != nil {
		t.Errorf("mistyped manifest refused without an OCI error: %d %v", st, perr)
	}
}

// Manifests larger than limits.maxManifestSize are refused and not stored.
func TestOversizedManifestRefused(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{Edit: func(doc map[string]any) {
		doc["limits"] = map[string]any{"maxManifestSize": "4KiB"}
	}})
	ann := map[string]string{}
	for i := range 64 {
		ann["org.example.padding."+strconv.Itoa(i)] = strings.Repeat("x", 100)
	}
	big := f.up.PushArtifact(t, "open/big", harness.ArtifactOptions{ArtifactType: "application/vnd.example", Annotations: ann, Tag: "v1"})
	if len(big.Manifest) <= 4096 {
		t.Fatalf("manifest is only %d bytes", len(big.Manifest))
	}
	for _, r := range []string{"v1", big.Digest} {
		st, _, body, err := harness.Get(ctx(t), f.url("open/big/manifests/"+r), map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
		if err != nil {
			t.Fatal(err)
		}
		if st == http.StatusOK || string(body) == string(big.Manifest) {
			t.Errorf("oversized manifest %s served (%d)", r, st)
			continue
		}
		if _, perr := harness.ParseOCIError(body); perr != nil {
			t.Errorf("oversized manifest %s: %d %v", r, st, perr)
		}
	}
	if files := filesWithDigest(t, f.px.StoragePath, big.Digest); len(files) > 0 {
		t.Errorf("oversized manifest stored: %v", files)
	}
	// The small allowed image still works.
	if d, err := harness.GGCRPull(f.ref("open/app:v1")); err != nil || d != f.allowed.Digest {
		t.Errorf("normal pull: %s %v", d, err)
	}
}
