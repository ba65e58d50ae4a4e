package verify_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

var benchSubject = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("bench"), Size: 5}

const benchPredicate = `{"builder":{"id":"https://ci.example/builder"},"buildType":"https://ci.example/type","invocation":{"configSource":{"uri":"git+https://github.com/acme/app","digest":{"sha1":"0123456789abcdef0123456789abcdef01234567"}}},"materials":[{"uri":"git+https://github.com/acme/app"}]}`

// legacyEvidence builds cosign v2 legacy evidence: one .sig layer and n
// attestation layers signed by k.
func legacyBenchFetcher(b *testing.B, k testKey, n int) *memFetcher {
	mf := newMemFetcher()
	mf.add(cosign.TagFor(benchSubject.Digest, "sig"), "", nil, sigLayer(b, k, simpleSigningPayload(benchSubject.Digest, "registry.example/app")))
	var atts []layerSpec
	for i := 0; i < n; i++ {
		st := statementJSON("https://in-toto.io/Statement/v0.1", fmt.Sprintf("https://example.com/predicate/%d", i), benchPredicate, benchSubject.Digest)
		atts = append(atts, attLayer(envelopeJSON(b, k, "application/vnd.in-toto+json", st)))
	}
	mf.add(cosign.TagFor(benchSubject.Digest, "att"), "", nil, atts...)
	return mf
}

func runCollect(b *testing.B, f verify.Fetcher, trust *verify.Trust, opts verify.CollectOptions, sigs, atts int) {
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res := verify.Collect(context.Background(), f, benchSubject.Digest, trust, opts)
		if len(res.Signatures) != sigs || len(res.Attestations) != atts || len(res.Failures) != 0 {
			b.Fatalf("%s", summarize(res))
		}
	}
	b.StopTimer()
	// CPU time is what the work costs regardless of how busy the machine
	// is (wall time on a shared 2-core box mostly measures the neighbours).
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCollectLegacy1Sig3Att: cold decision evidence, key-based, cosign
// v2 formats, evidence already fetched (target < 5 ms).
func BenchmarkCollectLegacy1Sig3Att(b *testing.B) {
	k := newKey(b, "release", "p256")
	runCollect(b, legacyBenchFetcher(b, k, 3), mustTrust(b, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}}), verify.CollectOptions{}, 1, 3)
}

// BenchmarkCollectLegacy100Statements: 100 signed statements (target < 20 ms).
func BenchmarkCollectLegacy100Statements(b *testing.B) {
	k := newKey(b, "release", "p256")
	runCollect(b, legacyBenchFetcher(b, k, 100), mustTrust(b, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}}), verify.CollectOptions{MaxEvidence: 128}, 1, 100)
}

// BenchmarkCollectBundles1Sig3Att: the same in cosign v3 bundle format,
// verified through sigstore-go.
func BenchmarkCollectBundles1Sig3Att(b *testing.B) {
	k := newKey(b, "release", "p256")
	mf := newMemFetcher()
	mf.addBundle(benchSubject, keyBundleJSON(b, k, statementJSON("https://in-toto.io/Statement/v1", cosign.SignPredicateType, "{}", benchSubject.Digest)))
	for i := 0; i < 3; i++ {
		mf.addBundle(benchSubject, keyBundleJSON(b, k, statementJSON("https://in-toto.io/Statement/v1", fmt.Sprintf("https://example.com/p/%d", i), benchPredicate, benchSubject.Digest)))
	}
	runCollect(b, mf, mustTrust(b, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}}), verify.CollectOptions{}, 1, 3)
}

// BenchmarkCollectBundles100Statements: 100 bundle attestations.
func BenchmarkCollectBundles100Statements(b *testing.B) {
	k := newKey(b, "release", "p256")
	mf := newMemFetcher()
	for i := 0; i < 100; i++ {
		mf.addBundle(benchSubject, keyBundleJSON(b, k, statementJSON("https://in-toto.io/Statement/v1", fmt.Sprintf("https://example.com/p/%d", i), benchPredicate, benchSubject.Digest)))
	}
	runCollect(b, mf, mustTrust(b, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}}), verify.CollectOptions{MaxEvidence: 128}, 0, 100)
}

// BenchmarkCollectKeyless1Sig3Att: keyless bundles with Fulcio chain, Rekor
// SET + inclusion proof and RFC 3161 timestamps, both required.
func BenchmarkCollectKeyless1Sig3Att(b *testing.B) {
	vs := newVirtualSigstore(b)
	mf := newMemFetcher()
	for i, pt := range []string{cosign.SignPredicateType, "https://example.com/p/1", "https://example.com/p/2", "https://example.com/p/3"} {
		ent, err := vs.AttestAtTime(ghSubject, ghIssuer, statementJSON("https://in-toto.io/Statement/v1", pt, benchPredicate, benchSubject.Digest), time.Now().Add(time.Duration(5+i)*time.Second), false)
		if err != nil {
			b.Fatal(err)
		}
		mf.addBundle(benchSubject, entityBundle(b, vs, ent, bundleParts{TLog: true, Timestamp: true}))
	}
	trust := mustTrust(b, verify.TrustSpec{TrustedRootJSON: trustedRootJSON(b, vs), Identities: []verify.IdentitySpec{{Name: "ci", Issuer: ghIssuer, SubjectRegExp: "^https://github.com/acme/"}}})
	runCollect(b, mf, trust, verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true, RequireTimestamp: true}}, 1, 3)
}
