// Package attest creates, signs and publishes pullgate's LLM release
// attestations: in-toto Statement v1 documents with one pullgate predicate
// type per kind (prompt, corpus, eval, route, slo, mbom), wrapped in a DSSE
// envelope inside a Sigstore bundle v0.3, and attached to an OCI artifact as a
// referrer in the layout cosign v3 uses.
//
// The three operations are one call each, so that `pullgate attest
// create|sign|push` stays a thin CLI:
//
//	stmt, err := attest.Create(attest.KindPrompt, "prompt.yaml", attest.CreateOptions{})
//	bundle, err := attest.Sign(ctx, stmt, attest.SignOptions{KeyPath: "key.pem"})
//	pushed, err := attest.Push(ctx, "registry/repo@sha256:...", [][]byte{bundle}, attest.PushOptions{})
//
// Create is deterministic: the same configuration, files and time produce the
// same bytes. Signing covers exactly those bytes (the DSSE payload), so the
// digest of a statement file is the digest other statements reference.
//
// Predicates are decoded strictly (DecodePredicate): unknown fields, missing
// required fields, malformed digests, unsafe paths and inconsistent values are
// errors, never silently ignored.
package attest
