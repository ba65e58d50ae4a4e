// Package attesttest holds test helpers for pullgate attestations: real key
// generation, and an independent bundle verifier built directly on
// sigstore-go that turns a bundle into a verify.Attestation the way
// verify.Collect does (trust from configured public keys only, never from the
// bundle; subject must contain the decided digest).
package attesttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
)

// NewKey returns a fresh ECDSA P-256 key and the PEM of its public key.
func NewKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, nil, err
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// PrivatePEM encodes a key as PKCS#8 PEM.
func PrivatePEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Verify checks a bundle's DSSE signature against each named trusted key
// (in name order) with sigstore-go, requires the statement's subjects to
// include subject, and returns the verified attestation. A bundle no
// trusted key verifies is an error.
func Verify(bundleJSON []byte, keys map[string]crypto.PublicKey, subject digest.Digest) (*verify.Attestation, error) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	env := b.GetDsseEnvelope()
	if env == nil || env.GetPayloadType() != attest.PayloadType {
		return nil, errors.New("bundle holds no in-toto DSSE envelope")
	}
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	var lastErr error = errors.New("no trusted keys")
	for _, name := range names {
		v, err := signature.LoadDefaultVerifier(keys[name])
		if err != nil {
			return nil, err
		}
		ek := root.NewExpiringKey(v, time.Time{}, time.Time{})
		tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return ek, nil })
		sv, err := sgverify.NewVerifier(tm, sgverify.WithNoObserverTimestamps())
		if err != nil {
			return nil, err
		}
		art := sgverify.WithArtifactDigest("sha256", mustHex(subject.Encoded()))
		res, err := sv.Verify(&b, sgverify.NewPolicy(art, sgverify.WithKey()))
		if err != nil {
			lastErr = fmt.Errorf("key %s: %w", name, err)
			continue
		}
		if res.Statement == nil {
			return nil, errors.New("verified bundle has no statement")
		}
		ps, err := attest.ParseStatement(env.GetPayload())
		if err != nil {
			return nil, err
		}
		a := &verify.Attestation{
			Signer: name, PredicateType: ps.PredicateType, StatementType: ps.Type,
			Predicate: ps.Predicate, Source: "test", Statement: digest.Digest(ps.Digest),
			Evidence: digest.FromBytes(bundleJSON),
		}
		for _, s := range ps.Subject {
			a.Subjects = append(a.Subjects, verify.Subject{Name: s.Name, Digest: s.Digest})
		}
		return a, nil
	}
	return nil, lastErr
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}
