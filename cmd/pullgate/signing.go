package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/vsa"
)

// keylessFlags are the keyless signing flags of `pullgate attest sign` and
// `pullgate promote` (the same names as there).
type keylessFlags struct {
	idTokenFile, fulcio, rekor, tsa string
	trustedRoot                     string // promote only
}

// addKeylessFlags registers --id-token-file, --fulcio, --rekor and --tsa.
func addKeylessFlags(fs *flag.FlagSet, k *keylessFlags) {
	fs.StringVar(&k.idTokenFile, "id-token-file", "", "OIDC identity token for keyless signing (a Fulcio certificate for an ephemeral key)")
	fs.StringVar(&k.fulcio, "fulcio", "", "Fulcio URL (keyless)")
	fs.StringVar(&k.rekor, "rekor", "", "Rekor URL to record the signature in")
	fs.StringVar(&k.tsa, "tsa", "", "RFC 3161 timestamp authority URL")
}

// apply sets the keyless parts of opts: the token read from its file
// (surrounding space trimmed; never printed), Fulcio, Rekor, TSA.
func (k keylessFlags) apply(opts *attest.SignOptions) error {
	opts.FulcioURL, opts.RekorURL, opts.TSAURL = k.fulcio, k.rekor, k.tsa
	if k.idTokenFile == "" {
		return nil
	}
	// The token is a bearer credential: it goes to Fulcio over TLS, or in
	// the clear only to this machine.
	if u, err := url.Parse(k.fulcio); k.fulcio != "" && (err != nil || u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return fmt.Errorf("--fulcio %q: the identity token is sent to it, so it must be an https:// URL (plain http only to a loopback address)", k.fulcio)
	}
	var err error
	opts.IDToken, err = readToken(k.idTokenFile)
	return err
}

// readToken reads an OIDC token file (surrounding space trimmed).
func readToken(path string) (string, error) {
	tok, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--id-token-file: %w", err)
	}
	t := strings.TrimSpace(string(tok))
	if t == "" {
		return "", fmt.Errorf("--id-token-file %s is empty", path)
	}
	return t, nil
}

// signing is how `pullgate promote` signs the promoted digest and its VSA
// (a key, or keyless), and the trust that recognises what it signed.
type signing struct {
	opts      attest.SignOptions
	keyless   bool
	tokenFile string // keyless: read again before each signing
	rootJSON  []byte // keyless: the trusted root
	who       promoteSigner
	// trust verifies what this signer signed: the key, or (keyless, once
	// learn saw the first certificate) its SAN and issuer under the
	// trusted root.
	trust *verify.Trust
}

// promoteSigning reads --key, or the keyless flags. A keyless signer must
// have an observer time (--tsa or --rekor: a Fulcio certificate lives
// minutes, a verifier needs proof it was used then) and a trusted root.
func promoteSigning(keyPath string, k keylessFlags) (*signing, error) {
	keyless := k.idTokenFile != ""
	switch {
	case keyPath == "" && !keyless:
		return nil, errors.New("give --key, or --id-token-file for keyless signing")
	case keyPath != "" && keyless:
		return nil, errors.New("give either --key or --id-token-file, not both")
	case !keyless && (k.fulcio != "" || k.rekor != "" || k.tsa != "" || k.trustedRoot != ""):
		return nil, errors.New("--fulcio, --rekor, --tsa and --trusted-root are for keyless signing (--id-token-file), not --key")
	case keyless && k.fulcio == "":
		return nil, errors.New("keyless signing (--id-token-file) needs --fulcio")
	case keyless && k.tsa == "" && k.rekor == "":
		return nil, errors.New("keyless signing needs --tsa or --rekor (or both): without a timestamp or a transparency log entry, nobody can verify a signature by a short-lived Fulcio certificate")
	case keyless && k.trustedRoot == "":
		return nil, errors.New("keyless signing needs --trusted-root (the Fulcio CA and the TSA or Rekor keys): promote checks its new signatures, and an earlier promotion's, against it")
	}
	s := &signing{keyless: keyless}
	if !keyless {
		signer, err := vsa.LoadSigner(keyPath, []byte(os.Getenv("COSIGN_PASSWORD")))
		if err != nil {
			return nil, err
		}
		kp, err := attest.NewKeypair(signer)
		if err != nil {
			return nil, err
		}
		pem, err := kp.GetPublicKeyPem()
		if err != nil {
			return nil, err
		}
		if s.trust, err = verify.NewTrust(verify.TrustSpec{Keys: []verify.KeySpec{{Name: "promote-key", PEM: []byte(pem)}}}); err != nil {
			return nil, err
		}
		s.opts.Signer, s.who.KeyHint = signer, string(kp.GetHint())
		return s, nil
	}
	var err error
	if s.rootJSON, err = os.ReadFile(k.trustedRoot); err != nil {
		return nil, fmt.Errorf("--trusted-root: %w", err)
	}
	if _, err := verify.NewTrust(verify.TrustSpec{TrustedRootJSON: s.rootJSON}); err != nil {
		return nil, fmt.Errorf("--trusted-root %s: %w", k.trustedRoot, err)
	}
	if err := k.apply(&s.opts); err != nil {
		return nil, err
	}
	s.tokenFile = k.idTokenFile
	return s, nil
}

// current is the signing options for the next signature. Keyless, the
// token file is read again: OIDC tokens often live minutes, less than
// streaming a large model through the checks takes, and CI systems and
// projected service-account tokens refresh the file in place.
func (s *signing) current() (attest.SignOptions, error) {
	if !s.keyless {
		return s.opts, nil
	}
	o := s.opts
	var err error
	o.IDToken, err = readToken(s.tokenFile)
	return o, err
}

// hint explains a keyless signing failure that may be the token's age.
func (s *signing) hint(err error) error {
	if !s.keyless || !strings.Contains(err.Error(), "identity token") {
		return err
	}
	return fmt.Errorf("%w (the token was read again from %s just before signing: if it expired, give a file that is refreshed in place, such as a projected service-account token, or sign with --key)", err, s.tokenFile)
}

// learn reads, from the first keyless bundle signed, the identity (SAN)
// and OIDC issuer Fulcio certified, and makes the trust that accepts
// exactly that identity under the trusted root. Key-based: nothing to
// learn.
func (s *signing) learn(b []byte) error {
	if !s.keyless || s.trust != nil {
		return nil
	}
	var bun bundle.Bundle
	if err := bun.UnmarshalJSON(b); err != nil {
		return fmt.Errorf("keyless bundle: %w", err)
	}
	vc, err := bun.VerificationContent()
	if err != nil {
		return fmt.Errorf("keyless bundle: %w", err)
	}
	cert := vc.Certificate()
	if cert == nil {
		return errors.New("keyless bundle: no certificate")
	}
	sum, err := certificate.SummarizeCertificate(cert)
	if err != nil {
		return fmt.Errorf("keyless certificate: %w", err)
	}
	if sum.SubjectAlternativeName == "" || sum.Extensions.Issuer == "" {
		return fmt.Errorf("keyless certificate names no identity (SAN %q) or no OIDC issuer (%q)", sum.SubjectAlternativeName, sum.Extensions.Issuer)
	}
	s.who = promoteSigner{Identity: sum.SubjectAlternativeName, Issuer: sum.Extensions.Issuer}
	s.trust, err = verify.NewTrust(verify.TrustSpec{
		Identities:      []verify.IdentitySpec{{Name: "promote-identity", Issuer: s.who.Issuer, Subject: s.who.Identity}},
		TrustedRootJSON: s.rootJSON,
	})
	return err
}

// describe names the signer in errors.
func (s *signing) describe() string {
	if s.keyless {
		return fmt.Sprintf("identity %s (issuer %s) under the trusted root", s.who.Identity, s.who.Issuer)
	}
	return "the key " + s.who.KeyHint
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
