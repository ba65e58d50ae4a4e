package ocimanifest_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify/ocimanifest"
)

var (
	d256 = digest.FromString("a").String()
	d512 = digest.SHA512.FromString("a").String()
	cfg  = `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d256 + `","size":2}`
)

const (
	oci    = ocimanifest.MediaTypeOCIManifest
	ociIx  = ocimanifest.MediaTypeOCIIndex
	docker = ocimanifest.MediaTypeDockerManifest
	dList  = ocimanifest.MediaTypeDockerList
)

func layer(dg string, size int) string {
	return `{"mediaType":"application/octet-stream","digest":"` + dg + `","size":` + itoa(size) + `}`
}

func itoa(i int) string {
	if i < 0 {
		return "-" + itoa(-i)
	}
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + itoa(i%10)
}

// Every validation rule of Parse, accepted and refused; these are the rules
// proxy.parseManifest enforced before it moved here, unchanged.
func TestParse(t *testing.T) {
	for _, c := range []struct {
		name, body, declared string
		wantMT               string // "" when refused
		wantErr              string
	}{
		{"oci manifest", `{"schemaVersion":2,"mediaType":"` + oci + `","config":` + cfg + `,"layers":[` + layer(d256, 1) + `]}`, "", oci, ""},
		{"docker manifest declared", `{"schemaVersion":2,"mediaType":"` + docker + `","config":` + cfg + `,"layers":[]}`, docker, docker, ""},
		{"embedded omitted, declared docker", `{"schemaVersion":2,"config":` + cfg + `}`, docker, docker, ""},
		{"embedded omitted, declared unknown: inferred manifest", `{"schemaVersion":2,"config":` + cfg + `}`, "application/json", oci, ""},
		{"embedded omitted, children, no config: inferred index", `{"schemaVersion":2,"manifests":[]}`, "", ociIx, ""},
		{"embedded omitted, children and config: inferred manifest, refused", `{"schemaVersion":2,"config":` + cfg + `,"manifests":[]}`, "", "", "manifest has child manifests"},
		{"embedded omitted, declared index with config", `{"schemaVersion":2,"config":` + cfg + `}`, ociIx, "", "index has config or layers"},
		{"declared mismatch", `{"schemaVersion":2,"mediaType":"` + oci + `","config":` + cfg + `}`, docker, "", "media type mismatch"},
		{"declared index mismatch", `{"schemaVersion":2,"mediaType":"` + ociIx + `","manifests":[]}`, dList, "", "media type mismatch"},
		{"declared unknown is not a mismatch", `{"schemaVersion":2,"mediaType":"` + oci + `","config":` + cfg + `}`, "text/plain", oci, ""},
		{"declared unknown, embedded unknown", `{"schemaVersion":2,"mediaType":"application/vnd.x","config":` + cfg + `}`, "text/plain", "", "unsupported manifest media type"},
		{"schema 1", `{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}`, "", "", "schemaVersion"},
		{"no schemaVersion", `{"mediaType":"` + oci + `","config":` + cfg + `}`, "", "", "schemaVersion"},
		{"schemaVersion as string", `{"schemaVersion":"2","config":` + cfg + `}`, "", "", "not a valid JSON manifest"},
		{"not JSON", `{"schemaVersion":2,`, "", "", "not a valid JSON manifest"},
		{"two values", `{"schemaVersion":2,"config":` + cfg + `} {}`, "", "", "not a valid JSON manifest"},
		{"index with layers", `{"schemaVersion":2,"mediaType":"` + ociIx + `","manifests":[],"layers":[]}`, "", "", "index has config or layers"},
		{"index with null layers", `{"schemaVersion":2,"mediaType":"` + ociIx + `","manifests":[],"layers":null}`, "", ociIx, ""},
		{"manifest without config", `{"schemaVersion":2,"mediaType":"` + oci + `","layers":[]}`, "", "", "manifest has no config"},
		{"manifest with null config", `{"schemaVersion":2,"mediaType":"` + oci + `","config":null}`, "", "", "manifest has no config"},
		{"manifest with children", `{"schemaVersion":2,"mediaType":"` + docker + `","config":` + cfg + `,"manifests":[]}`, "", "", "manifest has child manifests"},
		{"sha512 layer", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + layer(d512, 1) + `]}`, "", oci, ""},
		{"sha384 layer", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + layer(digest.SHA384.FromString("a").String(), 1) + `]}`, "", "", "invalid digest"},
		{"uppercase hex", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + layer(strings.ToUpper(d256[7:]), 1) + `]}`, "", "", "invalid digest"},
		{"short hex", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + layer(d256[:70], 1) + `]}`, "", "", "invalid digest"},
		{"empty digest", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + layer("", 1) + `]}`, "", "", "invalid digest"},
		{"negative size", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + layer(d256, -1) + `]}`, "", "", "negative size"},
		{"config bad digest", `{"schemaVersion":2,"config":{"digest":"md5:0cc175b9c0f1b6a831c399e269772661","size":1}}`, "", "", "invalid digest"},
		{"child bad digest", `{"schemaVersion":2,"mediaType":"` + ociIx + `","manifests":[` + layer("sha256:x", 1) + `]}`, "", "", "child manifest has an invalid digest"},
		{"child negative size", `{"schemaVersion":2,"mediaType":"` + dList + `","manifests":[` + layer(d512, -5) + `]}`, "", "", "negative size"},
		{"subject bad digest", `{"schemaVersion":2,"config":` + cfg + `,"subject":` + layer("sha256:", 1) + `}`, "", "", "subject has an invalid digest"},
		{"subject negative size", `{"schemaVersion":2,"mediaType":"` + ociIx + `","manifests":[],"subject":` + layer(d256, -1) + `}`, "", "", "negative size"},
		{"subject sha512", `{"schemaVersion":2,"config":` + cfg + `,"subject":` + layer(d512, 1) + `}`, "", oci, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := ocimanifest.Parse([]byte(c.body), c.declared)
			if c.wantMT == "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Parse = %+v, %v; want an error with %q", m, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != c.wantMT {
				t.Fatalf("media type %s, want %s", m.MediaType, c.wantMT)
			}
			if string(m.Raw) != c.body {
				t.Fatal("Raw is not the bytes parsed")
			}
		})
	}
}

func TestBlobsAndIndex(t *testing.T) {
	body := `{"schemaVersion":2,"artifactType":"application/x","config":` + cfg + `,"layers":[` + layer(d512, 3) + `,` + layer(d256, 4) + `],"annotations":{"k":"v"}}`
	m, err := ocimanifest.Parse([]byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	b := m.Blobs()
	if m.IsIndex() || len(b) != 3 || b[0].Size != 2 || b[1].Digest.String() != d512 || b[2].Size != 4 || m.ArtifactType != "application/x" || m.Annotations["k"] != "v" {
		t.Fatalf("%+v %+v", m, b)
	}
	ix, err := ocimanifest.Parse([]byte(`{"schemaVersion":2,"manifests":[`+layer(d256, 1)+`]}`), dList)
	if err != nil {
		t.Fatal(err)
	}
	if !ix.IsIndex() || ix.MediaType != dList || len(ix.Blobs()) != 0 || len(ix.Manifests) != 1 {
		t.Fatalf("%+v", ix)
	}
}

// Derived computes once per parsed manifest, also across copies and
// goroutines; a Manifest not made by Parse computes every time.
func TestDerived(t *testing.T) {
	m, err := ocimanifest.Parse([]byte(`{"schemaVersion":2,"config":`+cfg+`}`), "")
	if err != nil {
		t.Fatal(err)
	}
	type key struct{}
	var mu sync.Mutex
	n := 0
	compute := func() any { mu.Lock(); n++; mu.Unlock(); return n }
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { m.Derived(key{}, compute) })
	}
	wg.Wait()
	cp := *m
	if v := cp.Derived(key{}, compute).(int); v != 1 || n != 1 {
		t.Fatalf("computed %d times, value %d", n, v)
	}
	if v := m.Derived(struct{ k int }{1}, compute).(int); v != 2 {
		t.Fatalf("another key shared a value: %d", v)
	}
	lit := &ocimanifest.Manifest{Config: &ocispec.Descriptor{}}
	lit.Derived(key{}, compute)
	lit.Derived(key{}, compute)
	if n != 4 {
		t.Fatalf("literal manifest: computed %d times in all, want 4", n)
	}
}
