package release_test

import (
	"encoding/json"
	"testing"

	"github.com/pullgate/pullgate/verify/release"
)

// FuzzPredicateOpenSSF: the OMS predicate parser never panics, and whatever
// it accepts has resources whose digests are lowercase hex of the declared
// algorithm and a stable root digest.
func FuzzPredicateOpenSSF(f *testing.F) {
	var st struct {
		Predicate json.RawMessage `json:"predicate"`
	}
	json.Unmarshal(omsStatement(map[string][]byte{"config.json": []byte("{}"), "weights.bin": []byte("w")}, nil), &st)
	f.Add([]byte(st.Predicate))
	f.Add([]byte(`{"resources":[{"name":"w.bin:0:10","digest":"` + "ab" + `","algorithm":"sha256"}],"serialization":{"method":"shards","hash_type":"sha256","shard_size":10}}`))
	f.Add([]byte(`{"resources":[],"serialization":{"method":"files","hash_type":"blake3"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := release.ParseOpenSSFPredicate(b)
		if err != nil {
			return
		}
		if len(p.Resources) == 0 {
			t.Fatal("accepted no resources")
		}
		for _, r := range p.Resources {
			if r.Algorithm != p.Serialization.HashType || r.Digest == "" {
				t.Fatalf("bad resource %+v", r)
			}
		}
		if p.RootDigest() != p.RootDigest() || len(p.RootDigest()) != 64 {
			t.Fatal("unstable root digest")
		}
	})
}
