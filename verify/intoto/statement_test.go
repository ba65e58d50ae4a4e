package intoto

import (
	"encoding/json"
	"strings"
	"testing"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestParse(t *testing.T) {
	for _, typ := range []string{StatementV01, StatementV1} {
		st, err := Parse([]byte(`{"_type":"` + typ + `","subject":[{"name":"a","digest":{"sha256":"` + strings.ToUpper(hexA) + `"}}],"predicateType":"p","predicate":{"x":1}}`))
		if err != nil {
			t.Fatal(err)
		}
		if st.Type != typ || st.PredicateType != "p" || string(st.Predicate) != `{"x":1}` {
			t.Fatalf("%+v", st)
		}
		if !st.HasSubjectDigest("sha256", hexA) || st.HasSubjectDigest("sha512", hexA) || st.HasSubjectDigest("sha256", "bb") || st.HasSubjectDigest("sha256", "") {
			t.Fatal("subject matching is wrong")
		}
	}
	st, err := Parse([]byte(`{"_type":"` + StatementV1 + `","subject":[{"digest":{"sha256":"` + hexA + `"}}],"predicateType":"p","predicate":null}`))
	if err != nil || st.Predicate != nil {
		t.Fatalf("null predicate: %v %s", err, st.Predicate)
	}
	bad := map[string]string{
		`{"subject":[{"digest":{"sha256":"aa"}}],"predicateType":"p"}`:                                                                                     "no _type",
		`{"_type":"https://in-toto.io/Statement/v2","subject":[{"digest":{"sha256":"aa"}}],"predicateType":"p"}`:                                           "unsupported statement type",
		`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"aa"}}]}`:                                                               "no predicateType",
		`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p"}`:                                                                     "no subject",
		`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x"}],"predicateType":"p"}`:                                                         "has no digest",
		`{"_type":"https://in-toto.io/Statement/v1","_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"aa"}}],"predicateType":"p"}`: `duplicate key "_type" at $`,
		`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"aa","sha256":"bb"}}],"predicateType":"p"}`:                             `duplicate key "sha256" at $.subject[0].digest`,
		`{"_type":"https://in-toto.io/Statement/v1","Subject":[{"digest":{"sha256":"aa"}}],"predicateType":"p"}`:                                           `key "Subject" differs from the field "subject" only in case`,
		`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"aa"}}],"predicateType":"p","predicate":{"a":1,"a":2}}`:                 `duplicate key "a" at $.predicate`,
		`["_type"]`:   "not a JSON object",
		`{"_type":1}`: "not valid JSON",
		`{`:           "not valid JSON",
	}
	for in, want := range bad {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want %q", in, err, want)
		}
	}
}

// FuzzStatement: hostile statements never panic, and an accepted statement
// satisfies the invariants Collect relies on.
func FuzzStatement(f *testing.F) {
	seed := func(typ, pt string, subjects int) []byte {
		var subs []map[string]any
		for i := 0; i < subjects; i++ {
			subs = append(subs, map[string]any{"name": "n", "digest": map[string]string{"sha256": hexA}})
		}
		b, _ := json.Marshal(map[string]any{"_type": typ, "subject": subs, "predicateType": pt, "predicate": map[string]any{"builder": map[string]string{"id": "x"}}})
		return b
	}
	f.Add(seed(StatementV01, "https://slsa.dev/provenance/v0.2", 1))
	f.Add(seed(StatementV1, "https://slsa.dev/provenance/v1", 3))
	f.Add(seed(StatementV1, "", 0))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","_type":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Parse(data)
		if err != nil {
			return
		}
		if (st.Type != StatementV01 && st.Type != StatementV1) || st.PredicateType == "" || len(st.Subjects) == 0 {
			t.Fatalf("accepted invalid statement %+v", st)
		}
		for _, s := range st.Subjects {
			if len(s.Digest) == 0 {
				t.Fatal("accepted subject without digest")
			}
			for alg, v := range s.Digest {
				_ = st.HasSubjectDigest(alg, v)
			}
		}
	})
}
