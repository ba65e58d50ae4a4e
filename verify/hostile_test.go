package verify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

func startWrapped(t *testing.T, referrers bool, wrap func(http.Handler) http.Handler) *upstream.Registry {
	t.Helper()
	reg, err := upstream.Start(upstream.Options{Referrers: referrers, Wrap: wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

// failing answers 500 to requests whose path contains any of the markers
// while *on is true.
func failing(on *bool, markers ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if *on {
				for _, m := range markers {
					if strings.Contains(r.URL.Path, m) {
						http.Error(w, "upstream exploded", http.StatusInternalServerError)
						return
					}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestFetchFailuresNeverAllow: when evidence cannot be fetched the result
// records FailFetch and no evidence, even if valid evidence exists.
func TestFetchFailuresNeverAllow(t *testing.T) {
	k := newKey(t, "release", "p256")
	trust := mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}})
	for _, marker := range []string{".sig", ".att", "/referrers/", "/blobs/"} {
		t.Run(marker, func(t *testing.T) {
			on := false
			reg := startWrapped(t, true, failing(&on, marker))
			repo := "fail/app"
			img := pushImage(t, reg, repo, "v1")
			pushLegacy(t, reg, repo, img.Digest, "sig", sigLayer(t, k, simpleSigningPayload(img.Digest, "x")))
			pushLegacy(t, reg, repo, img.Digest, "att", attLayer(envelopeJSON(t, k, "application/vnd.in-toto+json", statementJSON("https://in-toto.io/Statement/v1", slsa02, "{}", img.Digest))))
			pushBundle(t, reg, repo, img, keyBundleJSON(t, k, statementJSON("https://in-toto.io/Statement/v1", slsa02, "{}", img.Digest)), false)
			f := newFetcher(t, reg, repo)
			on = true
			res := verify.Collect(context.Background(), f, img.Digest, trust, verify.CollectOptions{})
			fetchFails := 0
			for _, fl := range res.Failures {
				if fl.Kind != verify.FailFetch {
					t.Fatalf("unexpected failure %+v", fl)
				}
				fetchFails++
			}
			if fetchFails == 0 {
				t.Fatalf("no fetch failure recorded: %s", summarize(res))
			}
			want := map[string][2]int{".sig": {0, 2}, ".att": {1, 1}, "/referrers/": {1, 1}, "/blobs/": {0, 0}}[marker]
			if len(res.Signatures) != want[0] || len(res.Attestations) != want[1] {
				t.Fatalf("%s: %s", marker, summarize(res))
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		reg := startUpstream(t, true)
		img := pushImage(t, reg, "fail/ctx", "v1")
		pushLegacy(t, reg, "fail/ctx", img.Digest, "sig", sigLayer(t, k, simpleSigningPayload(img.Digest, "x")))
		f := newFetcher(t, reg, "fail/ctx")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := verify.Collect(ctx, f, img.Digest, trust, verify.CollectOptions{})
		if len(res.Signatures) != 0 || len(res.Failures) == 0 || res.Failures[0].Kind != verify.FailFetch {
			t.Fatalf("%s", summarize(res))
		}
	})
}

// lyingReferrers answers the referrers API with a fixed index.
func lyingReferrers(idx *ocispec.Index) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/referrers/") && idx.Manifests != nil {
				w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
				_ = json.NewEncoder(w).Encode(idx)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestHostileReferrers(t *testing.T) {
	k := newKey(t, "release", "p256")
	trust := mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}})

	t.Run("api lists a bundle about another image", func(t *testing.T) {
		idx := &ocispec.Index{}
		reg := startWrapped(t, true, lyingReferrers(idx))
		repo := "hostile/api"
		img := pushImage(t, reg, repo, "v1")
		other := pushImage(t, reg, repo, "v2")
		// A genuine bundle whose statement names img, attached to other.
		d := pushBundle(t, reg, repo, other, keyBundleJSON(t, k, statementJSON("https://in-toto.io/Statement/v1", cosign.SignPredicateType, "{}", img.Digest)), false)
		idx.Manifests = []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: d, ArtifactType: cosign.BundleMediaType}}
		res := verify.Collect(context.Background(), newFetcher(t, reg, repo), img.Digest, trust, verify.CollectOptions{})
		if len(res.Signatures) != 0 || len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailMismatch || !strings.Contains(res.Failures[0].Reason, "referrer manifest subject") {
			t.Fatalf("%s", summarize(res))
		}
	})
	t.Run("fallback tag lists a bundle about another image", func(t *testing.T) {
		reg := startUpstream(t, false)
		repo := "hostile/tag"
		img := pushImage(t, reg, repo, "v1")
		other := pushImage(t, reg, repo, "v2")
		d := pushBundle(t, reg, repo, other, keyBundleJSON(t, k, statementJSON("https://in-toto.io/Statement/v1", cosign.SignPredicateType, "{}", other.Digest)), false)
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: d, ArtifactType: cosign.BundleMediaType}}}
		idx.SchemaVersion = 2
		ib, _ := json.Marshal(idx)
		putManifest(t, reg, repo, "sha256-"+img.Digest.Encoded(), ocispec.MediaTypeImageIndex, ib)
		res := verify.Collect(context.Background(), newFetcher(t, reg, repo), img.Digest, trust, verify.CollectOptions{})
		if len(res.Signatures) != 0 || len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailMismatch {
			t.Fatalf("%s", summarize(res))
		}
	})
	t.Run("api lists a missing manifest", func(t *testing.T) {
		idx := &ocispec.Index{}
		reg := startWrapped(t, true, lyingReferrers(idx))
		img := pushImage(t, reg, "hostile/missing", "v1")
		idx.Manifests = []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("nothing"), ArtifactType: cosign.BundleMediaType}}
		res := verify.Collect(context.Background(), newFetcher(t, reg, "hostile/missing"), img.Digest, trust, verify.CollectOptions{})
		if len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailFetch {
			t.Fatalf("%s", summarize(res))
		}
	})
	t.Run("evidence bounds", func(t *testing.T) {
		reg := startUpstream(t, true)
		repo := "hostile/bounds"
		img := pushImage(t, reg, repo, "v1")
		var layers []layerSpec
		for i := 0; i < 5; i++ {
			layers = append(layers, sigLayer(t, k, simpleSigningPayload(img.Digest, strings.Repeat("x", i+1))))
		}
		pushLegacy(t, reg, repo, img.Digest, "sig", layers...)
		res := verify.Collect(context.Background(), newFetcher(t, reg, repo), img.Digest, trust, verify.CollectOptions{MaxEvidence: 3})
		if len(res.Signatures) != 3 || len(res.Failures) != 1 || !strings.Contains(res.Failures[0].Reason, "only the first 3") {
			t.Fatalf("%s", summarize(res))
		}
		res = verify.Collect(context.Background(), newFetcher(t, reg, repo), img.Digest, trust, verify.CollectOptions{MaxBlobSize: 64})
		if len(res.Signatures) != 0 || len(res.Failures) != 5 || res.Failures[0].Kind != verify.FailMalformed {
			t.Fatalf("%s", summarize(res))
		}
	})
	t.Run("invalid subject", func(t *testing.T) {
		res := verify.Collect(context.Background(), nil, digest.Digest("sha256:xyz"), trust, verify.CollectOptions{})
		if len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailMalformed {
			t.Fatalf("%s", summarize(res))
		}
	})
}

// lyingFetcher returns other bytes than asked for: Collect must not trust a
// Fetcher that forgets to verify digests.
type lyingFetcher struct{ *memFetcher }

func (l lyingFetcher) Blob(ctx context.Context, d digest.Digest, max int64) ([]byte, error) {
	b, err := l.memFetcher.Blob(ctx, d, max)
	if err != nil {
		return nil, err
	}
	return append(append([]byte{}, b...), ' '), nil
}

func TestFetcherThatDoesNotVerify(t *testing.T) {
	k := newKey(t, "release", "p256")
	subject := digest.FromString("s")
	mf := newMemFetcher()
	mf.add(cosign.TagFor(subject, "sig"), "", nil, sigLayer(t, k, simpleSigningPayload(subject, "x")))
	res := verify.Collect(context.Background(), lyingFetcher{mf}, subject, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}}), verify.CollectOptions{})
	if len(res.Signatures) != 0 || len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailFetch || !strings.Contains(res.Failures[0].Reason, "does not match its digest") {
		t.Fatalf("%s", summarize(res))
	}
	res = verify.Collect(context.Background(), mf, subject, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}}), verify.CollectOptions{})
	if len(res.Signatures) != 1 {
		t.Fatalf("honest fetcher: %s", summarize(res))
	}
}

// TestLegacyFormatsAsReferrers: cosign's legacy layers attached as OCI 1.1
// referrers count like their tag forms, with the same checks; other
// artifacts attached to the image are not evidence.
func TestLegacyFormatsAsReferrers(t *testing.T) {
	k := newKey(t, "release", "p256")
	trust := mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}})
	reg := startUpstream(t, true)
	repo := "refs/legacy"
	img := pushImage(t, reg, repo, "v1")
	other := pushImage(t, reg, repo, "v2")
	f := newFetcher(t, reg, repo)

	pushArtifact(t, reg, repo, "", "application/spdx+json", &img, nil, layerSpec{mediaType: "application/spdx+json", blob: []byte(`{"spdxVersion":"SPDX-2.3"}`)})
	if res := verify.Collect(context.Background(), f, img.Digest, trust, verify.CollectOptions{}); res.Found != 0 || len(res.Failures) != 0 {
		t.Fatalf("SBOM referrer: %s", summarize(res))
	}
	pushArtifact(t, reg, repo, "", verify.CosignSignatureArtifactType, &img, nil, sigLayer(t, k, simpleSigningPayload(img.Digest, "x")))
	pushArtifact(t, reg, repo, "", verify.InTotoArtifactType, &img, nil, attLayer(envelopeJSON(t, k, "application/vnd.in-toto+json", statementJSON("https://in-toto.io/Statement/v1", slsa02, "{}", img.Digest))))
	res := verify.Collect(context.Background(), f, img.Digest, trust, verify.CollectOptions{})
	if len(res.Signatures) != 1 || len(res.Attestations) != 1 || len(res.Failures) != 0 || res.Found != 2 ||
		res.Signatures[0].Source != verify.SourceCosignSignatureReferrer || res.Attestations[0].Source != verify.SourceCosignAttestationReferrer {
		t.Fatalf("%s", summarize(res))
	}
	// Replay: img's signature payload attached to other.
	pushArtifact(t, reg, repo, "", verify.CosignSignatureArtifactType, &other, nil, sigLayer(t, k, simpleSigningPayload(img.Digest, "x")))
	res = verify.Collect(context.Background(), f, other.Digest, trust, verify.CollectOptions{})
	if len(res.Signatures) != 0 || len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailMismatch || res.Failures[0].Source != verify.SourceCosignSignatureReferrer {
		t.Fatalf("replay: %s", summarize(res))
	}
}

// panickyFetcher panics where a buggy Fetcher or library might.
type panickyFetcher struct{ *memFetcher }

func (p panickyFetcher) Blob(context.Context, digest.Digest, int64) ([]byte, error) {
	panic("boom")
}

func TestPanicIsAFailureNotACrash(t *testing.T) {
	k := newKey(t, "release", "p256")
	subject := digest.FromString("s")
	mf := newMemFetcher()
	mf.add(cosign.TagFor(subject, "sig"), "", nil, sigLayer(t, k, simpleSigningPayload(subject, "x")), sigLayer(t, k, simpleSigningPayload(subject, "y")))
	res := verify.Collect(context.Background(), panickyFetcher{mf}, subject, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}}), verify.CollectOptions{})
	if len(res.Signatures) != 0 || len(res.Failures) != 2 || res.Failures[0].Kind != verify.FailMalformed || !strings.Contains(res.Failures[0].Reason, "internal error") {
		t.Fatalf("%s", summarize(res))
	}
}
