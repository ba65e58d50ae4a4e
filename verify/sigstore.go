package verify

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/dsse"
	"github.com/pullgate/pullgate/verify/pubkey"
	"github.com/pullgate/pullgate/verify/strictjson"
)

// MaxBundleSize bounds a sigstore bundle accepted by ParseBundle.
const MaxBundleSize = 8 << 20

// ParseBundle parses and structurally validates a sigstore bundle (v0.1 to
// v0.3) from hostile JSON. It verifies nothing.
//
// The bundle is read one way: strictjson checks it first (one value, no
// repeated key at any depth, valid UTF-8, bounded nesting), then protojson
// decodes it, which refuses unknown and case-variant field names and a
// field given twice under its JSON and its proto name, and accepts either
// name alone, as the protobuf JSON mapping requires of every reader.
func ParseBundle(data []byte) (*bundle.Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("bundle of %d bytes exceeds the %d byte limit", len(data), MaxBundleSize)
	}
	if err := strictjson.Check(data); err != nil {
		return nil, fmt.Errorf("bundle: not valid JSON: %w", err)
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if b.Bundle == nil || b.VerificationMaterial == nil || b.Content == nil {
		return nil, errors.New("bundle: incomplete")
	}
	return &b, nil
}

// evidence is one piece of signed evidence in a form every verification
// path understands. Exactly one of message (+sig), env, msgDigest is set;
// bundle is set for sigstore bundles (then env or msgDigest mirrors it).
type evidence struct {
	legacy     bool
	message    []byte // legacy simple-signing payload (signed directly)
	sig        []byte
	env        *dsse.Envelope
	msgDigest  []byte // bundle message signature: SHA-256 of the artifact
	bundle     *bundle.Bundle
	cert       *x509.Certificate
	rekor      *cosign.RekorBundle
	timestamps [][]byte
	// tsData is what a legacy RFC 3161 timestamp was taken over when it is
	// not the signature (cosign v2 attestations: the envelope).
	tsData []byte
}

type signerMatch struct{ name, identity string }

type outcomeFailure struct {
	kind   FailureKind
	reason string
}

type verifyOutcome struct {
	signers  []signerMatch
	signedAt time.Time
	fail     *outcomeFailure
}

func (o verifyOutcome) names() string {
	var n []string
	for _, s := range o.signers {
		n = append(n, s.name)
	}
	return strings.Join(n, ", ")
}

// verify checks e against every configured key and identity.
func (c *collector) verify(e *evidence) verifyOutcome {
	req := c.opts.VerifyOptions
	needTime := req.RequireTlog || req.RequireTimestamp
	var out verifyOutcome
	var invalid, unmet []string
	if len(c.trust.keys) == 0 && len(c.trust.identities) == 0 {
		return verifyOutcome{fail: &outcomeFailure{FailInvalid, "not signed by any configured key/identity: no trust is configured"}}
	}
	// Key-based. A bundle that carries a certificate is keyless only.
	if e.cert == nil && len(c.trust.keys) == 0 {
		invalid = append(invalid, "signed by a key, but only keyless identities are configured")
	}
	if e.bundle == nil || e.cert == nil {
		for _, k := range c.trust.keys {
			if err := c.cryptoCheck(e, k); err != nil {
				invalid = append(invalid, fmt.Sprintf("key %s: %v", k.name, err))
				continue
			}
			if !needTime {
				out.signers = append(out.signers, signerMatch{name: k.name})
				continue
			}
			res, why, err := c.sigstoreVerify(e, k)
			switch {
			case why != "":
				unmet = append(unmet, fmt.Sprintf("signed by key %s, but %s", k.name, why))
			case err != nil:
				invalid = append(invalid, fmt.Sprintf("key %s: %v", k.name, err))
			default:
				out.signers = append(out.signers, signerMatch{name: k.name})
				out.signedAt = earliest(out.signedAt, res)
			}
		}
	}
	// Keyless.
	if e.cert != nil {
		claimed := describeCert(e.cert)
		switch {
		case len(c.trust.identities) == 0:
			invalid = append(invalid, fmt.Sprintf("keyless certificate (%s) but no keyless identity is configured", claimed))
		case c.trust.root == nil:
			unmet = append(unmet, "keyless evidence needs a trusted root")
		default:
			res, why, err := c.sigstoreVerify(e, nil)
			if why != "" {
				// Unmet only if the evidence would otherwise count: an
				// untrusted certificate, a forged signature or another
				// identity is a signer problem, whatever else is missing.
				if perr := c.keylessPrecheck(e); perr != nil {
					why, err = "", perr
				}
			}
			switch {
			case why != "":
				unmet = append(unmet, fmt.Sprintf("keyless certificate (%s): %s", claimed, why))
			case err != nil:
				invalid = append(invalid, fmt.Sprintf("keyless certificate (%s): %v", claimed, err))
			case res.Signature == nil || res.Signature.Certificate == nil:
				invalid = append(invalid, "keyless verification returned no certificate")
			default:
				sum := *res.Signature.Certificate
				ident := fmt.Sprintf("issuer=%s subject=%s", sum.Extensions.Issuer, sum.SubjectAlternativeName)
				matched := false
				for _, id := range c.trust.identities {
					if id.matches(sum) {
						matched = true
						out.signers = append(out.signers, signerMatch{name: id.name, identity: ident})
					}
				}
				if matched {
					out.signedAt = earliest(out.signedAt, res)
				} else {
					invalid = append(invalid, fmt.Sprintf("certificate identity %s matches no configured identity", ident))
				}
			}
		}
	}
	if len(out.signers) > 0 {
		return out
	}
	if len(unmet) > 0 {
		return verifyOutcome{fail: &outcomeFailure{FailUnmet, strings.Join(unmet, "; ")}}
	}
	return verifyOutcome{fail: &outcomeFailure{FailInvalid, "not signed by any configured key/identity: " + strings.Join(invalid, "; ")}}
}

// keylessPrecheck checks what can be checked of keyless evidence without a
// verified signing time: the certificate chains to the trusted root at some
// instant of its validity, its identity matches a configured identity, and
// the signature verifies with its key.
func (c *collector) keylessPrecheck(e *evidence) error {
	leaf := *e.cert
	leaf.UnhandledCriticalExtensions = nil
	for _, oid := range e.cert.UnhandledCriticalExtensions {
		if !oid.Equal(cryptoutils.SANOID) { // as sigstore-go: Go cannot parse otherName SANs
			leaf.UnhandledCriticalExtensions = append(leaf.UnhandledCriticalExtensions, oid)
		}
	}
	if _, err := sgverify.VerifyLeafCertificate(leaf.NotBefore, &leaf, c.trust.root); err != nil {
		return fmt.Errorf("certificate does not chain to the trusted root: %w", err)
	}
	sum, err := certificate.SummarizeCertificate(e.cert)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	matched := false
	for _, id := range c.trust.identities {
		matched = matched || id.matches(sum)
	}
	if !matched {
		return fmt.Errorf("certificate identity issuer=%s subject=%s matches no configured identity", sum.Extensions.Issuer, sum.SubjectAlternativeName)
	}
	if err := pubkey.Check(e.cert.PublicKey); err != nil {
		return fmt.Errorf("certificate key: %w", err)
	}
	kv := &keyVerifier{pub: e.cert.PublicKey}
	switch {
	case e.env != nil:
		if _, err := e.env.Verify(kv.verify); err != nil {
			return fmt.Errorf("signature does not verify with the certificate key")
		}
	case e.msgDigest != nil:
		if err := kv.verifyDigest(crypto.SHA256, e.msgDigest, e.sig); err != nil {
			return fmt.Errorf("signature does not verify with the certificate key")
		}
	default:
		if err := kv.verify(e.message, e.sig); err != nil {
			return fmt.Errorf("signature does not verify with the certificate key")
		}
	}
	return nil
}

func describeCert(cert *x509.Certificate) string {
	var san string
	switch {
	case len(cert.EmailAddresses) > 0:
		san = cert.EmailAddresses[0]
	case len(cert.URIs) > 0:
		san = cert.URIs[0].String()
	}
	var iss string
	for _, ext := range cert.Extensions {
		// Fulcio OIDC issuer v1 (raw string) or v2 (DER UTF8String).
		if ext.Id.String() == "1.3.6.1.4.1.57264.1.1" {
			iss = string(ext.Value)
		}
	}
	return clip(fmt.Sprintf("unverified claims issuer=%s subject=%s", iss, san))
}

func earliest(cur time.Time, res *sgverify.VerificationResult) time.Time {
	if res == nil {
		return cur
	}
	for _, ts := range res.VerifiedTimestamps {
		if ts.Type == "CurrentTime" || ts.Timestamp.IsZero() {
			continue
		}
		if cur.IsZero() || ts.Timestamp.Before(cur) {
			cur = ts.Timestamp
		}
	}
	return cur
}

// cryptoCheck verifies only the signature of e with key k.
func (c *collector) cryptoCheck(e *evidence, k *trustKey) error {
	switch {
	case e.env != nil:
		// DSSE, legacy or bundle: the signature is over PAE(type, payload)
		// whatever the container; the bundle's key hint is not trusted.
		_, err := e.env.Verify(k.verifier.verify)
		if err != nil {
			return errBadSig
		}
		return nil
	case e.bundle != nil:
		v, err := sgverify.NewVerifier(k.material, sgverify.WithNoObserverTimestamps())
		if err != nil {
			return err
		}
		_, err = v.Verify(e.bundle, sgverify.NewPolicy(e.artifactPolicy(), sgverify.WithKey()))
		return err
	default:
		return k.verifier.verify(e.message, e.sig)
	}
}

func (e *evidence) artifactPolicy() sgverify.ArtifactPolicyOption {
	switch {
	case e.message != nil:
		return sgverify.WithArtifact(bytes.NewReader(e.message))
	case e.msgDigest != nil:
		return sgverify.WithArtifactDigest("sha256", e.msgDigest)
	default:
		// DSSE: the statement subject is matched by the caller.
		return sgverify.WithoutArtifactUnsafe()
	}
}

// sigstoreVerify runs sigstore-go over e: with key k (key-based, trust root
// used only for Rekor/TSA) or keyless (k == nil). A non-empty why means a
// requirement is not met (no crypto failure implied).
func (c *collector) sigstoreVerify(e *evidence, k *trustKey) (*sgverify.VerificationResult, string, error) {
	req := c.opts.VerifyOptions
	rt := c.trust.root
	if rt == nil && (req.RequireTlog || req.RequireTimestamp) {
		return nil, "no trusted root is configured to check Rekor or timestamp evidence", nil
	}
	var tm root.TrustedMaterial
	switch {
	case k != nil && rt != nil:
		tm = root.TrustedMaterialCollection{rt, k.material}
	case k != nil:
		tm = k.material
	default:
		tm = rt
	}
	ent, err := e.entity(false)
	if err != nil {
		return nil, "", err
	}
	entries, _ := ent.TlogEntries()
	stamps, _ := ent.Timestamps()
	hasTlog, hasTS := len(entries) > 0, len(stamps) > 0
	if req.RequireTlog && !hasTlog {
		return nil, "there is no transparency log (Rekor) entry and the rule requires one", nil
	}
	if req.RequireTimestamp && !hasTS {
		return nil, "there is no RFC 3161 signed timestamp and the rule requires one", nil
	}
	useTlog := hasTlog && rt != nil && (req.RequireTlog || (k == nil && !hasTS))
	useTS := hasTS && rt != nil && (req.RequireTimestamp || (k == nil && !useTlog))
	if k == nil && !useTlog && !useTS {
		return nil, "no Rekor entry or signed timestamp establishes when the short-lived certificate was used", nil
	}
	idOpt := sgverify.WithoutIdentitiesUnsafe()
	if k != nil {
		idOpt = sgverify.WithKey()
	}
	type pass struct {
		ent  sgverify.SignedEntity
		opts []sgverify.VerifierOption
	}
	var passes []pass
	base := []sgverify.VerifierOption{sgverify.WithoutStatementPredicate()}
	if k == nil && req.RequireSCT {
		base = append(base, sgverify.WithSignedCertificateTimestamps(1))
	}
	tlogOpts := []sgverify.VerifierOption{sgverify.WithTransparencyLog(1), sgverify.WithIntegratedTimestamps(1)}
	tsOpts := []sgverify.VerifierOption{sgverify.WithSignedTimestamps(1)}
	switch {
	case e.legacy && e.tsData != nil && useTS:
		tsEnt, err := e.entity(true)
		if err != nil {
			return nil, "", err
		}
		if useTlog {
			passes = append(passes, pass{ent, append(base, tlogOpts...)})
		}
		passes = append(passes, pass{tsEnt, append(base, tsOpts...)})
	case useTlog && useTS:
		passes = append(passes, pass{ent, append(append(base, tlogOpts...), tsOpts...)})
	case useTlog:
		passes = append(passes, pass{ent, append(base, tlogOpts...)})
	case useTS:
		passes = append(passes, pass{ent, append(base, tsOpts...)})
	default:
		passes = append(passes, pass{ent, append(base, sgverify.WithNoObserverTimestamps())})
	}
	var last *sgverify.VerificationResult
	var stamped []sgverify.TimestampVerificationResult
	for _, p := range passes {
		v, err := sgverify.NewVerifier(tm, p.opts...)
		if err != nil {
			return nil, "", err
		}
		res, err := v.Verify(p.ent, sgverify.NewPolicy(e.artifactPolicy(), idOpt))
		if err != nil {
			return nil, "", err
		}
		stamped = append(stamped, res.VerifiedTimestamps...)
		last = res
	}
	last.VerifiedTimestamps = stamped
	return last, "", nil
}

// entity presents e to sigstore-go. forTimestamps swaps in the bytes a
// legacy RFC 3161 timestamp was taken over.
func (e *evidence) entity(forTimestamps bool) (sgverify.SignedEntity, error) {
	if e.bundle != nil {
		return e.bundle, nil
	}
	le := &legacyEntity{timestamps: e.timestamps}
	if e.cert != nil {
		le.vc = bundle.NewCertificate(e.cert)
	} else {
		le.vc = &bundle.PublicKey{}
	}
	if e.env != nil {
		se := &ssldsse.Envelope{PayloadType: e.env.PayloadType, Payload: base64.StdEncoding.EncodeToString(e.env.Payload)}
		for _, s := range e.env.Signatures {
			se.Signatures = append(se.Signatures, ssldsse.Signature{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)})
		}
		le.sc = &bundle.Envelope{Envelope: se}
	} else {
		h := sha256.Sum256(e.message)
		le.sc = bundle.NewMessageSignature(h[:], "SHA2_256", e.sig)
	}
	if forTimestamps && e.tsData != nil {
		le.sc = sigOverride{SignatureContent: le.sc, sig: e.tsData}
	}
	if e.rekor != nil {
		entry, err := tlog.NewEntry(e.rekor.Body, e.rekor.IntegratedTime, e.rekor.LogIndex, e.rekor.LogID, e.rekor.SignedEntryTimestamp, nil) //nolint:staticcheck // legacy cosign bundles carry exactly these fields
		if err != nil {
			return nil, fmt.Errorf("rekor bundle annotation: %w", err)
		}
		le.entries = []*tlog.Entry{entry}
	}
	return le, nil
}

// legacyEntity adapts cosign legacy annotations to sigstore-go.
type legacyEntity struct {
	vc         sgverify.VerificationContent
	sc         sgverify.SignatureContent
	entries    []*tlog.Entry
	timestamps [][]byte
}

func (l *legacyEntity) HasInclusionPromise() bool {
	for _, e := range l.entries {
		if e.HasInclusionPromise() {
			return true
		}
	}
	return false
}
func (l *legacyEntity) HasInclusionProof() bool {
	for _, e := range l.entries {
		if e.HasInclusionProof() {
			return true
		}
	}
	return false
}
func (l *legacyEntity) VerificationContent() (sgverify.VerificationContent, error) { return l.vc, nil }
func (l *legacyEntity) SignatureContent() (sgverify.SignatureContent, error)       { return l.sc, nil }
func (l *legacyEntity) Timestamps() ([][]byte, error)                              { return l.timestamps, nil }
func (l *legacyEntity) TlogEntries() ([]*tlog.Entry, error)                        { return l.entries, nil }
func (l *legacyEntity) Version() (string, error)                                   { return "v0.1", nil }

// sigOverride presents other bytes as "the signature" for RFC 3161
// verification (cosign v2 timestamps an attestation's envelope).
type sigOverride struct {
	sgverify.SignatureContent
	sig []byte
}

func (s sigOverride) Signature() []byte { return s.sig }

func pemDecode(data []byte) ([]byte, []byte) {
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			return nil, nil
		}
		if block.Type == "CERTIFICATE" {
			return block.Bytes, rest
		}
		data = rest
	}
}
