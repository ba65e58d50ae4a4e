package cosign

import (
	_ "crypto/sha512" // sha512 digests

	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

var subject = digest.FromString("image")

func payload(d digest.Digest, typ string) []byte {
	b, _ := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": "registry.example/app"},
			"image":    map[string]string{"docker-manifest-digest": d.String()},
			"type":     typ,
		},
		"optional": map[string]any{"creator": "test"},
	})
	return b
}

func TestParseSimpleSigning(t *testing.T) {
	ss, err := ParseSimpleSigning(payload(subject, SimpleSigningType))
	if err != nil {
		t.Fatal(err)
	}
	if ss.ManifestDigest != subject || ss.DockerReference != "registry.example/app" || ss.Optional["creator"] != "test" {
		t.Fatalf("%+v", ss)
	}
	bad := map[string]string{
		string(payload(subject, "other")):                                                                         "critical.type",
		`{"critical":{"type":"cosign container image signature"}}`:                                                "docker-manifest-digest",
		`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"sha256:zz"}}}`: "invalid docker-manifest-digest",
		`{"optional":{}}`: "no critical section",
		`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"` + subject.String() + `"}}} x`:             "data after the JSON value",
		`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"` + subject.String() + `"}}}]`:              "data after the JSON value",
		`{"critical":{},"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"` + subject.String() + `"}}}`: `duplicate key "critical" at $`,
		`{"Critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"` + subject.String() + `"}}}`:               `key "Critical" differs from the field "critical" only in case`,
		`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-Digest":"` + subject.String() + `"}}}`:               `only in case at $.critical.image`,
		`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"` + subject.String() + `"},"x":1}}`:         `unknown field "x" at $.critical`,
		`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"` + subject.String() + `"}},"x":1}`:         `unknown field "x" at $`,
		`nope`: "not valid JSON",
	}
	for in, want := range bad {
		if _, err := ParseSimpleSigning([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSimpleSigning(%.60s) = %v, want %q", in, err, want)
		}
	}
	if TagFor(subject, "sig") != "sha256-"+subject.Encoded()+".sig" {
		t.Fatal(TagFor(subject, "sig"))
	}
}

func TestAnnotations(t *testing.T) {
	if _, err := DecodeSignatureAnnotation(""); err == nil {
		t.Fatal("empty signature accepted")
	}
	if b, err := DecodeSignatureAnnotation(base64.StdEncoding.EncodeToString([]byte{1, 2})); err != nil || len(b) != 2 {
		t.Fatal(err)
	}
	rb := `{"SignedEntryTimestamp":"AQI=","Payload":{"body":"e30=","integratedTime":1700000000,"logIndex":3,"logID":"abcd"}}`
	b, err := ParseRekorBundle(rb)
	if err != nil || b.LogIndex != 3 || string(b.Body) != "{}" || len(b.LogID) != 2 {
		t.Fatalf("%+v %v", b, err)
	}
	for _, bad := range []string{`{}`, `{"SignedEntryTimestamp":"AQI=","Payload":{"body":"e30="}}`, `{"SignedEntryTimestamp":"AQI=","Payload":{"body":"e30=","integratedTime":1,"logIndex":1,"logID":"zz"}}`, `x`} {
		if _, err := ParseRekorBundle(bad); err == nil {
			t.Errorf("ParseRekorBundle(%s) accepted", bad)
		}
	}
	if _, err := ParseRFC3161Annotation(`{"SignedRFC3161Timestamp":"AQI="}`); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRFC3161Annotation(`{}`); err == nil {
		t.Fatal("empty timestamp accepted")
	}
}

// FuzzSimpleSigning: hostile payloads never panic; an accepted payload has
// the cosign type and a valid digest.
func FuzzSimpleSigning(f *testing.F) {
	f.Add(payload(subject, SimpleSigningType))
	f.Add(payload(digest.SHA512.FromString("x"), SimpleSigningType))
	f.Add(payload(subject, "atomic container signature"))
	f.Add([]byte(`{"critical":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ss, err := ParseSimpleSigning(data)
		if err != nil {
			return
		}
		if err := ss.ManifestDigest.Validate(); err != nil {
			t.Fatalf("accepted invalid digest %q", ss.ManifestDigest)
		}
		_, _ = ParseRekorBundle(string(data))
		_, _ = ParseRFC3161Annotation(string(data))
	})
}
