// Package e2e drives pullgate end to end: a real upstream registry (in-process
// distribution/v3, or distribution's registry binary), the proxy opened from
// a generated config, and real clients (go-containerregistry, oras-go, crane,
// skopeo, oras, containerd) pulling through it.
package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// fixture is one upstream with an allowed and a denied image, and the proxy.
type fixture struct {
	up      *harness.Upstream
	px      *gate.Proxy
	allowed *harness.Image // open/app:v1
	denied  *harness.Image // blocked/app:v1; Layers[1] == allowed.Layers[0]
}

// newFixture starts an upstream, seeds open/app:v1 (allowed) and
// blocked/app:v1 (denied by rule gate.DenyRule; its first layer is its own,
// its second is the allowed image's first layer) and opens the proxy.
func newFixture(t *testing.T, uo harness.UpstreamOptions, po gate.Options) *fixture {
	t.Helper()
	up := harness.StartUpstream(t, uo)
	f := &fixture{up: up}
	allowedImg := harness.RandomImage(t, harness.ImageOptions{Layers: 2})
	f.allowed = up.PushV1Image(t, "open/app", "v1", allowedImg)
	deniedImg := harness.RandomImage(t, harness.ImageOptions{Layers: 1})
	shared, err := allowedImg.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if deniedImg, err = mutate.AppendLayers(deniedImg, shared[0]); err != nil {
		t.Fatal(err)
	}
	f.denied = up.PushV1Image(t, "blocked/app", "v1", deniedImg)
	po.Upstreams = append([]*harness.Upstream{up}, po.Upstreams...)
	f.px = gate.Start(t, po)
	up.Reg.ResetCounts()
	return f
}

// ref is the client reference through the proxy.
func (f *fixture) ref(repoAndRef string) string { return f.px.Ref(f.up, repoAndRef) }

// url is http://<proxy>/v2/<upstream>/<rest>.
func (f *fixture) url(rest string) string {
	return f.px.URL + "/v2/" + f.up.Name + "/" + rest
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// expectOCIError checks status and error code of a raw response.
func expectOCIError(t *testing.T, what string, status int, body []byte, wantStatus int, wantCodes ...string) harness.OCIError {
	t.Helper()
	if status != wantStatus {
		t.Errorf("%s: status %d, want %d; body %q", what, status, wantStatus, trunc(body))
	}
	e, err := harness.ParseOCIError(body)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return e
	}
	for _, c := range wantCodes {
		if e.Code == c {
			return e
		}
	}
	t.Errorf("%s: error code %q, want one of %v (message %q)", what, e.Code, wantCodes, e.Message)
	return e
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// filesWithDigest lists files under dir whose content has the given digest.
func filesWithDigest(t *testing.T, dir, digest string) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && harness.Sha256(b) == digest {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func contains(haystack, needle string) bool { return strings.Contains(haystack, needle) }

type hasher struct{ h hash.Hash }

func newHasher() *hasher                      { return &hasher{sha256.New()} }
func (h *hasher) Write(p []byte) (int, error) { return h.h.Write(p) }
func (h *hasher) digest() string              { return "sha256:" + hex.EncodeToString(h.h.Sum(nil)) }
