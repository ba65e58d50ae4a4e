package proxy_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// uploadBlob pushes b to the upstream registry under dgst (any algorithm
// distribution verifies: sha256 or sha512), by a monolithic upload.
func uploadBlob(t *testing.T, base, repo string, dgst digest.Digest, b []byte) {
	t.Helper()
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("upload start: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+dgst.String(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s: %d", dgst, resp.StatusCode)
	}
}

// An image whose manifest and blobs are addressed by sha512 is pulled
// through the proxy, and pulled again from its store after a restart with
// the upstream gone: blobs first (the links recorded before the restart,
// sha512 on both ends, are what grants them), then the manifest. Bytes and
// digests are those pushed.
//
// distribution (v3.1.2) verifies and links blobs uploaded by sha512, and
// serves them by that digest; a manifest PUT by a sha512 reference is
// refused (it digests manifests with sha256 only: DIGEST_INVALID). The
// manifest bytes are therefore stored in the registry as a blob under
// their sha512 digest and served at manifests/<sha512> from there.
func TestSHA512ImageAcrossRestart(t *testing.T) {
	const repo = "app/sha512"
	var served atomic.Value // the manifest digest served from a blob
	served.Store(digest.Digest(""))
	mt := ocispec.MediaTypeImageManifest
	// Serve GET/HEAD manifests/<sha512> from the registry's blob of that
	// digest, with the manifest's media type and digest.
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			manifestDigest := served.Load().(digest.Digest)
			if manifestDigest != "" && r.URL.Path == "/v2/"+repo+"/manifests/"+manifestDigest.String() && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/v2/" + repo + "/blobs/" + manifestDigest.String()
				r2.RequestURI = ""
				next.ServeHTTP(&manifestHeaders{ResponseWriter: w, mt: mt, dgst: manifestDigest}, r2)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := start(t, wrap)

	sha512Of := func(b []byte) digest.Digest { return digest.SHA512.FromBytes(b) }
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := make([]byte, 256<<10)
	rand.Read(layer)
	blobs := map[digest.Digest][]byte{sha512Of(config): config, sha512Of(layer): layer}
	for d, b := range blobs {
		uploadBlob(t, e.up.URL, repo, d, b)
	}
	m := ocispec.Manifest{MediaType: mt,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: sha512Of(config), Size: int64(len(config))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: sha512Of(layer), Size: int64(len(layer))}}}
	m.SchemaVersion = 2
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	md := sha512Of(body)
	req, _ := http.NewRequest(http.MethodPut, e.up.URL+"/v2/"+repo+"/manifests/"+md.String(), bytes.NewReader(body))
	req.Header.Set("Content-Type", mt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		t.Log("the upstream stored the manifest by its sha512 digest")
	} else {
		t.Logf("the upstream refused a manifest PUT by sha512 (%d): serving it from a blob", resp.StatusCode)
		uploadBlob(t, e.up.URL, repo, md, body)
		served.Store(md)
	}

	base := func() string { return e.proxy.URL + "/v2/upstream.local/" + repo }
	checkManifest := func(when string) {
		t.Helper()
		resp, b := get(t, base()+"/manifests/"+md.String())
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, body) || resp.Header.Get("Docker-Content-Digest") != md.String() {
			t.Fatalf("%s: manifest by sha512: %d, digest %q, %d bytes (want 200, %s, the bytes pushed): %.300s",
				when, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), len(b), md, b)
		}
	}
	checkBlobs := func(when string) {
		t.Helper()
		for d, want := range blobs {
			st, b, err := fetchBlob(t, base()+"/blobs/"+d.String(), nil)
			if err != nil || st != http.StatusOK || !bytes.Equal(b, want) || sha512Of(b) != d {
				t.Errorf("%s: blob %s: %d, %d bytes, %v (want 200, the %d bytes pushed): %.300s", when, d, st, len(b), err, len(want), b)
			}
		}
	}
	checkManifest("first pull")
	checkBlobs("first pull")

	// Restart on the same store, the upstream gone: everything comes from
	// the store and its records.
	e.proxy.Close()
	e.srv.Close()
	e.up.Close()
	e.open(t)
	checkBlobs("after a restart, blobs first")
	checkManifest("after a restart")
	checkBlobs("after a restart, again")
}

// manifestHeaders answers with a manifest's media type and digest.
type manifestHeaders struct {
	http.ResponseWriter
	mt   string
	dgst digest.Digest
	done bool
}

func (w *manifestHeaders) WriteHeader(code int) {
	if !w.done {
		w.done = true
		if code == http.StatusOK {
			w.Header().Set("Content-Type", w.mt)
			w.Header().Set("Docker-Content-Digest", w.dgst.String())
			w.Header().Del("Etag")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *manifestHeaders) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}
