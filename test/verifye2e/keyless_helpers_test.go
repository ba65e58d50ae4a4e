package verifye2e

// Keyless helpers adapted from verify/keyless_helpers_test.go: a virtual
// Sigstore (Fulcio, Rekor, TSA) whose trust material is written as the
// operator's trusted_root.json, and bundles serialised from its entities.

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pullgate/pullgate/verify/cosign"
)

func later(d time.Duration) time.Time { return time.Now().Add(d) }

func newVirtualSigstore(t testing.TB) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// trustedRootJSON serialises the virtual Sigstore's trust material as a
// trusted_root.json, the way an operator would ship it.
func trustedRootJSON(t testing.TB, vs *ca.VirtualSigstore) []byte {
	t.Helper()
	// The virtual Sigstore keeps log IDs as hex text; a trusted_root.json
	// carries the raw key ID bytes, so decode them for the file.
	fix := func(in map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
		out := map[string]*root.TransparencyLog{}
		for k, v := range in {
			c := *v
			id, err := hex.DecodeString(string(v.ID))
			if err != nil {
				t.Fatal(err)
			}
			c.ID = id
			out[k] = &c
		}
		return out
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), fix(vs.CTLogs()), vs.TimestampingAuthorities(), fix(vs.RekorLogs()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type bundleParts struct{ tlog, timestamp bool }

// completeTLE turns a virtual Rekor entry into a full bundle log entry with
// an inclusion promise (SET) and an inclusion proof, both made by the
// virtual Rekor key.
func completeTLE(t testing.TB, vs *ca.VirtualSigstore, e *tlog.Entry) *protorekor.TransparencyLogEntry {
	t.Helper()
	tle := proto.Clone(e.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(tle.CanonicalizedBody, &kv); err != nil {
		t.Fatal(err)
	}
	tle.KindVersion = &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion}
	set, err := vs.RekorSignPayload(tlog.RekorPayload{
		Body: base64.StdEncoding.EncodeToString(tle.CanonicalizedBody), IntegratedTime: tle.IntegratedTime,
		LogIndex: tle.LogIndex, LogID: hex.EncodeToString(tle.LogId.KeyId),
	})
	if err != nil {
		t.Fatal(err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	ip, err := vs.GetInclusionProof(tle.CanonicalizedBody)
	if err != nil {
		t.Fatal(err)
	}
	var hashes [][]byte
	for _, h := range ip.Hashes {
		b, _ := hex.DecodeString(h)
		hashes = append(hashes, b)
	}
	rh, _ := hex.DecodeString(*ip.RootHash)
	tle.InclusionProof = &protorekor.InclusionProof{LogIndex: *ip.LogIndex, RootHash: rh, TreeSize: *ip.TreeSize, Hashes: hashes, Checkpoint: &protorekor.Checkpoint{Envelope: *ip.Checkpoint}}
	return tle
}

// entityBundle serialises a virtual-Sigstore signed entity as a sigstore
// bundle v0.3 (JSON), keeping the requested parts.
func entityBundle(t testing.TB, vs *ca.VirtualSigstore, ent *ca.TestEntity, parts bundleParts) []byte {
	t.Helper()
	vc, _ := ent.VerificationContent()
	pb := &protobundle.Bundle{
		MediaType: cosign.BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
		},
	}
	if parts.tlog {
		entries, _ := ent.TlogEntries()
		for _, e := range entries {
			pb.VerificationMaterial.TlogEntries = append(pb.VerificationMaterial.TlogEntries, completeTLE(t, vs, e))
		}
	}
	if parts.timestamp {
		stamps, _ := ent.Timestamps()
		tvd := &protobundle.TimestampVerificationData{}
		for _, s := range stamps {
			tvd.Rfc3161Timestamps = append(tvd.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: s})
		}
		pb.VerificationMaterial.TimestampVerificationData = tvd
	}
	sc, _ := ent.SignatureContent()
	if env := sc.EnvelopeContent(); env != nil {
		raw := env.RawEnvelope()
		payload, err := base64.StdEncoding.DecodeString(raw.Payload)
		if err != nil {
			t.Fatal(err)
		}
		pe := &protodsse.Envelope{Payload: payload, PayloadType: raw.PayloadType}
		for _, s := range raw.Signatures {
			sig, _ := base64.StdEncoding.DecodeString(s.Sig)
			pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: sig, Keyid: s.KeyID})
		}
		pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe}
	} else {
		ms := sc.MessageSignatureContent()
		pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: ms.Digest()},
			Signature:     ms.Signature(),
		}}
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
