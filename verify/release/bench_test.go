package release_test

import (
	"context"
	"crypto"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
	"github.com/pullgate/pullgate/verify/release"
)

// BenchmarkReleaseVerifyCold verifies a full release cold: six signed
// bundles (prompt, corpus, eval, route, slo and an MBOM over 100 files) are
// signature-checked with sigstore-go against the trusted key, decoded, and
// run through the llm-release chain and the MBOM check against 100 layers
// with tensor comparison. Nothing is cached between iterations.
func BenchmarkReleaseVerifyCold(b *testing.B) {
	e := newEnv(b, attesttest.ReleaseOptions{ModelFiles: 99})
	layers := e.layers()
	if len(layers) != 100 {
		b.Fatalf("%d layers", len(layers))
	}
	var bundles [][]byte
	for _, k := range attest.Kinds {
		bb, err := attest.Sign(context.Background(), e.r.Statements[k], attest.SignOptions{Signer: e.ci})
		if err != nil {
			b.Fatal(err)
		}
		bundles = append(bundles, bb)
	}
	keys := map[string]crypto.PublicKey{"ci": e.ci.Public()}
	opts := release.ChainOptions{Subject: digest.Digest(artifact), Now: func() time.Time { return now }}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		atts := make([]verify.Attestation, 0, len(bundles))
		for _, bb := range bundles {
			a, err := attesttest.Verify(bb, keys, digest.Digest(artifact))
			if err != nil {
				b.Fatal(err)
			}
			atts = append(atts, *a)
		}
		if r := release.Chain(release.ChainLLMRelease, atts, opts); !r.OK {
			b.Fatal(r.Err())
		}
		if r := release.CheckMBOM(atts, layers, release.MBOMOptions{Tensors: e.tensors()}); !r.OK {
			b.Fatal(r.Err())
		}
	}
}

// BenchmarkReleaseChecksOnly is the chain and MBOM checks alone over
// already verified attestations (what policy evaluation adds to Collect).
func BenchmarkReleaseChecksOnly(b *testing.B) {
	e := newEnv(b, attesttest.ReleaseOptions{ModelFiles: 99})
	layers := e.layers()
	atts := e.set()
	opts := release.ChainOptions{Subject: digest.Digest(artifact), Now: func() time.Time { return now }}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := release.Chain(release.ChainLLMRelease, atts, opts); !r.OK {
			b.Fatal(r.Err())
		}
		if r := release.CheckMBOM(atts, layers, release.MBOMOptions{Tensors: e.tensors()}); !r.OK {
			b.Fatal(r.Err())
		}
	}
}
