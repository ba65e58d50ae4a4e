// Package signals asks external providers, configured by the operator,
// for facts about a digest: runtime sandboxes, vulnerability scanners,
// malware feeds. A provider attests facts; it never decides. The policy
// reads the facts (CEL `signals.<provider>`, Rego `input.signals`) and a
// missing, failed or pending answer can only keep or cause a denial.
//
// Two transports speak the same versioned JSON contract (APIVersion):
// HTTPS POST of a Request to the provider's URL, answered by an Answer,
// and a local program that reads the Request on stdin and prints the
// Answer on stdout. Answers are parsed strictly and bounded in size; an
// answer about another digest is an error.
//
// A Service holds the providers: it caches answers by (provider, digest)
// with the provider's version and database version (an answer from a
// newer version makes older answers stale), coalesces concurrent asks for
// one digest into one call, caps concurrency per provider and bounds
// retries.
package signals

import (
	"encoding/json"
	"time"
)

// APIVersion names the request and answer format this package speaks.
const APIVersion = "pullgate.dev/signals/v1"

// Request is what pullgate sends a provider: the subject it decides,
// by digest (a provider never sees an unresolved tag as the subject).
type Request struct {
	APIVersion string  `json:"apiVersion"`
	Subject    Subject `json:"subject"`
}

// Subject is the artifact asked about.
type Subject struct {
	Digest       string  `json:"digest"`
	MediaType    string  `json:"mediaType"`
	ArtifactType string  `json:"artifactType,omitempty"`
	Size         int64   `json:"size,omitempty"`
	Upstream     string  `json:"upstream"`   // the upstream's configured name
	Repository   string  `json:"repository"` // "<upstream>/<repo path>"
	Tag          string  `json:"tag,omitempty"`
	Layers       []Layer `json:"layers,omitempty"`
}

// Layer is one blob the subject's manifest references.
type Layer struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Title     string `json:"title,omitempty"` // org.opencontainers.image.title
}

// Answer statuses.
const (
	StatusDone    = "done"
	StatusPending = "pending"
)

// Answer is a provider's answer about one digest.
type Answer struct {
	APIVersion string       `json:"apiVersion"`
	Provider   ProviderInfo `json:"provider"`
	Subject    struct {
		Digest string `json:"digest"`
	} `json:"subject"`
	// Status is StatusDone or StatusPending (the provider has not
	// finished looking; the facts are absent or partial).
	Status string `json:"status"`
	// Verdict is the provider's one-word summary (e.g. clean, malicious,
	// suspicious, unknown): a fact like any other, free text.
	Verdict  string    `json:"verdict,omitempty"`
	Findings []Finding `json:"findings,omitempty"`
	// Facts is free-form JSON (an object) the policy may read.
	Facts map[string]any `json:"facts,omitempty"`
	// Evidence is signed statements about the digest (Sigstore bundles,
	// JSON), verified by the caller with the policy's trust exactly like
	// referrer attestations.
	Evidence []json.RawMessage `json:"evidence,omitempty"`
	// TTL, when set, shortens how long the answer is reused (never past
	// the provider's configured cacheTTL).
	TTL Seconds `json:"ttl,omitempty"`
}

// ProviderInfo identifies what answered: a change of Version or
// DBVersion makes earlier answers stale.
type ProviderInfo struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	DBVersion string `json:"dbVersion,omitempty"`
}

// Finding is one thing a provider found.
type Finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"` // critical, high, medium, low, info, unknown
	Message  string `json:"message,omitempty"`
}

// Seconds is a duration written as a number of seconds.
type Seconds int64

// D returns the value as a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) * time.Second }
