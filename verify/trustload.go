package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/pullgate/pullgate/verify/pubkey"
)

// Trust is loaded, validated trust material: the only source of trust for
// Collect. Build it with NewTrust; it is immutable and safe for concurrent use.
type Trust struct {
	keys       []*trustKey
	identities []*trustIdentity
	root       *root.TrustedRoot
}

type trustKey struct {
	name     string
	verifier *keyVerifier
	material root.TrustedMaterial
}

type trustIdentity struct {
	name     string
	issuer   string
	issuerRE *regexp.Regexp
	subject  string
	subjectR *regexp.Regexp
}

// NewTrust validates a TrustSpec: every key must be a PEM PKIX public key
// (ECDSA P-256/P-384, Ed25519, RSA ≥ 2048 bits), every identity needs an
// issuer (exact or regexp) and a subject (exact or regexp), names must be
// unique across keys and identities, and a Sigstore trusted root is required
// when any identity is configured.
func NewTrust(spec TrustSpec) (*Trust, error) {
	t := &Trust{}
	names := map[string]bool{}
	var errs []error
	// newName reports whether the i-th entry of a kind has a usable name
	// not taken yet (and takes it), or records why not.
	newName := func(kind string, i int, name string) bool {
		var err error
		switch {
		case strings.TrimSpace(name) == "":
			err = fmt.Errorf("trust %s %d has no name", kind, i)
		case strings.TrimSpace(name) != name:
			err = fmt.Errorf("trust %s %q: name has leading or trailing space", kind, name)
		case names[name]:
			err = fmt.Errorf("trust name %q is used twice", name)
		default:
			names[name] = true
			return true
		}
		errs = append(errs, err)
		return false
	}
	for i, k := range spec.Keys {
		name := k.Name
		if !newName("key", i, name) {
			continue
		}
		pub, err := pubkey.ParsePEM(k.PEM)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust key %q: %w", name, err))
			continue
		}
		kv := &keyVerifier{pub: pub}
		ek := root.NewExpiringKey(kv, time.Time{}, time.Time{})
		t.keys = append(t.keys, &trustKey{
			name:     name,
			verifier: kv,
			material: root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return ek, nil }),
		})
	}
	for i, id := range spec.Identities {
		name := id.Name
		if !newName("identity", i, name) {
			continue
		}
		ti := &trustIdentity{name: name, issuer: id.Issuer, subject: id.Subject}
		if id.Issuer == "" && id.IssuerRegExp == "" {
			errs = append(errs, fmt.Errorf("trust identity %q: set issuer or issuerRegExp", name))
		}
		if id.Subject == "" && id.SubjectRegExp == "" {
			errs = append(errs, fmt.Errorf("trust identity %q: set subject or subjectRegExp", name))
		}
		var err error
		if id.IssuerRegExp != "" {
			if ti.issuerRE, err = regexp.Compile(id.IssuerRegExp); err != nil {
				errs = append(errs, fmt.Errorf("trust identity %q: issuerRegExp: %w", name, err))
			}
		}
		if id.SubjectRegExp != "" {
			if ti.subjectR, err = regexp.Compile(id.SubjectRegExp); err != nil {
				errs = append(errs, fmt.Errorf("trust identity %q: subjectRegExp: %w", name, err))
			}
		}
		t.identities = append(t.identities, ti)
	}
	if len(spec.TrustedRootJSON) > 0 {
		tr, err := root.NewTrustedRootFromJSON(spec.TrustedRootJSON)
		if err != nil {
			errs = append(errs, fmt.Errorf("trusted root: %w", err))
		} else {
			t.root = tr
		}
	} else if len(spec.Identities) > 0 {
		errs = append(errs, errors.New("keyless identities need a Sigstore trusted root (trustedRoot)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// Names lists the configured key and identity names.
func (t *Trust) Names() []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, k := range t.keys {
		out = append(out, k.name)
	}
	for _, id := range t.identities {
		out = append(out, id.name)
	}
	return out
}

// IdentityNamed is the name of a configured identity that a certificate
// for san issued by issuer would match (exact or regexp, as verification
// matches), "" when none would.
func (t *Trust) IdentityNamed(san, issuer string) string {
	if t == nil {
		return ""
	}
	var s certificate.Summary
	s.SubjectAlternativeName, s.Extensions.Issuer = san, issuer
	for _, id := range t.identities {
		if id.matches(s) {
			return id.name
		}
	}
	return ""
}

// HasTrustedRoot reports whether a Sigstore trusted root is configured.
func (t *Trust) HasTrustedRoot() bool { return t != nil && t.root != nil }

func (ti *trustIdentity) matches(s certificate.Summary) bool {
	iss := s.Extensions.Issuer
	if iss == "" {
		return false
	}
	if ti.issuer != "" && iss != ti.issuer {
		return false
	}
	if ti.issuerRE != nil && !ti.issuerRE.MatchString(iss) {
		return false
	}
	san := s.SubjectAlternativeName
	if san == "" {
		return false
	}
	if ti.subject != "" && san != ti.subject {
		return false
	}
	if ti.subjectR != nil && !ti.subjectR.MatchString(san) {
		return false
	}
	return true
}

// keyVerifier verifies signatures made by one configured key with the
// schemes cosign and sigstore signers use for that key type:
//   - ECDSA P-256: ASN.1 signature over SHA-256;
//     P-384: over SHA-384 or SHA-256 (cosign legacy hashes with SHA-256);
//   - Ed25519: pure Ed25519 over the message;
//   - RSA: PKCS#1 v1.5 or PSS over SHA-256.
//
// It implements sigstore's signature.Verifier so sigstore-go can use it as
// trusted material.
type keyVerifier struct{ pub crypto.PublicKey }

var errBadSig = errors.New("signature does not verify with the key")

func (k *keyVerifier) verify(message, sig []byte) error {
	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P384() {
			h := sha512.Sum384(message)
			if ecdsa.VerifyASN1(pub, h[:], sig) {
				return nil
			}
		}
		h := sha256.Sum256(message)
		if ecdsa.VerifyASN1(pub, h[:], sig) {
			return nil
		}
		return errBadSig
	case ed25519.PublicKey:
		if ed25519.Verify(pub, message, sig) {
			return nil
		}
		return errBadSig
	case *rsa.PublicKey:
		h := sha256.Sum256(message)
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil {
			return nil
		}
		if rsa.VerifyPSS(pub, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil {
			return nil
		}
		return errBadSig
	}
	return errBadSig
}

// verifyDigest verifies a signature over a precomputed digest (sigstore
// message-signature bundles verified by artifact digest). Ed25519 cannot.
func (k *keyVerifier) verifyDigest(h crypto.Hash, dig, sig []byte) error {
	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		if ecdsa.VerifyASN1(pub, dig, sig) {
			return nil
		}
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(pub, h, dig, sig) == nil {
			return nil
		}
		if rsa.VerifyPSS(pub, h, dig, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil {
			return nil
		}
	}
	return errBadSig
}

// PublicKey implements signature.Verifier.
func (k *keyVerifier) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return k.pub, nil
}

// VerifySignature implements signature.Verifier.
func (k *keyVerifier) VerifySignature(sig, message io.Reader, opts ...signature.VerifyOption) error {
	s, err := io.ReadAll(io.LimitReader(sig, 1<<16))
	if err != nil {
		return err
	}
	var dig []byte
	var so crypto.SignerOpts = crypto.SHA256
	for _, o := range opts {
		o.ApplyDigest(&dig)
		o.ApplyCryptoSignerOpts(&so)
	}
	if dig != nil {
		return k.verifyDigest(so.HashFunc(), dig, s)
	}
	if message == nil {
		return errors.New("no message to verify")
	}
	m, err := io.ReadAll(io.LimitReader(message, 64<<20))
	if err != nil {
		return err
	}
	return k.verify(m, s)
}

var _ signature.Verifier = (*keyVerifier)(nil)
