package shape_test

import (
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
	env, _ := json.Marshal(dsse.Envelope{PayloadType: "application/vnd.in-toto+json", Payload: "e30=", Signatures: []dsse.Signature{{KeyID: "k", Sig: "c2ln"}}})
	b := &protobundle.Bundle{
		MediaType: shape.Bundle03,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "aGludA=="}},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{Signature: []byte("sig")}},
	}
	bj, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	st := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"00"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`)
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
		{"harmless template as config", "application/vnd.oci.image.config.v1+json", `{"chat_template":"{{ messages }}"}`, "unknown field"},
		{"auto_map config as DSSE", shape.DSSEEnvelope, `{"auto_map":{"AutoModel":"evil.Model"},"payloadType":"a","payload":"e30=","signatures":[{"sig":"c2ln"}]}`, "unknown field"},
		{"auto_map config as statement", shape.InToto, `{"_type":"x","subject":[],"predicateType":"p","auto_map":{}}`, "unknown field"},
		{"model config as simple-signing", shape.SimpleSigning, `{"architectures":["LlamaForCausalLM"]}`, "unknown field"},
		{"simple-signing without digest", shape.SimpleSigning, `{"critical":{"type":"cosign container image signature"}}`, "missing"},
		{"DSSE without signatures", shape.DSSEEnvelope, `{"payloadType":"a","payload":"e30=","signatures":[]}`, "required"},
		{"bundle with both contents", shape.Bundle03, `{"mediaType":"m","verificationMaterial":{},"dsseEnvelope":{},"messageSignature":{}}`, "exactly one"},
		{"bundle with extra key", shape.Bundle03, `{"mediaType":"m","verificationMaterial":{},"dsseEnvelope":{},"chat_template":"x"}`, "unknown field"},
		{"array", shape.InToto, `[1,2]`, "not a JSON object"},
		{"trailing data", shape.DSSEEnvelope, string(valid[shape.DSSEEnvelope]) + ` {}`, "after the JSON"},
		{"statement missing predicateType", shape.InToto, `{"_type":"x","subject":[{}]}`, "required"},
		{"duplicate key", shape.InToto, `{"_type":"x","subject":[1],"predicateType":"p","predicate":{},"predicate":{"a":1}}`, "duplicate key"},
		{"key differing in case", shape.DSSEEnvelope, `{"PayloadType":"a","payload":"e30=","signatures":[{"sig":"c2ln"}]}`, "unknown field"},
		{"unicode-folded key", shape.InToto, `{"_type":"x","ſubject":[1],"predicateType":"p"}`, "unknown field"},
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
