package strictjson_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pullgate/pullgate/test/sigstoretest"
	"github.com/pullgate/pullgate/verify/strictjson"
)

// realPayloads are evidence documents made by real signing code: a
// sigstore bundle v0.3 from sigstore-go's virtual Sigstore (certificate,
// Rekor entry, RFC 3161 timestamp), its DSSE envelope and in-toto
// statement, and a cosign simple-signing payload.
func realPayloads(t testing.TB) map[string][]byte {
	t.Helper()
	vs := sigstoretest.NewVirtualSigstore(t)
	st := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r.example/app","digest":{"sha256":"` + strings.Repeat("ab", 32) + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://ci.example/type","externalParameters":{"ref":"refs/heads/main"},"resolvedDependencies":[{"uri":"git+https://github.com/acme/app","digest":{"gitCommit":"` + strings.Repeat("c", 40) + `"}}]},"runDetails":{"builder":{"id":"https://ci.example/builder"},"metadata":{"invocationId":"1"}}}}`)
	ent, err := vs.Attest(sigstoretest.GHSubject, sigstoretest.GHIssuer, st)
	if err != nil {
		t.Fatal(err)
	}
	b := sigstoretest.EntityBundle(t, vs, ent, sigstoretest.BundleParts{TLog: true, Timestamp: true})
	var probe struct {
		DSSEEnvelope json.RawMessage `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		t.Fatal(err)
	}
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(probe.DSSEEnvelope, &env); err != nil {
		t.Fatal(err)
	}
	p, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"bundle":    b,
		"envelope":  probe.DSSEEnvelope,
		"statement": p,
		"simple":    []byte(payload),
	}
}

var fieldsAt = map[string][]string{
	"$":                {"critical", "optional"},
	"$.critical":       {"identity", "image", "type"},
	"$.critical.image": {"docker-manifest-digest"},
	"$.critical.ident": {"docker-reference"},
}

// FuzzUnmarshal checks strictjson against an independent reading of the
// same bytes with encoding/json's tokenizer: what strictjson accepts is
// valid JSON, one value, valid UTF-8, with no repeated key, no case
// variant of a field of the target and nesting within MaxDepth; and valid
// input with none of those faults is accepted.
func FuzzUnmarshal(f *testing.F) {
	for _, b := range realPayloads(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"critical":{"type":"a"},"critical":{"type":"b"},"optional":null}`))
	f.Add([]byte(strings.Replace(payload, `"critical"`, `"Critical"`, 1)))
	f.Add([]byte(strings.Replace(payload, "docker-manifest-digest", "docker-manifest-Digest", 1)))
	f.Add([]byte(`{"optional":{"a":1,"\u0061":2}}`))
	f.Add([]byte(`{"optional":{"a":"\ud800"}}`))
	f.Add([]byte(payload + `{}`))
	f.Add([]byte(strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70)))
	f.Add([]byte(strings.Repeat(`[`, 64) + strings.Repeat("]", 64)))
	f.Fuzz(func(t *testing.T, in []byte) {
		var s simpleSigning
		err := strictjson.Unmarshal(in, &s)
		cerr := strictjson.Check(in)
		if cerr != nil && err == nil {
			t.Fatalf("Unmarshal accepted what Check refused: %v", cerr)
		}
		var se *strictjson.Error
		if cerr != nil && !errors.As(cerr, &se) {
			t.Fatalf("Check error %T is not a *strictjson.Error", cerr)
		}
		faults := oracle(in)
		if cerr == nil && faults != "" {
			t.Fatalf("Check accepted input with %s: %q", faults, in)
		}
		if cerr != nil && faults == "" && json.Valid(in) {
			t.Fatalf("Check refused valid input without a fault: %v: %q", cerr, in)
		}
		if err == nil {
			var lenient simpleSigning
			if json.Unmarshal(in, &lenient) != nil {
				t.Fatalf("accepted input encoding/json refuses: %q", in)
			}
			if cv := caseVariant(in); cv != "" {
				t.Fatalf("Unmarshal accepted the case variant %s: %q", cv, in)
			}
		}
	})
}

// loneSurrogate reports a \u escape of a UTF-16 surrogate outside a
// high+low pair in valid JSON (where backslashes occur only in strings).
func loneSurrogate(in []byte) bool {
	u := func(i int) (uint64, bool) {
		if i+6 > len(in) || in[i] != '\\' || in[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(in[i+2:i+6]), 16, 32)
		return v, err == nil
	}
	for i := 0; i < len(in); i++ {
		if in[i] != '\\' {
			continue
		}
		v, ok := u(i)
		if !ok {
			i++ // another escape: skip its character
			continue
		}
		switch {
		case v >= 0xdc00 && v <= 0xdfff:
			return true
		case v >= 0xd800 && v <= 0xdbff:
			lo, ok := u(i + 6)
			if !ok || lo < 0xdc00 || lo > 0xdfff {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

// oracle names the faults of in found with encoding/json ("" for none).
func oracle(in []byte) string {
	if !json.Valid(in) {
		return "invalid JSON"
	}
	if !utf8.Valid(in) {
		return "invalid UTF-8"
	}
	if loneSurrogate(in) {
		return "a lone surrogate escape"
	}
	dec := json.NewDecoder(bytes.NewReader(in))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return ""
		}
		if err != nil {
			return "invalid JSON"
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, ok := tok.(string); ok && top != nil && top.obj && top.key {
			if top.keys[k] {
				return "a repeated key"
			}
			top.keys[k] = true
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= strictjson.MaxDepth {
				return "too deep nesting"
			}
			stack = append(stack, &frame{obj: tok == json.Delim('{'), keys: map[string]bool{}, key: tok == json.Delim('{')})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
}

// caseVariant returns a key of in that matches a field of simpleSigning
// only case-insensitively, or "".
func caseVariant(in []byte) string {
	var v any
	if json.Unmarshal(in, &v) != nil {
		return ""
	}
	var walk func(path string, v any) string
	walk = func(path string, v any) string {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		for k, c := range m {
			for _, f := range fieldsAt[path] {
				if k != f && strings.EqualFold(k, f) {
					return path + "." + k
				}
			}
			child := path + "." + k
			if path == "$.critical" && k == "identity" {
				child = "$.critical.ident"
			}
			if _, ok := fieldsAt[child]; ok {
				if r := walk(child, c); r != "" {
					return r
				}
			}
		}
		return ""
	}
	return walk("$", v)
}
