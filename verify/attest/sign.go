package attest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pullgate/pullgate/verify/pubkey"
)

// SignOptions choose how Sign signs. Exactly one way is used: Signer, then
// KeyPEM, then KeyPath (key-based), else IDToken (keyless).
type SignOptions struct {
	// Signer is a private key (ECDSA P-256/P-384/P-521, Ed25519, RSA ≥ 2048).
	Signer crypto.Signer
	// KeyPEM is a PEM private key: PKCS#8, SEC 1 EC, PKCS#1 RSA, or a cosign
	// encrypted key ("ENCRYPTED SIGSTORE PRIVATE KEY", decrypted with
	// Password).
	KeyPEM []byte
	// KeyPath is a file holding KeyPEM.
	KeyPath string
	// Password decrypts an encrypted cosign key.
	Password []byte

	// IDToken is an OIDC identity token for keyless signing with an
	// ephemeral key and a Fulcio certificate.
	IDToken string
	// FulcioURL is the Fulcio instance for keyless signing (required with
	// IDToken).
	FulcioURL string
	// RekorURL, when set, records the signature in that Rekor (v1) log.
	RekorURL string
	// TSAURL, when set, adds an RFC 3161 timestamp from that authority.
	TSAURL string
	// Transport is used for Fulcio and the TSA (nil: default).
	Transport http.RoundTripper
	// Timeout for each network call (default 30 s).
	Timeout time.Duration

	// TrustedRoot, when set, verifies the new bundle before returning it
	// (sigstore-go's self-check).
	TrustedRoot root.TrustedMaterial
}

// Sign wraps statement bytes in a DSSE envelope (payloadType
// application/vnd.in-toto+json, signature over the DSSE PAE) inside a
// Sigstore bundle v0.3, and returns the bundle's JSON. The statement must be
// a valid in-toto Statement v1; a pullgate predicate must also be valid.
// Key-based bundles carry the key's hint (base64 SHA-256 of its PKIX DER),
// never the key itself: verifiers must be given the public key.
func Sign(ctx context.Context, statement []byte, opts SignOptions) ([]byte, error) {
	ps, err := ParseStatement(statement)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if _, ok := KindOf(ps.PredicateType); ok {
		if _, err := DecodePredicate(ps.PredicateType, ps.Predicate); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	bopts := sign.BundleOptions{Context: ctx, TrustedRoot: opts.TrustedRoot}
	var kp sign.Keypair
	switch {
	case opts.Signer != nil || len(opts.KeyPEM) > 0 || opts.KeyPath != "":
		if opts.IDToken != "" {
			return nil, errors.New("sign: give either a key or an OIDC token, not both")
		}
		signer := opts.Signer
		if signer == nil {
			pemBytes := opts.KeyPEM
			if len(pemBytes) == 0 {
				if pemBytes, err = os.ReadFile(opts.KeyPath); err != nil {
					return nil, fmt.Errorf("sign: reading key: %w", err)
				}
			}
			if signer, err = ParsePrivateKeyPEM(pemBytes, opts.Password); err != nil {
				return nil, fmt.Errorf("sign: %w", err)
			}
		}
		if kp, err = NewKeypair(signer); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
	case opts.IDToken != "":
		if opts.FulcioURL == "" {
			return nil, errors.New("sign: keyless signing needs a Fulcio URL")
		}
		if kp, err = sign.NewEphemeralKeypair(nil); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		bopts.CertificateProvider = sign.NewFulcio(&sign.FulcioOptions{
			BaseURL: opts.FulcioURL, Timeout: timeout, Retries: 1, Transport: opts.Transport,
		})
		bopts.CertificateProviderOptions = &sign.CertificateProviderOptions{IDToken: opts.IDToken}
	default:
		return nil, errors.New("sign: no key and no OIDC token given")
	}
	if opts.RekorURL != "" {
		bopts.TransparencyLogs = append(bopts.TransparencyLogs, sign.NewRekor(&sign.RekorOptions{
			BaseURL: opts.RekorURL, Timeout: timeout, Retries: 1,
		}))
	}
	if opts.TSAURL != "" {
		bopts.TimestampAuthorities = append(bopts.TimestampAuthorities, sign.NewTimestampAuthority(&sign.TimestampAuthorityOptions{
			URL: opts.TSAURL, Timeout: timeout, Retries: 1, Transport: opts.Transport,
		}))
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: PayloadType}, kp, bopts)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	out, err := protojson.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("sign: encoding bundle: %w", err)
	}
	return out, nil
}

// Keypair adapts a long-lived crypto.Signer to sigstore-go's sign.Keypair.
type Keypair struct {
	signer crypto.Signer
	alg    signature.AlgorithmDetails
	hint   []byte
}

// NewKeypair wraps a private key. The signing algorithm is the key's default
// (ECDSA P-256 with SHA-256, Ed25519, RSA PKCS#1 v1.5 with SHA-256, ...).
func NewKeypair(s crypto.Signer) (*Keypair, error) {
	// The keys pullgate verifies with (verify/pubkey): a bundle signed with
	// any other key could never be verified by a pullgate policy.
	if err := pubkey.Check(s.Public()); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	alg, err := signature.GetDefaultAlgorithmDetails(s.Public())
	if err != nil {
		return nil, err
	}
	hint, err := KeyHint(s.Public())
	if err != nil {
		return nil, err
	}
	return &Keypair{signer: s, alg: alg, hint: []byte(hint)}, nil
}

// KeyHint is the public key hint put in bundles: base64 of the SHA-256 of the
// PKIX DER encoding (the same as sigstore-go and cosign).
func KeyHint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(h[:]), nil
}

// GetHashAlgorithm implements sign.Keypair.
func (k *Keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }

// GetSigningAlgorithm implements sign.Keypair.
func (k *Keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}

// GetHint implements sign.Keypair.
func (k *Keypair) GetHint() []byte { return k.hint }

// GetKeyAlgorithm implements sign.Keypair.
func (k *Keypair) GetKeyAlgorithm() string {
	switch k.alg.GetKeyType() {
	case signature.ECDSA:
		return "ECDSA"
	case signature.RSA:
		return "RSA"
	case signature.ED25519:
		return "ED25519"
	}
	return ""
}

// GetPublicKey implements sign.Keypair.
func (k *Keypair) GetPublicKey() crypto.PublicKey { return k.signer.Public() }

// GetPublicKeyPem implements sign.Keypair.
func (k *Keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.signer.Public())
	return string(b), err
}

// SignData implements sign.Keypair: it hashes data with the algorithm's hash
// (pure Ed25519 signs the data itself) and signs.
func (k *Keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	hf := k.alg.GetHashType()
	toSign := data
	if hf != crypto.Hash(0) {
		h := hf.New()
		h.Write(data)
		toSign = h.Sum(nil)
	}
	sig, err := k.signer.Sign(rand.Reader, toSign, hf)
	if err != nil {
		return nil, nil, err
	}
	return sig, toSign, nil
}

// ParsePrivateKeyPEM reads a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY"), or a cosign encrypted key
// ("ENCRYPTED SIGSTORE PRIVATE KEY" / "ENCRYPTED COSIGN PRIVATE KEY").
func ParsePrivateKeyPEM(b []byte, password []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("key: no PEM block found")
	}
	var (
		key any
		err error
	)
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY":
		der, derr := encrypted.Decrypt(blk.Bytes, password)
		if derr != nil {
			return nil, fmt.Errorf("key: decrypting cosign key (wrong password?): %w", derr)
		}
		key, err = x509.ParsePKCS8PrivateKey(der)
	default:
		return nil, fmt.Errorf("key: unsupported PEM block %q", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key: %T cannot sign", key)
	}
	return s, nil
}
