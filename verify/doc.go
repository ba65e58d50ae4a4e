// Package verify turns untrusted bytes (signatures, attestations, bundles and
// model files) into evidence that policy can decide on. It never does HTTP
// routing and never reads configuration files: trust material is handed to it
// already loaded, and artifacts are read through the Fetcher interface.
//
// # Signatures and attestations
//
// NewTrust compiles a TrustSpec (named PEM keys, keyless identities, a
// Sigstore trusted_root.json) once; Collect then finds and verifies every
// piece of evidence about one digest:
//
//   - cosign legacy signatures, tag sha256-<hex>.sig: simple-signing
//     payloads whose critical.image.docker-manifest-digest must be the
//     subject, signed by a configured key, or by a Fulcio certificate that
//     chains to the trusted root and matches a configured identity (with its
//     Rekor bundle and/or RFC 3161 timestamp annotations);
//   - cosign legacy attestations, tag sha256-<hex>.att: DSSE envelopes
//     (package dsse) holding in-toto statements v0.1/v1 (package intoto)
//     whose subject must contain the digest;
//   - sigstore bundles (v0.1–v0.3) attached as OCI referrers with artifact
//     type application/vnd.dev.sigstore.bundle.v0.3+json, as cosign v3 (and
//     cosign v2 --new-bundle-format) writes them. A DSSE bundle whose
//     predicate type is https://sigstore.dev/cosign/sign/v1 is a signature
//     (that is how cosign v3 signs images); other DSSE bundles are
//     attestations; a message-signature bundle is a signature when its
//     message digest is the subject (a signature over the manifest bytes).
//
// Trust never comes from the artifact: a bundle's public-key hint and any
// certificate are only accepted when the signature verifies with a
// configured key, or the certificate chains to the configured trusted root
// and its identity matches. Keyless evidence needs a verified signing time
// (Rekor integrated time or RFC 3161 timestamp); VerifyOptions can require
// either for all evidence, key-based included, all checked offline.
//
// Every piece found is accounted for: verified evidence lands in
// Result.Signatures/Attestations (one entry per configured signer name that
// verifies it), everything else in Result.Failures with a kind that maps
// onto the exit codes of `pullgate verify`: FailInvalid (11), FailMismatch
// (12), FailUnmet (13), FailMalformed (14), FailFetch (1, never an allow).
// Evidence that cannot be interpreted is reported malformed before any
// signature check; a valid signature over another digest is a mismatch.
//
// Collect fetches the three sources and their evidence concurrently (at most
// 8 in flight per source), so a Fetcher must be safe for concurrent use.
// The Fetcher over a registry is proxy/upstream's Client.Fetcher, which the
// proxy and this package's tests both use.
package verify
