package records

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Link names are listed from a store other replicas (or anyone with access
// to the bucket) write: any name either reads as a valid digest that
// segment spells back the same way (or is the legacy bare hex of one), or
// is skipped; nothing panics.
func FuzzParseSegment(f *testing.F) {
	for _, s := range []string{
		digest.FromString("a").Encoded(),
		segment(digest.SHA512.FromString("a")),
		digest.SHA512.FromString("a").Encoded(),
		"sha384-" + digest.SHA384.FromString("a").Encoded(),
		"sha256-" + digest.FromString("a").Encoded(),
		"blake3-00", "md5-d41d8cd98f00b204e9800998ecf8427e", "-", "sha512-", "", "_2e_2e", "..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseSegment(s)
		if !ok {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("parseSegment(%q) = %q, invalid: %v", s, d, err)
		}
		if seg := segment(d); seg != s && !(strings.Contains(s, "-") && seg == d.Encoded()) && legacySegment(d) != s {
			t.Fatalf("parseSegment(%q) = %s, spelled back as %q", s, d, seg)
		}
	})
}
