package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

const (
	sbomType = "application/vnd.pullgate.test.sbom+json"
	sigType  = "application/vnd.pullgate.test.signature"
)

// GET /v2/<name>/referrers/<digest> through the proxy, for an upstream with
// the referrers API and for one with only the sha256-<hex> tag fallback:
// same answer, artifactType filter with OCI-Filters-Applied, real clients
// (oras discover, oras-go) see the referrers.
func TestReferrersBothUpstreamStyles(t *testing.T) {
	for _, api := range []bool{true, false} {
		style := map[bool]string{true: "referrers-api", false: "tag-fallback"}[api]
		t.Run(style, func(t *testing.T) {
			f := newFixture(t, harness.UpstreamOptions{Referrers: api}, gate.Options{})
			img := f.allowed
			sbom := f.up.PushArtifact(t, "open/app", harness.ArtifactOptions{ArtifactType: sbomType, Subject: img.Descriptor(),
				Annotations: map[string]string{"org.example.kind": "sbom"}})
			sig := f.up.PushArtifact(t, "open/app", harness.ArtifactOptions{ArtifactType: sigType, Subject: img.Descriptor()})
			f.up.Reg.ResetCounts()

			idx := getReferrers(t, f, "open/app", img.Digest, "")
			want := map[string]string{sbom.Digest: sbomType, sig.Digest: sigType}
			checkReferrers(t, idx, want)
			for _, d := range idx.Manifests {
				if d.Digest.String() == sbom.Digest && d.Annotations["org.example.kind"] != "sbom" {
					t.Errorf("referrer annotations lost: %v", d.Annotations)
				}
				if d.Size != int64(len(map[string][]byte{sbom.Digest: sbom.Manifest, sig.Digest: sig.Manifest}[d.Digest.String()])) {
					t.Errorf("referrer %s size %d", d.Digest, d.Size)
				}
			}
			if api && f.up.Count(http.MethodGet, "/referrers/") == 0 {
				t.Error("proxy did not use the upstream's referrers API")
			}
			if !api && f.up.Count(http.MethodGet, "/manifests/sha256-") == 0 {
				t.Error("proxy did not read the sha256-<hex> fallback tag")
			}

			// artifactType filter.
			st, h, body, err := harness.Get(ctx(t), f.url("open/app/referrers/"+img.Digest+"?artifactType="+url.QueryEscape(sbomType)), nil)
			if err != nil || st != http.StatusOK {
				t.Fatalf("filtered referrers: %d %v %s", st, err, body)
			}
			if h.Get("OCI-Filters-Applied") != "artifactType" {
				t.Errorf("OCI-Filters-Applied %q, want artifactType", h.Get("OCI-Filters-Applied"))
			}
			var fidx ocispec.Index
			if err := json.Unmarshal(body, &fidx); err != nil {
				t.Fatal(err)
			}
			checkReferrers(t, &fidx, map[string]string{sbom.Digest: sbomType})

			// A subject without referrers: an empty index, not an error.
			empty := getReferrers(t, f, "open/app", f.allowed.Config.Digest, "")
			if len(empty.Manifests) != 0 {
				t.Errorf("referrers of a digest nobody refers to: %v", empty.Manifests)
			}

			// Referrer manifests themselves are pulled through the proxy.
			od, err := harness.OrasGoPull(ctx(t), f.ref("open/app@"+sbom.Digest))
			if err != nil || od.Digest.String() != sbom.Digest {
				t.Fatalf("oras-go pull referrer: %v", err)
			}

			// Real clients.
			refs, err := harness.OrasGoReferrers(ctx(t), f.px.Host+"/"+f.up.Name+"/open/app", img.Digest, "")
			if err != nil {
				t.Fatalf("oras-go referrers: %v", err)
			}
			checkReferrers(t, &ocispec.Index{Manifests: refs}, want)
			refs, err = harness.OrasGoReferrers(ctx(t), f.px.Host+"/"+f.up.Name+"/open/app", img.Digest, sigType)
			if err != nil {
				t.Fatalf("oras-go referrers filtered: %v", err)
			}
			checkReferrers(t, &ocispec.Index{Manifests: refs}, map[string]string{sig.Digest: sigType})
			res := harness.OrasDiscover(t, f.ref("open/app@"+img.Digest), "")
			if res.Err != nil || !strings.Contains(res.Stdout, sbom.Digest) || !strings.Contains(res.Stdout, sig.Digest) {
				t.Fatalf("oras discover: %v", res)
			}
			res = harness.OrasDiscover(t, f.ref("open/app@"+img.Digest), sbomType)
			if res.Err != nil || !strings.Contains(res.Stdout, sbom.Digest) || strings.Contains(res.Stdout, sig.Digest) {
				t.Fatalf("oras discover --artifact-type: %v", res)
			}

			// Referrers of an image in a denied repository are not served.
			f.up.PushArtifact(t, "blocked/app", harness.ArtifactOptions{ArtifactType: sbomType, Subject: f.denied.Descriptor()})
			st, _, body, err = harness.Get(ctx(t), f.url("blocked/app/referrers/"+f.denied.Digest), nil)
			if err != nil {
				t.Fatal(err)
			}
			expectOCIError(t, "referrers in denied repo", st, body, http.StatusForbidden, "DENIED")
		})
	}
}

func getReferrers(t *testing.T, f *fixture, repo, subject, query string) *ocispec.Index {
	t.Helper()
	st, h, body, err := harness.Get(ctx(t), f.url(repo+"/referrers/"+subject+query), nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("referrers %s: %d %v %s", subject, st, err, body)
	}
	if ct := h.Get("Content-Type"); ct != ocispec.MediaTypeImageIndex {
		t.Errorf("referrers Content-Type %q", ct)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.MediaType != ocispec.MediaTypeImageIndex || idx.SchemaVersion != 2 {
		t.Errorf("referrers index mediaType %q schemaVersion %d", idx.MediaType, idx.SchemaVersion)
	}
	return &idx
}

func checkReferrers(t *testing.T, idx *ocispec.Index, want map[string]string) {
	t.Helper()
	var got []string
	for _, d := range idx.Manifests {
		got = append(got, d.Digest.String())
		at, ok := want[d.Digest.String()]
		if !ok {
			t.Errorf("unexpected referrer %s (%s)", d.Digest, d.ArtifactType)
			continue
		}
		if d.ArtifactType != at {
			t.Errorf("referrer %s artifactType %q, want %q", d.Digest, d.ArtifactType, at)
		}
		if d.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("referrer %s mediaType %q", d.Digest, d.MediaType)
		}
	}
	for d := range want {
		if !slices.Contains(got, d) {
			t.Errorf("referrer %s missing (got %v)", d, got)
		}
	}
}
