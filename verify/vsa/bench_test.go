package vsa_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/pullgate/pullgate/verify/vsa"
)

// BenchmarkSign: what one VSA costs the proxy's signer goroutine (the
// statement and its DSSE bundle, ECDSA P-256), once per (policy revision,
// repository, digest), off the request path.
func BenchmarkSign(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s := summary(imageD)
	b.ReportAllocs()
	for b.Loop() {
		stmt, err := vsa.Statement(s)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := vsa.Sign(context.Background(), stmt, k); err != nil {
			b.Fatal(err)
		}
	}
}
