package shape_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pullgate/pullgate/verify/shape"
)

const someDigest = "sha256:4f1c3b7e5a0d2e9f8b6c4a2d0e8f6b4c2a0e8d6f4b2c0a8e6d4f2b0c8a6e4d2f"

// validBlobs are produced by the libraries cosign and Sigstore use.
func validBlobs(t testing.TB) map[string][]byte {
	t.Helper()
	ref, err := name.ParseReference("registry.example/app@" + someDigest)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := json.Marshal(payload.Cosign{Image: ref.(name.Digest), Annotations: map[string]any{"by": "ci"}})
	if err != nil {
		t.Fatal(err)
	}
	st := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"00"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`)
	env := envelope(st)
	b := &protobundle.Bundle{
		MediaType: shape.Bundle03,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "aGludA=="}},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: make([]byte, 32)},
			Signature:     []byte("sig"),
		}},
	}
	bj, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := empty.Image.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		shape.SimpleSigning:                        ss,
		shape.DSSEEnvelope:                         env,
		shape.Bundle03:                             bj,
		shape.Bundle03Params:                       bj,
		shape.InToto:                               st,
		shape.InToto + " (envelope)":               env,
		"application/vnd.oci.image.config.v1+json": cfg,
		"application/vnd.oci.empty.v1+json":        []byte(`{}`),
	}
}

// envelope is a DSSE envelope of an in-toto statement as cosign writes it
// (go-securesystemslib's types; the signature is not checked here).
func envelope(statement []byte) []byte {
	env, _ := json.Marshal(dsse.Envelope{PayloadType: "application/vnd.in-toto+json", Payload: base64.StdEncoding.EncodeToString(statement), Signatures: []dsse.Signature{{KeyID: "k", Sig: "c2ln"}}})
	return env
}

func TestAcceptsEvidence(t *testing.T) {
	for mt, b := range validBlobs(t) {
		if err := shape.Check(strings.TrimSuffix(mt, " (envelope)"), b); err != nil {
			t.Errorf("%s: %v\n%s", mt, err, b)
		}
	}
}

func TestRefusesOtherJSON(t *testing.T) {
	valid := validBlobs(t)
	cases := []struct{ name, mediaType, blob, want string }{
		{"chat template as config", "application/vnd.oci.image.config.v1+json", `{"chat_template":"{{ cycler.__init__.__globals__.os.popen('id').read() }}"}`, "chat_template"},
		{"harmless template as config", "application/vnd.oci.image.config.v1+json", `{"chat_template":"{{ messages }}"}`, `unknown field "chat_template"`},
		{"auto_map config as DSSE", shape.DSSEEnvelope, `{"auto_map":{"AutoModel":"evil.Model"},"payloadType":"a","payload":"e30=","signatures":[{"sig":"c2ln"}]}`, "unknown field"},
		{"auto_map config as statement", shape.InToto, `{"_type":"x","subject":[],"predicateType":"p","auto_map":{}}`, "unknown field"},
		{"model config as simple-signing", shape.SimpleSigning, `{"architectures":["LlamaForCausalLM"]}`, "unknown field"},
		{"simple-signing without digest", shape.SimpleSigning, `{"critical":{"type":"cosign container image signature"}}`, "no critical.image.docker-manifest-digest"},
		{"simple-signing with a duplicate critical", shape.SimpleSigning, strings.Replace(string(valid[shape.SimpleSigning]), `{"critical":`, `{"critical":{"type":"x"},"critical":`, 1), `duplicate key "critical" at $`},
		{"simple-signing with a case-variant digest key", shape.SimpleSigning, strings.Replace(string(valid[shape.SimpleSigning]), "docker-manifest-digest", "docker-manifest-Digest", 1), "only in case at $.critical.image"},
		{"simple-signing with an unknown critical member", shape.SimpleSigning, strings.Replace(string(valid[shape.SimpleSigning]), `"type":`, `"extra":1,"type":`, 1), `unknown field "extra" at $.critical`},
		{"simple-signing of another type", shape.SimpleSigning, strings.Replace(string(valid[shape.SimpleSigning]), "cosign container image signature", "atomic container signature", 1), "critical.type"},
		{"DSSE without signatures", shape.DSSEEnvelope, `{"payloadType":"a","payload":"e30=","signatures":[]}`, "no signatures"},
		{"DSSE of another payload type", shape.DSSEEnvelope, strings.Replace(string(valid[shape.DSSEEnvelope]), "application/vnd.in-toto+json", "text/plain", 1), "payloadType"},
		{"DSSE of a statement with a duplicate key", shape.DSSEEnvelope, string(envelope([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"00"}}],"predicateType":"p","predicateType":"q"}`))), `duplicate key "predicateType"`},
		{"bundle with both contents", shape.Bundle03, `{"mediaType":"m","verificationMaterial":{},"dsseEnvelope":{},"messageSignature":{}}`, "oneof"},
		{"bundle with a duplicate key", shape.Bundle03, strings.Replace(string(valid[shape.Bundle03]), `"mediaType"`, `"mediaType":"x","mediaType"`, 1), `duplicate key "mediaType"`},
		{"bundle without a message digest", shape.Bundle03, `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"aGludA=="}},"messageSignature":{"signature":"c2ln"}}`, "bundle"},
		{"bundle with extra key", shape.Bundle03, `{"mediaType":"m","verificationMaterial":{},"dsseEnvelope":{},"chat_template":"x"}`, "unknown field"},
		{"array", shape.InToto, `[1,2]`, "not a JSON object"},
		{"trailing data", shape.DSSEEnvelope, string(valid[shape.DSSEEnvelope]) + ` {}`, "after the JSON"},
		{"statement missing predicateType", shape.InToto, `{"_type":"x","subject":[{}]}`, "required"},
		{"duplicate key", shape.InToto, `{"_type":"x","subject":[1],"predicateType":"p","predicate":{},"predicate":{"a":1}}`, "duplicate key"},
		{"key differing in case", shape.DSSEEnvelope, `{"PayloadType":"a","payload":"e30=","signatures":[{"sig":"c2ln"}]}`, "only in case"},
		{"unicode-folded key", shape.InToto, `{"_type":"x","ſubject":[1],"predicateType":"p"}`, "only in case"},
		{"invalid UTF-8", shape.DSSEEnvelope, "{\"payloadType\":\"\xff\",\"payload\":\"e30=\",\"signatures\":[{\"sig\":\"c2ln\"}]}", "UTF-8"},
	}
	for _, c := range cases {
		err := shape.Check(c.mediaType, []byte(c.blob))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for mt, b := range validBlobs(f) {
		f.Add(strings.TrimSuffix(mt, " (envelope)"), b)
	}
	f.Add(shape.DSSEEnvelope, []byte(`{"payloadType":"a","payload":"e30=","signatures":[{"sig":"c2ln"}]} x`))
	f.Add("application/vnd.oci.image.config.v1+json", []byte(`{"config":{"Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":[]}}`))
	f.Fuzz(func(t *testing.T, mediaType string, b []byte) {
		if shape.Check(mediaType, b) != nil {
			return
		}
		// Whatever passes is one JSON object.
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("accepted %q as %s but it is not a JSON object: %v", b, mediaType, err)
		}
	})
}
