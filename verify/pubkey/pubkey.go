// Package pubkey is the one parser and strength check of the keys pullgate
// trusts or signs with: policy trust keys, verify's trust material and
// keyless certificate keys, attestation signing keys and the token signing
// key of client authorization. It imports only the standard library, so
// light packages can use it without pulling in the verifier.
//
// Accepted: ECDSA P-256 and P-384, Ed25519, RSA of MinRSABits to MaxRSABits
// bits. A security proxy refuses weak keys (small RSA) and odd ones (other
// curves, huge RSA keys that cost a verification many times the usual CPU).
package pubkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// RSA key sizes accepted, in bits.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// Supported names the accepted key types, for error hints and docs.
const Supported = "ECDSA P-256/P-384, Ed25519 or RSA of 2048 to 8192 bits"

// ParsePEM parses exactly one PEM public key: a "PUBLIC KEY" (PKIX) block or
// an "RSA PUBLIC KEY" (PKCS#1) block, of a type and strength Check accepts.
// Anything else, including a private key or a second PEM block, is refused.
func ParsePEM(data []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("unexpected data after the PEM block (one key per entry)")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, not a public key (want \"PUBLIC KEY\"; never configure a private key as a trusted key)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if err := Check(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// Check refuses a public key (or the public half of a signing key) of a type
// or strength pullgate does not accept; the error names the limit.
func Check(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return nil
		}
		name := "unknown"
		if k.Curve != nil {
			name = k.Curve.Params().Name
		}
		return fmt.Errorf("ECDSA curve %s is not supported (use P-256 or P-384)", name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 key of %d bytes is malformed (want %d)", len(k), ed25519.PublicKeySize)
		}
		return nil
	case *rsa.PublicKey:
		if k.N == nil {
			return errors.New("RSA key has no modulus")
		}
		switch n := k.N.BitLen(); {
		case n < MinRSABits:
			return fmt.Errorf("RSA key of %d bits is too small (minimum %d)", n, MinRSABits)
		case n > MaxRSABits:
			return fmt.Errorf("RSA key of %d bits is too large (maximum %d)", n, MaxRSABits)
		}
		return nil
	default:
		return fmt.Errorf("public key type %T is not supported (%s)", pub, Supported)
	}
}
