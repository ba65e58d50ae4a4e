package upstream_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"

	testreg "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
)

// A manifest addressed by a sha512 digest resolves to that digest, whether
// the upstream's HEAD names it in Docker-Content-Digest, names its sha256,
// or sends none: pullgate asks an upstream to confirm a cached manifest
// exists in a repository by asking it to resolve the digest (distribution
// v3 stores manifests by sha256 only, so the upstream here serves one
// sha512 manifest itself).
func TestResolveSHA512Digest(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	d := digest.SHA512.FromBytes(manifest)
	for _, header := range []digest.Digest{d, "", digest.SHA256.FromBytes(manifest)} {
		t.Run("Docker-Content-Digest="+string(header), func(t *testing.T) {
			reg := start(t, testreg.Options{Wrap: func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/v2/rf/sha512/manifests/"+d.String() {
						next.ServeHTTP(w, r)
						return
					}
					w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					w.Header().Set("Content-Length", strconv.Itoa(len(manifest)))
					if header != "" {
						w.Header().Set("Docker-Content-Digest", header.String())
					}
					if r.Method == http.MethodGet {
						_, _ = w.Write(manifest)
					}
				})
			}})
			desc, err := newClient(t, reg, nil).Resolve(context.Background(), "rf/sha512", d.String(), maxManifest)
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != d {
				t.Fatalf("resolved %s, want %s", desc.Digest, d)
			}
		})
	}
}
