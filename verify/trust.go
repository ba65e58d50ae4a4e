package verify

// TrustSpec is the operator's trust material, already read from disk by the
// policy loader. Trust never comes from the artifact being verified.
type TrustSpec struct {
	Keys       []KeySpec      `json:"keys,omitempty"`
	Identities []IdentitySpec `json:"identities,omitempty"`
	// TrustedRootJSON is a Sigstore trusted_root.json (Fulcio CAs, Rekor and
	// CT log keys, TSAs), required for keyless identities.
	TrustedRootJSON []byte `json:"-"`
}

// KeySpec is a named public key in PEM form (ECDSA P-256/P-384, Ed25519, RSA).
type KeySpec struct {
	Name string `json:"name"`
	PEM  []byte `json:"-"`
}

// IdentitySpec is a named keyless signer: the OIDC issuer and subject in the
// Fulcio certificate, each given exactly or as a regular expression.
type IdentitySpec struct {
	Name          string `json:"name"`
	Issuer        string `json:"issuer,omitempty"`
	IssuerRegExp  string `json:"issuerRegExp,omitempty"`
	Subject       string `json:"subject,omitempty"`
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
}
