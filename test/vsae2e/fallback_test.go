package vsae2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/vsa"
)

// fallbackTag is the referrers tag schema's tag of d.
func fallbackTag(d string) string { return strings.Replace(d, "sha256:", "sha256-", 1) }

// noReferrersAPI fronts the proxy as a registry without the referrers API
// (404, as distribution before 3): clients built on go-containerregistry
// (cosign, pullgate vsa check) then read the sha256-<hex> tag instead.
func noReferrersAPI(t *testing.T, g *gateway) string {
	t.Helper()
	u, _ := url.Parse(g.http.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") {
			http.Error(w, `{"errors":[{"code":"NOT_FOUND","message":"no referrers API"}]}`, http.StatusNotFound)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return strings.TrimPrefix(front.URL, "http://")
}

// fallbackIndex reads the referrers tag of repo@d through the proxy, by
// GET and HEAD, and checks that both describe the bytes GET served.
func (g *gateway) fallbackIndex(repo, d string) (int, ocispec.Index) {
	g.t.Helper()
	url := g.http.URL + "/v2/" + g.u.Name + "/" + repo + "/manifests/" + fallbackTag(d)
	hdr := map[string]string{"Accept": ocispec.MediaTypeImageIndex + ", " + ocispec.MediaTypeImageManifest}
	st, h, b, err := harness.Get(g.t.Context(), url, hdr)
	if err != nil {
		g.t.Fatal(err)
	}
	hst, hh, _, err := harness.Do(g.t.Context(), http.MethodHead, url, hdr, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	if hst != st {
		g.t.Fatalf("referrers tag of %s: GET %d, HEAD %d", d, st, hst)
	}
	var idx ocispec.Index
	if st != http.StatusOK {
		return st, idx
	}
	if dg := h.Get("Docker-Content-Digest"); dg != digest.FromBytes(b).String() || hh.Get("Docker-Content-Digest") != dg ||
		h.Get("Content-Type") != ocispec.MediaTypeImageIndex || hh.Get("Content-Type") != ocispec.MediaTypeImageIndex ||
		hh.Get("Content-Length") != h.Get("Content-Length") {
		g.t.Fatalf("referrers tag of %s: GET %v, HEAD %v, body digest %s", d, h, hh, digest.FromBytes(b))
	}
	if err := json.Unmarshal(b, &idx); err != nil || idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex {
		g.t.Fatalf("referrers tag of %s: %v %s", d, err, b)
	}
	return st, idx
}

func digests(descs []ocispec.Descriptor) []digest.Digest {
	var out []digest.Digest
	for _, d := range descs {
		out = append(out, d.Digest)
	}
	return out
}

// upstreamReferrers are the manifests the upstream lists for repo@d (its
// referrers API, or its sha256-<hex> tag).
func upstreamReferrers(t *testing.T, u *harness.Upstream, repo, d string, api bool) []digest.Digest {
	t.Helper()
	path := "/manifests/" + fallbackTag(d)
	if api {
		path = "/referrers/" + d
	}
	st, _, b, err := harness.Get(t.Context(), u.URL+"/v2/"+repo+path, map[string]string{"Accept": ocispec.MediaTypeImageIndex})
	if err != nil || st != http.StatusOK {
		t.Fatalf("upstream %s: %d %v", path, st, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	return digests(idx.Manifests)
}

// TestProxyVSAFallbackTag: the sha256-<hex> referrers tag of an allowed
// digest with a VSA is pullgate's own index: what the upstream's index
// under that tag lists (cosign v3's signature, attached with the tag
// fallback to an upstream without the referrers API) and the VSA, or the
// VSA alone when the upstream has no such tag (an upstream with the API).
// Real clients that read the tag find the VSA: oras discover with the tag
// schema, and regctl artifact list, cosign v3 verify-attestation, cosign
// v3 verify and pullgate vsa check in front of which the referrers API
// answers 404. A denied
// digest's tag is answered as before (refused, or not found), and cosign
// v2's legacy .sig tag still verifies through pullgate.
func TestProxyVSAFallbackTag(t *testing.T) {
	for _, c := range []struct {
		name string
		api  bool
	}{{"upstream without referrers API", false}, {"upstream with referrers API", true}} {
		t.Run(c.name, func(t *testing.T) {
			e, dir, _ := proxyEnv(t, c.api)
			good := e.signedImage("app/good")
			bad := e.u.PushImage(t, "app/unsigned", "1.0", harness.ImageOptions{})
			up := upstreamReferrers(t, e.u, good.Repo, good.Digest, c.api)
			if len(up) != 1 {
				t.Fatalf("upstream lists %v, want cosign's signature", up)
			}
			// A referrer of the denied image, in its own referrers tag
			// when the upstream has no API.
			e.orasAttach(bad, e.sign(e.summary(bad, time.Now()), otherKey(t)))

			g := startGateway(t, dir, e.u)
			if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
				t.Fatalf("signed image: status %d", st)
			}
			v := g.waitVSA(good.Repo, good.Digest, "")
			st, idx := g.fallbackIndex(good.Repo, good.Digest)
			if st != http.StatusOK {
				t.Fatalf("referrers tag of the allowed image: status %d", st)
			}
			want := []digest.Digest{v.Digest}
			if !c.api {
				want = append(up, v.Digest)
			}
			if got := digests(idx.Manifests); !slices.Equal(got, want) {
				t.Fatalf("referrers tag lists %v, want %v", got, want)
			}
			if d := idx.Manifests[len(idx.Manifests)-1]; d.Annotations["dev.sigstore.bundle.predicateType"] != vsa.PredicateType || d.ArtifactType == "" {
				t.Fatalf("VSA descriptor %+v", d)
			}

			// Denied: as before (the upstream's tag refused, or none).
			wantBad := http.StatusNotFound
			if !c.api {
				wantBad = http.StatusForbidden
			}
			if st, _ := g.fallbackIndex(bad.Repo, bad.Digest); st != wantBad {
				t.Fatalf("referrers tag of the denied image: status %d, want %d", st, wantBad)
			}

			// oras, reading the tag schema.
			out, code := e.run(tools.Need(t, "oras"), nil, "discover", "--plain-http", "--distribution-spec", "v1.1-referrers-tag",
				"--format", "json", g.ref(good.Repo, good.Digest))
			if code != 0 {
				t.Fatalf("oras discover: exit %d\n%s", code, out)
			}
			for _, d := range want {
				if !strings.Contains(out, d.String()) {
					t.Fatalf("oras discover lacks %s:\n%s", d, out)
				}
			}

			// Clients that fall back to the tag when the API answers 404.
			front := noReferrersAPI(t, g)
			ref := front + "/" + e.u.Name + "/" + good.Repo + "@" + good.Digest
			out, code = e.run(tools.Need(t, "regctl"), nil, "artifact", "list", "--host", "reg="+front+",tls=disabled", "--format", "{{jsonPretty .}}", ref)
			if code != 0 {
				t.Fatalf("regctl artifact list: exit %d\n%s", code, out)
			}
			for _, d := range want {
				if !strings.Contains(out, d.String()) {
					t.Fatalf("regctl artifact list lacks %s:\n%s", d, out)
				}
			}
			hex := strings.TrimPrefix(good.Digest, "sha256:")
			if out, code := e.run(pullgateBin, nil, "vsa", "check", ref, "--key", "vsa.pub", "--verifier-id", verifierID, "--max-age", "1h", "--plain-http"); code != 0 {
				t.Fatalf("pullgate vsa check through the tag: exit %d\n%s", code, out)
			}
			if out := e.cosign("cosign3", "verify-attestation", "--key", "vsa.pub", "--type", vsa.PredicateType,
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", ref); !strings.Contains(out, hex) {
				t.Fatalf("cosign3 verify-attestation through the tag lacks the digest:\n%s", out)
			}
			if !c.api {
				// The upstream's signature is still there.
				if out := e.cosign("cosign3", "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true",
					"--allow-http-registry=true", "--allow-insecure-registry=true", ref); !strings.Contains(out, hex) {
					t.Fatalf("cosign3 verify through the tag lacks the digest:\n%s", out)
				}
				return
			}
			// cosign v2's legacy tag (sha256-<hex>.sig) is no referrers tag.
			legacy := e.u.PushImage(t, "app/legacy", "1.0", harness.ImageOptions{})
			e.cosign("cosign2", "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry=true",
				"--allow-insecure-registry=true", "-y", e.u.Ref(legacy.Repo+"@"+legacy.Digest))
			if out := e.cosign("cosign2", "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true",
				"--allow-http-registry=true", "--allow-insecure-registry=true", g.ref(legacy.Repo, legacy.Digest)); !strings.Contains(out, strings.TrimPrefix(legacy.Digest, "sha256:")) {
				t.Fatalf("cosign2 verify of a .sig signature through pullgate lacks the digest:\n%s", out)
			}
		})
	}
}

// TestProxyVSAFallbackTagCached: the upstream's sha256-<hex> tag of a
// digest with a VSA is asked once per tag TTL (30s by default, as a tag's
// resolution), however many clients read the tag through pullgate; a
// missing tag (an upstream with the referrers API) too. What of the
// listing is served is still decided on each request. A failed request
// (bytes that do not match the upstream's digest) is not kept: the next
// read asks again and lists the upstream's signature.
func TestProxyVSAFallbackTagCached(t *testing.T) {
	for _, c := range []struct {
		name string
		api  bool
	}{{"upstream without referrers API", false}, {"upstream with referrers API", true}} {
		t.Run(c.name, func(t *testing.T) {
			e, dir, _ := proxyEnv(t, c.api)
			good := e.signedImage("app/good")
			clk := newClock()
			g := startGatewayAt(t, dir, e.u, clk.Now)
			if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
				t.Fatalf("signed image: status %d", st)
			}
			v := g.waitVSA(good.Repo, good.Digest, "")
			want := []digest.Digest{v.Digest}
			path := good.Repo + "/manifests/" + fallbackTag(good.Digest)
			if !c.api {
				want = append(upstreamReferrers(t, e.u, good.Repo, good.Digest, false), v.Digest)
				_, h, _, err := harness.Do(t.Context(), http.MethodHead, e.u.URL+"/v2/"+path, map[string]string{"Accept": ocispec.MediaTypeImageIndex}, nil)
				if err != nil {
					t.Fatal(err)
				}
				e.u.Liar.LieManifest(h.Get("Docker-Content-Digest"), []byte(`{"schemaVersion":2,"manifests":[]}`))
				if st, _ := g.fallbackIndex(good.Repo, good.Digest); st == http.StatusOK {
					t.Fatal("referrers tag served from an upstream answer that does not match its digest")
				}
				e.u.Liar.Honest()
			}
			asked := func() int { return e.u.Count("", path) }
			before := asked()
			read := func() {
				t.Helper()
				st, idx := g.fallbackIndex(good.Repo, good.Digest) // a GET and a HEAD
				if got := digests(idx.Manifests); st != http.StatusOK || !slices.Equal(got, want) {
					t.Fatalf("referrers tag: status %d, lists %v, want %v", st, got, want)
				}
			}
			for range 10 {
				read()
			}
			if n := asked() - before; n != 1 {
				t.Fatalf("20 reads of the referrers tag within the tag TTL: the upstream was asked %d times for it, want 1", n)
			}
			clk.Advance(31 * time.Second) // past the tag TTL
			read()
			read()
			if n := asked() - before; n != 2 {
				t.Fatalf("after the tag TTL: the upstream was asked %d times for the tag, want 2", n)
			}
		})
	}
}
