package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/containerdtest"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// A denied pull fails in every client, and the client's error output names
// the rule that denied it (the repository path "blocked/app" does not contain
// the rule name, so the name can only come from pullgate's answer).
func TestDeniedPullReasonVisible(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	ref := f.ref("blocked/app:v1")
	rule := gate.DenyRule

	t.Run("raw", func(t *testing.T) {
		for _, r := range []string{"v1", f.denied.Digest} {
			st, _, body, err := harness.Get(ctx(t), f.url("blocked/app/manifests/"+r), nil)
			if err != nil {
				t.Fatal(err)
			}
			e := expectOCIError(t, "GET manifest "+r, st, body, http.StatusForbidden, "DENIED")
			if !strings.Contains(e.Message, rule) {
				t.Errorf("DENIED message %q does not name rule %s", e.Message, rule)
			}
		}
		st, _, _, err := harness.Do(ctx(t), http.MethodHead, f.url("blocked/app/manifests/v1"), nil, nil)
		if err != nil || st != http.StatusForbidden {
			t.Errorf("HEAD denied manifest: %d %v", st, err)
		}
	})
	t.Run("ggcr-remote", func(t *testing.T) {
		_, err := harness.GGCRPull(ref)
		if err == nil || !strings.Contains(err.Error(), rule) || !strings.Contains(err.Error(), "DENIED") {
			t.Fatalf("ggcr error %v does not show DENIED and %s", err, rule)
		}
	})
	t.Run("oras-go", func(t *testing.T) {
		_, err := harness.OrasGoPull(ctx(t), ref)
		if err == nil || !strings.Contains(err.Error(), rule) {
			t.Fatalf("oras-go error %v does not name %s", err, rule)
		}
	})
	t.Run("crane", func(t *testing.T) {
		res, _ := harness.CranePull(t, ref, "")
		t.Logf("crane pull stderr on a denial: %q", strings.TrimSpace(res.Stderr))
		if res.Err == nil || !strings.Contains(res.Stderr, rule) {
			t.Fatalf("crane pull stderr does not name %s: %v", rule, res)
		}
	})
	t.Run("skopeo", func(t *testing.T) {
		res, _ := harness.SkopeoCopy(t, ref)
		t.Logf("skopeo copy stderr on a denial: %q", strings.TrimSpace(res.Stderr))
		if res.Err == nil || !strings.Contains(res.Stderr, rule) {
			t.Fatalf("skopeo copy stderr does not name %s: %v", rule, res)
		}
		res = harness.SkopeoInspect(t, ref)
		if res.Err == nil || !strings.Contains(res.Stderr, rule) {
			t.Fatalf("skopeo inspect stderr does not name %s: %v", rule, res)
		}
	})
	t.Run("oras", func(t *testing.T) {
		res, _ := harness.OrasPull(t, ref)
		t.Logf("oras pull stderr on a denial: %q", strings.TrimSpace(res.Stderr))
		if res.Err == nil || !strings.Contains(res.Stderr, rule) {
			t.Fatalf("oras pull stderr does not name %s: %v", rule, res)
		}
	})
	t.Run("regctl", func(t *testing.T) {
		res, _ := harness.RegctlImageCopy(t, ref)
		t.Logf("regctl image copy stderr on a denial: %q", strings.TrimSpace(res.Stderr))
		if res.Err == nil || !strings.Contains(res.Output(), rule) || !strings.Contains(res.Output(), "DENIED") {
			t.Fatalf("regctl image copy output does not show DENIED and %s: %v", rule, res)
		}
	})
	t.Run("containerd", func(t *testing.T) {
		d := containerdtest.Start(t)
		hosts := d.Mirror(t, f.up.Name, f.px.Host)
		cref := f.up.Name + "/blocked/app:v1"
		res := d.Pull(t, hosts, cref)
		if res.Err == nil {
			t.Fatalf("containerd pulled a denied image: %v", res)
		}
		t.Logf("containerd error text on a denied pull: %q", strings.TrimSpace(res.Stderr))
		if !strings.Contains(res.Stderr, rule) {
			t.Errorf("ctr stderr does not name %s: containerd resolves with HEAD and prints only the response's status line, "+
				"so the 403 needs a reason phrase naming the rule (see containerdtest.TestDeniedReasonPhraseIsShown): %q", rule, res.Stderr)
		}
		if d.HasContent(t, f.denied.Layers[0].Digest) {
			t.Fatal("containerd holds a layer of the denied image")
		}
	})

	// The proxy never fetched the denied image's own layer from upstream.
	if n := f.up.Count(http.MethodGet, "/blobs/"+f.denied.Layers[0].Digest); n != 0 {
		t.Errorf("upstream served the denied layer %d times", n)
	}
	var denies int
	for _, e := range f.px.Audit(t) {
		if e.Decision == "deny" && e.Rule == rule && strings.HasSuffix(e.Repository, "blocked/app") {
			denies++
			if e.Digest != "" && e.Digest != f.denied.Digest {
				t.Errorf("deny audit digest %s, want %s", e.Digest, f.denied.Digest)
			}
		}
	}
	if denies == 0 {
		t.Errorf("no audit line {decision: deny, rule: %s, repository: .../blocked/app}: %v", rule, f.px.Audit(t))
	}
}

// A denied image's blobs are refused by digest, including a layer the proxy
// holds because an allowed image shares it, and a blob of the denied image
// that also sits (unreferenced) in an allowed repository.
func TestDeniedBlobByDigest(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	own, shared := f.denied.Layers[0], f.denied.Layers[1]
	if shared.Digest != f.allowed.Layers[0].Digest {
		t.Fatal("fixture: layers not shared")
	}
	// Pull the allowed image: the shared layer is now verified and cached.
	if d, err := harness.GGCRPull(f.ref("open/app:v1")); err != nil || d != f.allowed.Digest {
		t.Fatalf("allowed pull: %s %v", d, err)
	}
	for _, b := range []harness.Blob{own, shared, f.denied.Config} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			st, _, body, err := harness.Do(ctx(t), m, f.url("blocked/app/blobs/"+b.Digest), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if m == http.MethodHead {
				if st != http.StatusForbidden {
					t.Errorf("HEAD blocked/app blob %s: %d, want 403", b.Digest, st)
				}
				continue
			}
			expectOCIError(t, "GET blocked/app blob "+b.Digest, st, body, http.StatusForbidden, "DENIED")
		}
	}
	if n := f.up.Count("", "/v2/blocked/app/blobs/"); n != 0 {
		t.Errorf("proxy asked upstream for %d blobs of the denied repository", n)
	}

	// The denied image's own layer, and an unrelated blob, uploaded into the
	// allowed repository without any manifest referencing them: the
	// repository is reachable, but no allowed manifest references the blob.
	f.up.PushBlob(t, "open/app", own.Data)
	dangling := f.up.PushBlob(t, "open/app", []byte("dangling blob nobody references"))
	for _, d := range []string{own.Digest, dangling} {
		st, _, body, err := harness.Get(ctx(t), f.url("open/app/blobs/"+d), nil)
		if err != nil {
			t.Fatal(err)
		}
		if st == http.StatusOK || harness.Sha256(body) == d {
			t.Errorf("GET open/app blob %s not referenced by an allowed manifest: served (%d)", d, st)
			continue
		}
		expectOCIError(t, "GET unreferenced blob in allowed repo", st, body, st, "DENIED", "BLOB_UNKNOWN")
		if st != http.StatusForbidden && st != http.StatusNotFound {
			t.Errorf("unreferenced blob: status %d, want 403 or 404", st)
		}
	}
	// A cached, verified blob of open/app is not served through another
	// allowed repository that has no allowed manifest referencing it.
	st, _, body, err := harness.Get(ctx(t), f.url("open/other/blobs/"+f.allowed.Layers[0].Digest), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st == http.StatusOK || harness.Sha256(body) == f.allowed.Layers[0].Digest {
		t.Errorf("cached blob of open/app served through open/other (%d)", st)
	}
	// ...while the allowed image's own blobs are served.
	for _, b := range f.allowed.Layers {
		st, h, body, err := harness.Get(ctx(t), f.url("open/app/blobs/"+b.Digest), nil)
		if err != nil || st != http.StatusOK || harness.Sha256(body) != b.Digest {
			t.Errorf("allowed blob %s: %d %v", b.Digest, st, err)
		}
		if h.Get("Docker-Content-Digest") != "" && h.Get("Docker-Content-Digest") != b.Digest {
			t.Errorf("Docker-Content-Digest %s", h.Get("Docker-Content-Digest"))
		}
	}
	// Range on a verified, cached blob.
	b := f.allowed.Layers[0]
	st, _, body, err = harness.Get(ctx(t), f.url("open/app/blobs/"+b.Digest), map[string]string{"Range": "bytes=10-19"})
	if err != nil || st != http.StatusPartialContent || string(body) != string(b.Data[10:20]) {
		t.Errorf("Range bytes=10-19: %d %v %q", st, err, body)
	}
}
