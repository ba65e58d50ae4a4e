package signals

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkAskCached is a warm ask: what a decision pays per provider
// once the answer is cached.
func BenchmarkAskCached(b *testing.B) {
	tp := newTestProvider(b)
	s := newService(b, Options{}, tp.provider())
	req := request(digestA)
	if r := s.Ask(context.Background(), "sandbox", req); r.Err != nil {
		b.Fatal(r.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := s.Ask(context.Background(), "sandbox", req); !r.Cached {
			b.Fatal("not cached")
		}
	}
}

// BenchmarkAskHTTP is a cold ask over mTLS to a provider on loopback
// that answers at once: the overhead pullgate adds to a provider's own
// time (connection reused, as between pulls).
func BenchmarkAskHTTP(b *testing.B) {
	tp := newTestProvider(b)
	p := tp.provider()
	p.CacheTTL = 0
	s := newService(b, Options{}, p)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		req := request(fmt.Sprintf("sha256:%064x", i))
		if r := s.Ask(context.Background(), "sandbox", req); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}
