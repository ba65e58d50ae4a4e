package strictjson_test

import (
	"encoding/json"
	"testing"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// BenchmarkDecode compares strictjson with plain json.Unmarshal on real
// evidence: a cosign simple-signing payload into its struct, and a
// keyless sigstore bundle and an in-toto statement into generic values.
func BenchmarkDecode(b *testing.B) {
	real := realPayloads(b)
	for _, c := range []struct {
		name string
		in   []byte
		v    func() any
	}{
		{"simple-signing", real["simple"], func() any { return new(simpleSigning) }},
		{"statement", real["statement"], func() any { return new(map[string]any) }},
		{"bundle", real["bundle"], func() any { return new(map[string]any) }},
	} {
		b.Run(c.name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := json.Unmarshal(c.in, c.v()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/strictjson", func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := strictjson.Unmarshal(c.in, c.v()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
