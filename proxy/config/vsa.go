package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// VSA makes the proxy sign a SLSA Verification Summary Attestation for
// every artifact it allows, once per (digest, policy revision), and offer
// it as a referrer of that digest (docs/vsa.md, "VSAs from the proxy").
type VSA struct {
	// Key is the private signing key (PEM PKCS#8, SEC 1, PKCS#1, or a
	// cosign encrypted key); a key of its own, not one any policy trusts.
	Key string `yaml:"key"`
	// KeyPasswordFile holds the password of an encrypted key (trailing
	// newline ignored).
	KeyPasswordFile string `yaml:"keyPasswordFile,omitempty"`
	// VerifierID is the VSA's verifier.id: a URI naming this instance,
	// which consumers pin.
	VerifierID string `yaml:"verifierId"`
	// PolicyURI is the VSA's policy.uri (default: the policy file's
	// file:// URL).
	PolicyURI string `yaml:"policyUri,omitempty"`
}

func (v *VSA) validate() []error {
	var errs []error
	if v.Key == "" {
		errs = append(errs, errors.New("vsa.key: required (the VSA signing key)"))
	}
	if v.VerifierID == "" {
		errs = append(errs, errors.New("vsa.verifierId: required (a URI naming this instance, e.g. https://pullgate.example/prod)"))
	} else if u, err := url.Parse(v.VerifierID); err != nil || u.Scheme == "" {
		errs = append(errs, fmt.Errorf("vsa.verifierId %q: not an absolute URI", v.VerifierID))
	}
	if v.PolicyURI != "" {
		if u, err := url.Parse(v.PolicyURI); err != nil || u.Scheme == "" {
			errs = append(errs, fmt.Errorf("vsa.policyUri %q: not an absolute URI", v.PolicyURI))
		}
	}
	return errs
}

// VSAKeyPassword reads the VSA key's password file (nil when none is
// configured).
func (c *Config) VSAKeyPassword() ([]byte, error) {
	if c.VSA == nil || c.VSA.KeyPasswordFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.Resolve(c.VSA.KeyPasswordFile))
	if err != nil {
		return nil, fmt.Errorf("vsa.keyPasswordFile: %w", err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}
