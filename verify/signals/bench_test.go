package signals

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
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

// BenchmarkRawPost is the provider's own time as BenchmarkAskHTTP sees it:
// the same client (TLS, client certificate, token) POSTing the same
// request and reading the answer, without anything pullgate does with it.
// BenchmarkAskHTTP minus this is pullgate's overhead per cold ask.
func BenchmarkRawPost(b *testing.B) {
	tp := newTestProvider(b)
	p := tp.provider()
	c, err := p.httpClient()
	if err != nil {
		b.Fatal(err)
	}
	tok, err := os.ReadFile(p.TokenFile)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		r := request(fmt.Sprintf("sha256:%064x", i))
		r.APIVersion = APIVersion
		body, _ := json.Marshal(r)
		req, _ := http.NewRequest(http.MethodPost, p.URL, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatal(resp.StatusCode, err)
		}
		resp.Body.Close()
	}
}
