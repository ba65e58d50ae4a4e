package dsse

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The test vector from the DSSE protocol specification.
func TestPAESpecVector(t *testing.T) {
	got := string(PAE("http://example.com/HelloWorld", []byte("hello world")))
	if want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"; got != want {
		t.Fatalf("PAE = %q, want %q", got, want)
	}
	if got := string(PAE("", nil)); got != "DSSEv1 0  0 " {
		t.Fatalf("empty PAE = %q", got)
	}
}

type signer struct{ k *ecdsa.PrivateKey }

func newSigner(t testing.TB) signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{k}
}

func (s signer) sign(t testing.TB, msg []byte) []byte {
	h := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, s.k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func (s signer) verify(msg, sig []byte) error {
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(&s.k.PublicKey, h[:], sig) {
		return errors.New("bad signature")
	}
	return nil
}

func envelope(t testing.TB, s signer, pt string, payload []byte, enc *base64.Encoding) []byte {
	sig := s.sign(t, PAE(pt, payload))
	b, _ := json.Marshal(map[string]any{"payloadType": pt, "payload": enc.EncodeToString(payload),
		"signatures": []map[string]string{{"keyid": "k", "sig": enc.EncodeToString(sig)}}})
	return b
}

func TestParseVerify(t *testing.T) {
	s, other := newSigner(t), newSigner(t)
	payload := []byte(`{"_type":"https://in-toto.io/Statement/v1"}` + "\xff?>")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		env, err := Parse(envelope(t, s, "application/vnd.in-toto+json", payload, enc))
		if err != nil {
			t.Fatal(err)
		}
		if string(env.Payload) != string(payload) || env.Signatures[0].KeyID != "k" {
			t.Fatalf("decoded %+v", env)
		}
		if i, err := env.Verify(s.verify); err != nil || i != 0 {
			t.Fatalf("verify: %d %v", i, err)
		}
		if _, err := env.Verify(other.verify); !errors.Is(err, ErrNoValidSignature) {
			t.Fatalf("other key verified: %v", err)
		}
		env.PayloadType = "text/plain"
		if _, err := env.Verify(s.verify); err == nil {
			t.Fatal("payloadType is not covered by the signature")
		}
	}
	bad := map[string]string{
		`{"payload":"e30=","signatures":[{"sig":"AA=="}]}`:                                     "no payloadType",
		`{"payloadType":"x","signatures":[{"sig":"AA=="}]}`:                                    "no payload",
		`{"payloadType":"x","payload":"e30=","signatures":[]}`:                                 "no signatures",
		`{"payloadType":"x","payload":"e30=","signatures":[{"sig":""}]}`:                       "is empty",
		`{"payloadType":"x","payload":"*","signatures":[{"sig":"AA=="}]}`:                      "not base64",
		`{"payloadType":"x","payload":"e30=","signatures":[{"sig":"AA=="}]} {}`:                "data after the JSON value",
		`{"payloadType":"x","payloadType":"y","payload":"e30=","signatures":[{"sig":"AA=="}]}`: `duplicate key "payloadType"`,
		`{"payloadType":"x","Payload":"e30=","signatures":[{"sig":"AA=="}]}`:                   `key "Payload" differs from the field "payload" only in case`,
		`{"payloadType":"x","payload":"e30=","signatures":[{"sig":"AA=="}],"extra":1}`:         `unknown field "extra"`,
		`[1,2]`: "not valid JSON",
		`{"payloadType":"x","payload":"e30=","signatures":[{"sig":"` + strings.Repeat("A", 9000) + `"}]}`: "too large",
	}
	for in, want := range bad {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%.60s) = %v, want %q", in, err, want)
		}
	}
	var many []map[string]string
	for i := 0; i <= MaxSignatures; i++ {
		many = append(many, map[string]string{"sig": "AA=="})
	}
	b, _ := json.Marshal(map[string]any{"payloadType": "x", "payload": "", "signatures": many})
	if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Fatalf("too many signatures: %v", err)
	}
}

// FuzzDSSE parses hostile envelopes and verifies them with a real key: no
// panic, and nothing but the genuine envelope verifies.
func FuzzDSSE(f *testing.F) {
	s := newSigner(f)
	signed := map[string]bool{} // PAE of everything s really signed
	for _, g := range []struct{ pt, payload string }{
		{"application/vnd.in-toto+json", `{"_type":"https://in-toto.io/Statement/v1","subject":[]}`},
		{"text/plain", "hello"},
	} {
		signed[string(PAE(g.pt, []byte(g.payload)))] = true
		f.Add(envelope(f, s, g.pt, []byte(g.payload), base64.RawURLEncoding))
	}
	f.Add([]byte(`{"payloadType":"a","payload":"","signatures":[{"keyid":"","sig":"AA"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Parse(data)
		if err != nil {
			return
		}
		if env.PayloadType == "" || len(env.Signatures) == 0 || len(env.Signatures) > MaxSignatures {
			t.Fatalf("Parse accepted an invalid envelope: %+v", env)
		}
		if _, err := env.Verify(s.verify); err == nil {
			// Only what s really signed may verify.
			if !signed[string(PAE(env.PayloadType, env.Payload))] {
				t.Fatalf("forged envelope verified: %+v", env)
			}
		}
	})
}
