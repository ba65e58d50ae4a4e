package records

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.OpenFilesystem(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	up   = "upstream.local:5000"
	repo = "org/app"
	rev  = "sha256:7f1e0c2c5f3b7d0a6f3d2b1c0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"
	rule = "models"
)

var (
	m256 = digest.FromString("manifest")
	b256 = digest.FromString("blob")
	m512 = digest.SHA512.FromString("manifest")
	b512 = digest.SHA512.FromString("blob")
)

// Every family round-trips, for sha256 and sha512 digests alike, and a
// digest of one algorithm never reads the records of another.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	r := New(openStore(t))
	now := time.Now().UTC().Truncate(time.Second)

	if err := r.PutTag(ctx, up, repo, "v1", Tag{Digest: m512, MediaType: "application/vnd.oci.image.manifest.v1+json", ResolvedAt: now}); err != nil {
		t.Fatal(err)
	}
	if tg, err := r.Tag(ctx, up, repo, "v1"); err != nil || tg.Digest != m512 || !tg.ResolvedAt.Equal(now) {
		t.Errorf("Tag = %+v, %v", tg, err)
	}
	if _, err := r.Tag(ctx, up, repo, "v2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tag of an unknown tag: %v, want ErrNotFound", err)
	}

	for _, pair := range [][2]digest.Digest{{m256, b256}, {m512, b512}} {
		m, b := pair[0], pair[1]
		other := b256
		if b == b256 {
			other = b512
		}
		if err := r.PutPresent(ctx, up, repo, m, now); err != nil {
			t.Fatal(err)
		}
		if ok, err := r.Present(ctx, up, repo, m); !ok || err != nil {
			t.Errorf("Present(%s) = %v, %v", m, ok, err)
		}
		if ok, err := r.Present(ctx, up, "other", m); ok || err != nil {
			t.Errorf("Present in another repository = %v, %v", ok, err)
		}
		if err := r.PutManifestMeta(ctx, m, ManifestMeta{MediaType: "x/y"}); err != nil {
			t.Fatal(err)
		}
		if mm, err := r.ManifestMeta(ctx, m); err != nil || mm.MediaType != "x/y" {
			t.Errorf("ManifestMeta(%s) = %+v, %v", m, mm, err)
		}
		for _, kind := range []LinkKind{Blobs, Parents} {
			if err := r.PutLink(ctx, up, repo, kind, b, m); err != nil {
				t.Fatal(err)
			}
			if ls, err := r.Links(ctx, up, repo, kind, b); err != nil || !slices.Equal(ls, []digest.Digest{m}) {
				t.Errorf("Links(%s, %s) = %v, %v, want [%s]", kind, b, ls, err, m)
			}
		}
		if err := r.PutAllow(ctx, rev, up, repo, m, []byte(`{"allowed":true}`)); err != nil {
			t.Fatal(err)
		}
		if v, err := r.Allow(ctx, rev, up, repo, m); err != nil || string(v) != `{"allowed":true}` {
			t.Errorf("Allow(%s) = %s, %v", m, v, err)
		}
		if err := r.PutInspected(ctx, rev, rule, b, "", "application/octet-stream|model.safetensors", "safetensors"); err != nil {
			t.Fatal(err)
		}
		if ok, err := r.Inspected(ctx, rev, rule, b, "", "application/octet-stream|model.safetensors"); !ok || err != nil {
			t.Errorf("Inspected(%s) = %v, %v", b, ok, err)
		}
		if ok, err := r.Inspected(ctx, rev, rule, b, "exp1", "application/octet-stream|model.safetensors"); ok || err != nil {
			t.Errorf("Inspected(%s) in another scope = %v, %v", b, ok, err)
		}
		if f, ok, err := r.InspectedFormat(ctx, rev, rule, b, "", "application/octet-stream|model.safetensors"); f != "safetensors" || !ok || err != nil {
			t.Errorf("InspectedFormat(%s) = %q, %v, %v", b, f, ok, err)
		}
		if f, ok, err := r.InspectedFormat(ctx, rev, rule, b, "exp1", "application/octet-stream|model.safetensors"); f != "" || ok || err != nil {
			t.Errorf("InspectedFormat(%s) in another scope = %q, %v, %v", b, f, ok, err)
		}
		if err := r.PutFinding(ctx, rev, rule, b, "exp1", "pickle: os.system"); err != nil {
			t.Fatal(err)
		}
		if f, ok, err := r.Finding(ctx, rev, rule, b, "exp1"); !ok || err != nil || f != "pickle: os.system" {
			t.Errorf("Finding(%s) = %q, %v, %v", b, f, ok, err)
		}
		if _, ok, err := r.Finding(ctx, rev, rule, b, ""); ok || err != nil {
			t.Errorf("Finding(%s) in the format scope = %v, %v", b, ok, err)
		}
		if ok, err := r.AnyFinding(ctx, rev, rule, b); !ok || err != nil {
			t.Errorf("AnyFinding(%s) = %v, %v", b, ok, err)
		}
		// The other algorithm's digest, not recorded yet, reads nothing.
		if other == b256 {
			continue // recorded in the iteration before
		}
		if ok, err := r.AnyFinding(ctx, rev, rule, other); ok || err != nil {
			t.Errorf("AnyFinding(%s) = %v, %v (before its finding)", other, ok, err)
		}
	}
	if ls, _ := r.Links(ctx, up, repo, Blobs, b256); !slices.Equal(ls, []digest.Digest{m256}) {
		t.Errorf("sha256 blob links %v: the sha512 links leaked in", ls)
	}
}

// The keys of the release before this package (spelled here as it spelled
// them), for a store it wrote.
func oldKeys() map[string]string {
	return map[string]string{
		"tag":       store.MetaKey("tags", up, repo, "v1"),
		"present":   store.MetaKey("present", up, repo, "_manifests", m256.Algorithm().String(), m256.Encoded()),
		"manifest":  store.MetaKey("manifests", m256.Algorithm().String(), m256.Encoded()),
		"blobs":     store.MetaKey("links", up, repo, "_blobs", b256.Encoded(), m256.Encoded()),
		"parents":   store.MetaKey("links", up, repo, "_parents", b256.Encoded(), m256.Encoded()),
		"verdict":   store.MetaKey("verdicts", strings.TrimPrefix(rev, "sha256:"), up, repo, m256.Encoded()),
		"bad":       store.MetaKey("bad", strings.TrimPrefix(rev, "sha256:"), rule, b256.Encoded(), "format"),
		"bad512":    store.MetaKey("bad", strings.TrimPrefix(rev, "sha256:"), rule, b512.Encoded(), "exp1"),
		"links512":  store.MetaKey("links", up, repo, "_blobs", b512.Encoded(), m512.Encoded()),
		"inspected": store.MetaKey("inspected", strings.TrimPrefix(rev, "sha256:"), rule, b256.Encoded(), "format", "a/b|c"),
	}
}

// A store written by the release before reads the same: every family for
// sha256, and the findings and links it recorded for sha512 digests
// (spelled as bare hex then). A finding is never lost to the layout.
func TestReadsStoreWrittenByPreviousRelease(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	k := oldKeys()
	resolved := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	values := map[string]string{
		"tag":       `{"digest":"` + m256.String() + `","mediaType":"application/vnd.oci.image.index.v1+json","resolvedAt":"2026-01-02T03:04:05Z"}`,
		"present":   `{"digest":"` + m256.String() + `","seenAt":"2026-01-02T03:04:05Z"}`,
		"manifest":  `{"mediaType":"application/vnd.oci.image.index.v1+json"}`,
		"blobs":     m256.String(),
		"parents":   m256.String(),
		"verdict":   `{"allowed":true}`,
		"bad":       "pickle: os.system",
		"bad512":    "tensor shape mismatch",
		"links512":  m512.String(),
		"inspected": "ok",
	}
	for name, key := range k {
		if err := s.PutMeta(ctx, key, []byte(values[name])); err != nil {
			t.Fatal(err)
		}
	}
	r := New(s)
	if tg, err := r.Tag(ctx, up, repo, "v1"); err != nil || tg.Digest != m256 || !tg.ResolvedAt.Equal(resolved) || tg.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("Tag = %+v, %v", tg, err)
	}
	if ok, err := r.Present(ctx, up, repo, m256); !ok || err != nil {
		t.Errorf("Present = %v, %v", ok, err)
	}
	if mm, err := r.ManifestMeta(ctx, m256); err != nil || mm.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("ManifestMeta = %+v, %v", mm, err)
	}
	for _, kind := range []LinkKind{Blobs, Parents} {
		if ls, err := r.Links(ctx, up, repo, kind, b256); err != nil || !slices.Equal(ls, []digest.Digest{m256}) {
			t.Errorf("Links(%s) = %v, %v", kind, ls, err)
		}
	}
	if v, err := r.Allow(ctx, rev, up, repo, m256); err != nil || string(v) != values["verdict"] {
		t.Errorf("Allow = %s, %v", v, err)
	}
	if f, ok, err := r.Finding(ctx, rev, rule, b256, ""); !ok || err != nil || f != values["bad"] {
		t.Errorf("Finding = %q, %v, %v", f, ok, err)
	}
	if ok, err := r.Inspected(ctx, rev, rule, b256, "", "a/b|c"); !ok || err != nil {
		t.Errorf("Inspected = %v, %v", ok, err)
	}
	// Written before records named the format: inspected, format unknown.
	if f, ok, err := r.InspectedFormat(ctx, rev, rule, b256, "", "a/b|c"); f != "" || !ok || err != nil {
		t.Errorf("InspectedFormat = %q, %v, %v", f, ok, err)
	}
	// sha512, as the release before spelled it.
	if f, ok, err := r.Finding(ctx, rev, rule, b512, "exp1"); !ok || err != nil || f != values["bad512"] {
		t.Errorf("sha512 Finding = %q, %v, %v: a finding the release before recorded is lost", f, ok, err)
	}
	if ok, err := r.AnyFinding(ctx, rev, rule, b512); !ok || err != nil {
		t.Errorf("sha512 AnyFinding = %v, %v: a finding the release before recorded is lost", ok, err)
	}
	if ls, err := r.Links(ctx, up, repo, Blobs, b512); err != nil || !slices.Equal(ls, []digest.Digest{m512}) {
		t.Errorf("sha512 Links = %v, %v", ls, err)
	}
	// A new link next to an old one: both read, once each.
	if err := r.PutLink(ctx, up, repo, Blobs, b512, m512); err != nil {
		t.Fatal(err)
	}
	if err := r.PutLink(ctx, up, repo, Blobs, b512, m256); err != nil {
		t.Fatal(err)
	}
	ls, err := r.Links(ctx, up, repo, Blobs, b512)
	slices.Sort(ls)
	if want := []digest.Digest{m256, m512}; err != nil || !slices.Equal(ls, want) {
		t.Errorf("sha512 Links after new writes = %v, %v, want %v", ls, err, want)
	}
}

// What this package writes for sha256 digests is exactly what the release
// before wrote: a replica still running it (or a downgrade) reads it.
func TestSHA256KeysUnchanged(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	r := New(s)
	now := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.PutTag(ctx, up, repo, "v1", Tag{Digest: m256, ResolvedAt: now}))
	must(r.PutPresent(ctx, up, repo, m256, now))
	must(r.PutManifestMeta(ctx, m256, ManifestMeta{MediaType: "x/y"}))
	must(r.PutLink(ctx, up, repo, Blobs, b256, m256))
	must(r.PutLink(ctx, up, repo, Parents, b256, m256))
	must(r.PutAllow(ctx, rev, up, repo, m256, []byte("{}")))
	must(r.PutFinding(ctx, rev, rule, b256, "", "f"))
	must(r.PutInspected(ctx, rev, rule, b256, "", "a/b|c", ""))
	for name, key := range oldKeys() {
		if strings.HasSuffix(name, "512") {
			continue
		}
		if _, err := s.GetMeta(ctx, key); err != nil {
			t.Errorf("%s: the release before's key %s: %v", name, key, err)
		}
	}
	if b, _ := s.GetMeta(ctx, oldKeys()["blobs"]); string(b) != m256.String() {
		t.Errorf("link value %q, want %s", b, m256)
	}
}

// failing is a store whose reads fail (a store unreachable for a moment).
type failing struct{ Meta }

var errDown = errors.New("store down")

func (failing) GetMeta(context.Context, string) ([]byte, error)    { return nil, errDown }
func (failing) ListMeta(context.Context, string) ([]string, error) { return nil, errDown }

// A read that fails is an error, never "none": a decision cannot take an
// unreadable finding or link list for an empty one.
func TestUnreadableIsNotNone(t *testing.T) {
	ctx := context.Background()
	r := New(failing{openStore(t)})
	for _, d := range []digest.Digest{b256, b512} {
		if _, ok, err := r.Finding(ctx, rev, rule, d, ""); !errors.Is(err, errDown) || ok {
			t.Errorf("Finding(%s) = %v, %v", d, ok, err)
		}
		if _, err := r.AnyFinding(ctx, rev, rule, d); !errors.Is(err, errDown) {
			t.Errorf("AnyFinding(%s) = %v", d, err)
		}
		if _, err := r.Links(ctx, up, repo, Blobs, d); !errors.Is(err, errDown) {
			t.Errorf("Links(%s) = %v", d, err)
		}
		if ok, err := r.Inspected(ctx, rev, rule, d, "", "c"); !errors.Is(err, errDown) || ok {
			t.Errorf("Inspected(%s) = %v, %v", d, ok, err)
		}
	}
}

// Link names that are not digests (a stray file) are skipped.
func TestParseSegment(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want digest.Digest
	}{
		{m256.Encoded(), m256},
		{"sha512-" + m512.Encoded(), m512},
		{m512.Encoded(), m512},
		{"sha256-" + m256.Encoded(), m256},
		{"sha512-" + m256.Encoded(), ""},
		{"md5-abcd", ""},
		{"xyz", ""},
		{"", ""},
		{strings.ToUpper(m256.Encoded()), ""},
	} {
		d, ok := parseSegment(tc.in)
		if ok != (tc.want != "") || (ok && d != tc.want) {
			t.Errorf("parseSegment(%q) = %s, %v, want %q", tc.in, d, ok, tc.want)
		}
	}
	if segment(m512) != "sha512-"+m512.Encoded() || segment(m256) != m256.Encoded() {
		t.Errorf("segment: %s, %s", segment(m256), segment(m512))
	}
}
