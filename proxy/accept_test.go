package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// answer is what a registry said to one manifest request.
type answer struct {
	status                   int
	contentType, digest, len string
	body                     []byte
	code                     string // OCI error code
}

func manifestRequest(t *testing.T, method, url string, accept []string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"),
		digest: resp.Header.Get("Docker-Content-Digest"), len: resp.Header.Get("Content-Length")}
	if resp.StatusCode == http.StatusOK {
		a.body = b
		return a
	}
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(b, &e) == nil && len(e.Errors) > 0 {
		a.code = e.Errors[0].Code
	}
	return a
}

// pushList pushes a manifest list (Docker) or index (OCI) with a linux/amd64
// and a linux/arm64 child of the matching image type.
func pushList(t *testing.T, host, repo string, docker bool) v1.Hash {
	t.Helper()
	imt, mmt := types.OCIImageIndex, types.OCIManifestSchema1
	if docker {
		imt, mmt = types.DockerManifestList, types.DockerManifestSchema2
	}
	idx := mutate.IndexMediaType(empty.Index, imt)
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "amd64"}} {
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, mmt)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	ref, _ := name.ParseReference(host+"/"+repo, name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	return d
}

// TestManifestAcceptNegotiation: for every manifest type, Accept header,
// method and reference kind, pullgate answers what its upstream (a real
// distribution registry) answers to the same request — status, error code,
// media type, digest, length and bytes — whether the manifest is not cached
// yet, cached in memory, or cached in the store of a restarted proxy. Only a
// request without any Accept header differs: pullgate serves the stored
// manifest (distribution answers 404 for OCI types).
func TestManifestAcceptNegotiation(t *testing.T) {
	up := start(t, nil)
	dockerImg, _ := random.Image(512, 1) // go-containerregistry images are Docker schema 2
	ociImg := mutate.MediaType(dockerImg, types.OCIManifestSchema1)
	manifests := map[string]v1.Hash{
		"docker-manifest": push(t, up.up.Host, "acc/docker-manifest:v1", dockerImg),
		"oci-manifest":    push(t, up.up.Host, "acc/oci-manifest:v1", ociImg),
		"docker-list":     pushList(t, up.up.Host, "acc/docker-list:v1", true),
		"oci-index":       pushList(t, up.up.Host, "acc/oci-index:v1", false),
	}
	const (
		ociM = "application/vnd.oci.image.manifest.v1+json"
		ociI = "application/vnd.oci.image.index.v1+json"
		dkrM = "application/vnd.docker.distribution.manifest.v2+json"
		dkrL = "application/vnd.docker.distribution.manifest.list.v2+json"
	)
	accepts := map[string][]string{
		"oci-manifest":         {ociM},
		"oci-index":            {ociI},
		"oci-both-two-headers": {ociI, ociM}, // what the conformance suite sends
		"docker-manifest":      {dkrM},
		"docker-list":          {dkrL},
		"all":                  {ociM + ", " + ociI + ", " + dkrM + ", " + dkrL},
		"all-with-params":      {ociM + ";q=0.9 , " + ociI + "; q=0," + dkrM + ";q=0.5, " + dkrL},
		"wildcard":             {"*/*"},
		"browser":              {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"malformed-and-oci":    {"not a type;;, " + ociM},
		"empty":                {""},
	}
	type result struct{ uncached, mem, store answer }
	for kind, dgst := range manifests {
		repo := "acc/" + kind
		for an, accept := range accepts {
			for _, ref := range []string{"v1", dgst.String()} {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					path := "/v2/" + repo + "/manifests/" + ref
					want := manifestRequest(t, method, up.up.URL+path, accept)
					// A fresh proxy on its own store: nothing cached.
					e := &env{up: up.up, dir: t.TempDir()}
					e.open(t)
					pu := e.proxy.URL + "/v2/upstream.local/" + path[len("/v2/"):]
					var got result
					got.uncached = manifestRequest(t, method, pu, accept)
					got.mem = manifestRequest(t, method, pu, accept)
					e.shut()
					e.open(t) // restarted on the same store
					pu = e.proxy.URL + "/v2/upstream.local/" + path[len("/v2/"):]
					got.store = manifestRequest(t, method, pu, accept)
					e.shut()
					for phase, g := range map[string]answer{"uncached": got.uncached, "cached": got.mem, "cached in the store": got.store} {
						same := g.status == want.status && g.code == want.code
						if want.status == http.StatusOK {
							same = same && g.contentType == want.contentType && g.digest == want.digest &&
								g.len == want.len && string(g.body) == string(want.body)
						}
						if !same {
							t.Errorf("%s %s (%s), Accept %s %q, %s: pullgate answered %d %s %q %s len %s, the upstream %d %s %q %s len %s",
								method, repo, refKind(ref), an, accept, phase,
								g.status, g.code, g.contentType, g.digest, g.len,
								want.status, want.code, want.contentType, want.digest, want.len)
						}
					}
				}
			}
		}
		// No Accept header: the stored manifest, whatever its type.
		for _, ref := range []string{"v1", dgst.String()} {
			e := &env{up: up.up, dir: t.TempDir()}
			e.open(t)
			pu := e.proxy.URL + "/v2/upstream.local/" + repo + "/manifests/" + ref
			for _, phase := range []string{"uncached", "cached"} {
				g := manifestRequest(t, http.MethodGet, pu, nil)
				if g.status != http.StatusOK || g.digest != dgst.String() || digestOfBytes(g.body) != dgst.String() {
					t.Errorf("GET %s (%s) without Accept, %s: %d %s %q, want the stored manifest %s", repo, refKind(ref), phase, g.status, g.code, g.digest, dgst)
				}
			}
			e.shut()
		}
	}
}

// shut closes e's proxy before the test ends (many are opened here).
func (e *env) shut() {
	e.proxy.Close()
	_ = e.srv.Close()
}

func refKind(ref string) string {
	if strings.Contains(ref, ":") {
		return "by digest"
	}
	return "by tag"
}

func digestOfBytes(b []byte) string {
	h, _, err := v1.SHA256(strings.NewReader(string(b)))
	if err != nil {
		return ""
	}
	return h.String()
}
