// Package sigstoretest builds keyless evidence for tests: a virtual
// Sigstore (sigstore-go's pkg/testing/ca: Fulcio, Rekor, TSA) whose trust
// material is written as an operator's trusted_root.json, bundles
// serialised from its entities, and cosign v2 legacy keyless annotations.
package sigstoretest

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
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

const (
	GHIssuer  = "https://token.actions.githubusercontent.com"
	GHSubject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
)

func NewVirtualSigstore(t testing.TB) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TrustedRootJSON serialises the virtual Sigstore's trust material as a
// trusted_root.json, the way an operator would ship it.
func TrustedRootJSON(t testing.TB, vs *ca.VirtualSigstore) []byte {
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
	return trustedRootJSON(t, vs.FulcioCertificateAuthorities(), fix(vs.CTLogs()), vs.TimestampingAuthorities(), fix(vs.RekorLogs()))
}

func trustedRootJSON(t testing.TB, cas []root.CertificateAuthority, ctlogs map[string]*root.TransparencyLog, tsas []root.TimestampingAuthority, rekor map[string]*root.TransparencyLog) []byte {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, cas, ctlogs, tsas, rekor)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BundleParts says which verification material an entity's bundle carries.
type BundleParts struct{ TLog, Timestamp bool }

// CompleteTLE turns a virtual Rekor entry into a full bundle log entry with
// an inclusion promise (SET) and an inclusion proof, both made by the
// virtual Rekor key.
func CompleteTLE(t testing.TB, vs *ca.VirtualSigstore, e *tlog.Entry) *protorekor.TransparencyLogEntry {
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

// EntityBundle serialises a virtual-Sigstore signed entity as a sigstore
// bundle v0.3 (JSON), keeping the requested parts.
func EntityBundle(t testing.TB, vs *ca.VirtualSigstore, ent *ca.TestEntity, parts BundleParts) []byte {
	t.Helper()
	vc, _ := ent.VerificationContent()
	pb := &protobundle.Bundle{
		MediaType: cosign.BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
		},
	}
	if parts.TLog {
		entries, _ := ent.TlogEntries()
		for _, e := range entries {
			pb.VerificationMaterial.TlogEntries = append(pb.VerificationMaterial.TlogEntries, CompleteTLE(t, vs, e))
		}
	}
	if parts.Timestamp {
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

// LegacyKeylessAnnotations renders a virtual-Sigstore entity as cosign v2
// legacy layer annotations: certificate PEM and the Rekor bundle.
func LegacyKeylessAnnotations(t testing.TB, vs *ca.VirtualSigstore, ent *ca.TestEntity, sig []byte) map[string]string {
	t.Helper()
	vc, _ := ent.VerificationContent()
	ann := map[string]string{
		cosign.CertificateAnnotation: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vc.Certificate().Raw})),
	}
	if sig != nil {
		ann[cosign.SignatureAnnotation] = base64.StdEncoding.EncodeToString(sig)
	} else {
		ann[cosign.SignatureAnnotation] = ""
	}
	entries, _ := ent.TlogEntries()
	tle := CompleteTLE(t, vs, entries[0])
	rb := map[string]any{
		"SignedEntryTimestamp": tle.InclusionPromise.SignedEntryTimestamp,
		"Payload": map[string]any{
			"body":           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
			"integratedTime": tle.IntegratedTime,
			"logIndex":       tle.LogIndex,
			"logID":          hex.EncodeToString(tle.LogId.KeyId),
		},
	}
	b, _ := json.Marshal(rb)
	ann[cosign.BundleAnnotation] = string(b)
	return ann
}

// Later is now plus d.
func Later(d time.Duration) time.Time { return time.Now().Add(d) }

// RFC3161Annotation is cosign's timestamp annotation over data, stamped by
// the virtual TSA.
func RFC3161Annotation(t testing.TB, vs *ca.VirtualSigstore, data []byte) string {
	t.Helper()
	der, err := vs.TimestampResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string][]byte{"SignedRFC3161Timestamp": der})
	return string(b)
}
