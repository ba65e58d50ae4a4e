package verifybench

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify/attest"
)

// BenchmarkVSAObjectWarm: GET by digest of the manifest of the VSA the
// proxy signed for an allowed image, through the HTTP handler, the
// subject's verdict warm (a VSA's objects are served only while its
// subject's current decision is one a VSA is signed for).
func BenchmarkVSAObjectWarm(b *testing.B) {
	w := newWarmProxyWith(b, true)
	refs := "/v2/upstream.local/app/web/referrers/" + w.digest + "?artifactType=" + url.QueryEscape(attest.BundleMediaType)
	var vsaManifest string
	for deadline := time.Now().Add(time.Minute); vsaManifest == "" && time.Now().Before(deadline); {
		rec := w.get(refs)
		var idx ocispec.Index
		if rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &idx) == nil && len(idx.Manifests) > 0 {
			vsaManifest = idx.Manifests[len(idx.Manifests)-1].Digest.String()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if vsaManifest == "" {
		b.Fatal("no VSA listed")
	}
	w.benchGet(b, "/v2/upstream.local/app/web/manifests/"+vsaManifest)
}
