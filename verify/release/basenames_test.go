package release_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/release"
)

// mbomAbout is a verified MBOM attestation about subject whose base model
// is known by names (raw: the predicate as given).
func mbomAbout(t *testing.T, subject digest.Digest, names []string, raw string) verify.Attestation {
	t.Helper()
	pred := []byte(raw)
	if raw == "" {
		p := attest.MBOMPredicate{Common: attest.Common{Name: "adapter", CreatedAt: "2026-12-01T00:00:00Z"},
			BaseModel: "registry.example/base@sha256:" + strings.Repeat("ab", 32), BaseModelNames: names,
			Files: []attest.MBOMFile{{Path: "adapter_config.json", SHA256: strings.Repeat("cd", 32), Size: 10}}}
		var err error
		if pred, err = json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	}
	return verify.Attestation{PredicateType: attest.KindMBOM.PredicateType(), Predicate: pred,
		Subjects: []verify.Subject{{Name: "x", Digest: map[string]string{"sha256": subject.Encoded()}}}, Statement: digest.FromBytes(pred)}
}

// The names every MBOM about the served digest lists; none when one does
// not decode; MBOMs about other digests do not count.
func TestMBOMBaseModelNames(t *testing.T) {
	served, other := digest.FromString("served"), digest.FromString("other")
	a := mbomAbout(t, served, []string{"meta-llama/Llama-3-8B", "meta-llama/Meta-Llama-3-8B"}, "")
	b := mbomAbout(t, served, []string{"meta-llama/Meta-Llama-3-8B"}, "")
	elsewhere := mbomAbout(t, other, []string{"evil/base"}, "")
	bad := mbomAbout(t, served, nil, `{"name": "x"}`)
	for _, c := range []struct {
		name  string
		atts  []verify.Attestation
		want  []string
		count int
	}{
		{"one", []verify.Attestation{a}, []string{"meta-llama/Llama-3-8B", "meta-llama/Meta-Llama-3-8B"}, 1},
		{"two: the names both list", []verify.Attestation{a, b}, []string{"meta-llama/Meta-Llama-3-8B"}, 2},
		// The Hub resolves ids without regard to case: one repository.
		{"two: the names both list, in another case", []verify.Attestation{a, mbomAbout(t, served, []string{"Meta-Llama/meta-llama-3-8b"}, "")}, []string{"meta-llama/Meta-Llama-3-8B"}, 2},
		{"another digest's MBOM", []verify.Attestation{a, elsewhere}, []string{"meta-llama/Llama-3-8B", "meta-llama/Meta-Llama-3-8B"}, 1},
		{"an MBOM that does not decode", []verify.Attestation{a, bad}, nil, 2},
		{"none", nil, nil, 0},
	} {
		names, n := release.MBOMBaseModelNames(c.atts, release.MBOMOptions{Subject: served})
		if !slices.Equal(names, c.want) || n != c.count {
			t.Errorf("%s: %q, %d; want %q, %d", c.name, names, n, c.want, c.count)
		}
	}
}
