package attest_test

import (
	"bytes"
	"math"
	"testing"

	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
)

func seedRelease(f *testing.F) *attesttest.Release {
	r, err := attesttest.WriteRelease(f.TempDir(), attesttest.ReleaseOptions{Subject: artifact})
	if err != nil {
		f.Fatal(err)
	}
	return r
}

// FuzzPredicate: DecodePredicate never panics, and whatever it accepts
// re-encodes to a predicate it accepts again with identical bytes.
func FuzzPredicate(f *testing.F) {
	r := seedRelease(f)
	for i, k := range attest.Kinds {
		ps, _ := attest.ParseStatement(r.Statements[k])
		f.Add(uint8(i), []byte(ps.Predicate))
	}
	f.Add(uint8(2), []byte(`{"name":"x","createdAt":"2026-01-01T00:00:00Z","metrics":{"a":1e308},"thresholds":[{"metric":"a","min":-1e308}]}`))
	f.Fuzz(func(t *testing.T, kind uint8, raw []byte) {
		k := attest.Kinds[int(kind)%len(attest.Kinds)]
		p, err := attest.DecodePredicate(k.PredicateType(), raw)
		if err != nil {
			return
		}
		b1, err := attest.MarshalCanonical(p)
		if err != nil {
			t.Fatalf("accepted predicate does not encode: %v", err)
		}
		p2, err := attest.DecodePredicate(k.PredicateType(), b1)
		if err != nil {
			t.Fatalf("re-encoded predicate rejected: %v\n%s", err, b1)
		}
		b2, _ := attest.MarshalCanonical(p2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable:\n%s\n%s", b1, b2)
		}
	})
}

// FuzzParseStatement: never panics; an accepted statement has a subject, a
// predicate type and the digest of its exact bytes.
func FuzzParseStatement(f *testing.F) {
	r := seedRelease(f)
	for _, k := range attest.Kinds {
		f.Add(r.Statements[k])
	}
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + artifact[7:] + `"}}],"predicateType":"x","predicate":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := attest.ParseStatement(b)
		if err != nil {
			return
		}
		if len(ps.Subject) == 0 || ps.PredicateType == "" || ps.Digest != attest.StatementDigest(b) {
			t.Fatalf("accepted an incomplete statement: %+v", ps)
		}
	})
}

// FuzzPredicateSafetensors: the safetensors header reader never panics and
// returns only valid, sorted tensors.
func FuzzPredicateSafetensors(f *testing.F) {
	f.Add(attesttest.Safetensors([]attest.Tensor{{Name: "a", DType: "F32", Shape: []int64{2, 2}}}))
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := attest.SafetensorsTensors(bytes.NewReader(b))
		if err != nil {
			return
		}
		for i := range ts {
			if ts[i].Name == "" || ts[i].DType == "" || (i > 0 && ts[i-1].Name >= ts[i].Name) {
				t.Fatalf("bad tensors %+v", ts)
			}
		}
	})
}

// FuzzPredicateResults: the eval results reader never panics and yields only
// finite metrics.
func FuzzPredicateResults(f *testing.F) {
	f.Add([]byte(`{"metrics":{"accuracy":0.93,"toxicity":0.004}}`))
	f.Add([]byte("metrics:\n  accuracy: .nan\n"))
	f.Add([]byte("metrics: {a: 1, b: 2.5e3}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := attest.ParseResults(b)
		if err != nil {
			return
		}
		for k, v := range m {
			if math.IsNaN(v) || math.IsInf(v, 0) || k == "" {
				t.Fatalf("bad metric %q=%v", k, v)
			}
		}
	})
}
