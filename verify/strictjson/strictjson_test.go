package strictjson_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// simpleSigning has the shape of a cosign payload.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

const payload = `{"critical":{"identity":{"docker-reference":"r.example/app"},"image":{"docker-manifest-digest":"sha256:aa"},"type":"cosign container image signature"},"optional":null}`

func TestAccepts(t *testing.T) {
	var s simpleSigning
	if err := strictjson.Unmarshal([]byte(payload), &s); err != nil {
		t.Fatal(err)
	}
	if s.Critical.Image.DockerManifestDigest != "sha256:aa" || s.Critical.Type != "cosign container image signature" {
		t.Fatalf("decoded %+v", s)
	}
	for _, in := range []string{
		` {"a":[1,-0.5e+10,true,false,null,"\u00e9\ud83d\ude00\n"],"b":{"a":1}} `,
		`"x"`, `0`, `-1.25E-3`, `[]`, `{}`, `[[[]]]`,
		`{"a":1,"\u0062":2}`, // distinct keys, one escaped
		`{"k":1,"K":2}`,      // case-distinct keys of a free-form object
	} {
		if err := strictjson.Check([]byte(in)); err != nil {
			t.Errorf("Check(%s): %v", in, err)
		}
		var v any
		if err := strictjson.Unmarshal([]byte(in), &v); err != nil {
			t.Errorf("Unmarshal(%s): %v", in, err)
		}
	}
	// Unknown keys are ignored by Unmarshal, refused by UnmarshalKnown.
	extra := strings.Replace(payload, `"type"`, `"note":1,"type"`, 1)
	if err := strictjson.Unmarshal([]byte(extra), &s); err != nil {
		t.Errorf("Unmarshal with an unknown key: %v", err)
	}
	if err := strictjson.UnmarshalKnown([]byte(extra), &s); err == nil || !strings.Contains(err.Error(), `unknown field "note" at $.critical`) {
		t.Errorf("UnmarshalKnown with an unknown key: %v", err)
	}
	if err := strictjson.UnmarshalKnown([]byte(payload), &s); err != nil {
		t.Errorf("UnmarshalKnown: %v", err)
	}
}

func TestRefuses(t *testing.T) {
	deep := strings.Repeat("[", strictjson.MaxDepth+1) + strings.Repeat("]", strictjson.MaxDepth+1)
	cases := []struct{ name, in, want string }{
		{"duplicate critical", `{"critical":{"type":"a"},"critical":{"type":"b"},"optional":null}`, `duplicate key "critical" at $ (byte 25)`},
		{"duplicate deep", strings.Replace(payload, `"type"`, `"type":"x","type"`, 1), `duplicate key "type" at $.critical`},
		{"duplicate escaped", `{"optional":{"a":1,"\u0061":2}}`, `duplicate key "a" at $.optional`},
		{"duplicate in array", `{"optional":{"l":[{"x":1},{"x":1,"x":2}]}}`, `duplicate key "x" at $.optional.l[1]`},
		{"case Critical", strings.Replace(payload, `"critical"`, `"Critical"`, 1), `key "Critical" differs from the field "critical" only in case at $`},
		{"case digest", strings.Replace(payload, "docker-manifest-digest", "docker-manifest-Digest", 1), `key "docker-manifest-Digest" differs from the field "docker-manifest-digest" only in case at $.critical.image`},
		{"kelvin sign", `{"critical":{"type":"x","identity":{"doc\u212aer-reference":"y"}}}`, "only in case at $.critical.identity"},
		{"trailing value", payload + `{}`, "data after the JSON value"},
		{"trailing garbage", payload + ` x`, "data after the JSON value"},
		{"invalid UTF-8", `{"critical":{"type":"` + "\xff" + `"}}`, "invalid UTF-8 at $.critical.type (byte 21)"},
		{"overlong UTF-8", "\"\xc0\xaf\"", "invalid UTF-8"},
		{"lone high surrogate", `{"optional":{"a":"\ud800"}}`, "lone high surrogate at $.optional.a"},
		{"lone low surrogate", `{"optional":{"a":"\udc00x"}}`, "lone low surrogate"},
		{"reversed pair", `"\ude00\ud83d"`, "lone low surrogate"},
		{"too deep", deep, "nested more than 64 levels deep"},
		{"empty", ` `, "no JSON value"},
		{"bad literal", `tru`, "invalid literal"},
		{"leading zero", `01`, "data after the JSON value"},
		{"bare minus", `-`, "invalid number"},
		{"bad exponent", `1e`, "no digit in the exponent"},
		{"control char", "\"a\tb\"", "control character"},
		{"bad escape", `"\x"`, `invalid escape \x`},
		{"single quotes", `{'a':1}`, "object key is not a string"},
		{"trailing comma", `[1,]`, "invalid character ']' looking for a value"},
		{"unterminated", `{"a":1`, "unterminated object"},
		{"BOM", "\ufeff{}", "invalid character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s simpleSigning
			err := strictjson.Unmarshal([]byte(c.in), &s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Unmarshal: %v, want an error containing %q", err, c.want)
			}
			var se *strictjson.Error
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *strictjson.Error", err)
			}
		})
	}
}

// embedded is how verify/attest probes bundle files: promoted fields of an
// unexported embedded struct, and types that decode themselves.
type embedded struct {
	MediaType string `json:"mediaType"`
	inner
	When time.Time       `json:"when"`
	Raw  json.RawMessage `json:"raw"`
	List []struct {
		Name string `json:"name"`
	} `json:"list"`
	ByName map[string]struct {
		Size int `json:"size"`
	} `json:"byName"`
	Skip string `json:"-"`
}

type inner struct {
	Payload string `json:"payload"`
}

func TestGuide(t *testing.T) {
	var v embedded
	in := `{"mediaType":"m","payload":"p","when":"2026-01-01T00:00:00Z","raw":{"Payload":1},"list":[{"name":"a"}],"byName":{"X":{"size":1}}}`
	if err := strictjson.UnmarshalKnown([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	if v.Payload != "p" || v.List[0].Name != "a" || v.ByName["X"].Size != 1 {
		t.Fatalf("decoded %+v", v)
	}
	for _, c := range []struct{ in, want string }{
		{`{"Payload":"p"}`, `key "Payload" differs from the field "payload"`},
		{`{"list":[{"Name":"a"}]}`, "only in case at $.list[0]"},
		{`{"byName":{"x":{"Size":1}}}`, `only in case at $.byName.x`},
		{`{"Skip":"s"}`, `unknown field "Skip"`}, // a json:"-" field is no field
	} {
		if err := strictjson.UnmarshalKnown([]byte(c.in), &v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("UnmarshalKnown(%s): %v, want %q", c.in, err, c.want)
		}
	}
}
