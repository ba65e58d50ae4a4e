// Package policy is pullgate's policy model: it loads and validates the
// policy file (every error with file:line:col and a fix), matches
// repositories to rules, evaluates verification evidence into a Decision,
// compiles CEL conditions once per load, and hot-reloads the file.
//
// It never touches the network. Evidence comes from package verify; trust
// material is read from local files named by the policy.
package policy

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	"github.com/pullgate/pullgate/policy/glob"
	"github.com/pullgate/pullgate/verify"
)

// Action is what a rule does with a matching repository.
type Action string

// Actions.
const (
	ActionAllow  Action = "allow"
	ActionDeny   Action = "deny"
	ActionVerify Action = "verify"
)

// Mode says whether a denial is enforced or only reported.
type Mode string

// Modes.
const (
	ModeEnforce Mode = "enforce"
	// ModeAudit decides, reports "would deny", and serves anyway.
	ModeAudit Mode = "audit"
)

// TrustKind is the kind of a named trust entry.
type TrustKind string

// Trust kinds.
const (
	TrustKey      TrustKind = "key"
	TrustIdentity TrustKind = "identity"
)

// Policy is a loaded, validated policy. It is immutable after Load and safe
// for concurrent use.
type Policy struct {
	// File is the absolute path the policy was loaded from.
	File string
	// Trust is the trust material, with every referenced file read.
	Trust Trust
	// Rules in file order; the first matching rule wins.
	Rules []*Rule
	// Exceptions are the waivers of denials (top-level exceptions:), in
	// file order; see Waive.
	Exceptions []*Exception

	revision string
	// deps are the absolute paths of every file the policy depends on
	// (the policy itself and every trust file), for watching.
	deps []string
}

// Trust is the policy's trust section.
type Trust struct {
	Keys        []Key
	Identities  []verify.IdentitySpec
	TrustedRoot string // absolute path, empty when not configured
	// Spec is the trust material as verify consumes it: key PEM bytes and
	// the trusted root JSON already read from disk.
	Spec verify.TrustSpec
	// Verifier is Spec compiled by verify.NewTrust once per load (keys
	// parsed, trusted root parsed); pass it to verify.Collect. Never nil
	// in a loaded policy.
	Verifier *verify.Trust

	kinds map[string]TrustKind
	// keyIDs maps a key name to the SHA-256 of its PKIX public key, so that
	// one key listed under two names counts as one signer.
	keyIDs map[string]string
}

// Key is a named public key file.
type Key struct {
	Name string
	Path string // absolute path
}

// Kind reports whether name is a key or an identity ("" if unknown).
func (t *Trust) Kind(name string) TrustKind { return t.kinds[name] }

// KeyNamed reports the name of a trust key whose public key is pub (the
// same key under any encoding), "" when the trust lists none.
func (t *Trust) KeyNamed(pub crypto.PublicKey) string {
	id, ok := keyID(pub)
	if !ok {
		return ""
	}
	for _, k := range t.Keys {
		if t.keyIDs[k.Name] == id {
			return k.Name
		}
	}
	return ""
}

// keyID is what keyIDs holds for a public key: the hex SHA-256 of its
// PKIX DER (the same key under any encoding has the same id).
func keyID(pub crypto.PublicKey) (string, bool) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), true
}

// SeparateIdentity is SeparateKey for a keyless signer: it refuses a
// policy one of whose trusted identities (exact or regexp) the signer's
// certificate identity san from issuer matches.
func SeparateIdentity(p *Policy, san, issuer, what string) error {
	if name := p.Trust.Verifier.IdentityNamed(san, issuer); name != "" {
		return fmt.Errorf("%s signs as %s (issuer %s), which trust identity %q in the policy matches: the identity that signs pullgate's verification summaries must be one of its own, never one the policy trusts for artifacts (sign as another identity, or use --key)", what, san, issuer, name)
	}
	return nil
}

// SeparateKey refuses a policy whose trust lists pub, the key that signs
// what pullgate says about artifacts (VSAs, promoted copies): a key the
// policy trusts to sign releases must not also vouch that pullgate
// verified them, or one stolen key would be both. what names the key
// ("vsa.key", "promote --key").
func SeparateKey(p *Policy, pub crypto.PublicKey, what string) error {
	if name := p.Trust.KeyNamed(pub); name != "" {
		return fmt.Errorf("%s is the public key of trust key %q in the policy: the key that signs pullgate's verification summaries must be one of its own, never a key the policy trusts for artifacts (generate one: cosign generate-key-pair)", what, name)
	}
	return nil
}

// Rule is one policy rule.
type Rule struct {
	Name        string
	Description string
	Patterns    []string
	Action      Action
	Mode        Mode
	Require     *Require  // nil unless Action is verify
	Content     *Content  // nil when the rule has no content section
	Rego        *RegoRule // nil when the rule has no rego section
	// Line is the line of the rule in the policy file.
	Line int

	globs []*glob.Pattern
	trust *Trust
}

// Require lists what a verify rule needs.
type Require struct {
	// Signatures: trust names whose verified signatures over the digest
	// count (`signatures: [..]` or `{anyOf: [..], min: k}` / `{allOf: [..]}`).
	Signatures []string
	// SignaturesMin is how many distinct signers of Signatures must have
	// signed (k of n); 0 or 1 means any one. Distinct means distinct public
	// keys and distinct certificate identities: one key or identity listed
	// under two names counts once.
	SignaturesMin int
	// Attestations: every requirement must be satisfied.
	Attestations []*AttestationRequirement
	// Chain names a provenance chain profile that must verify (issue 5;
	// evaluated by the caller and passed in Input.Checks as "chain").
	Chain string
	// MBOM is "required", "optional" or "" (issue 5; evaluated by the
	// caller and passed in Input.Checks as "mbom").
	MBOM MBOMMode
	// TLog requires a Rekor inclusion proof for keyless evidence; Timestamp
	// requires a signed timestamp. verify enforces both while verifying;
	// policy additionally refuses keyless attestations without a verified
	// signing time when either is set.
	TLog      bool
	Timestamp bool
	// Conditions are CEL expressions over the artifact itself (its
	// manifest, image or model config, annotations; Artifact.Document):
	// every one must be true (evaluated by Rule.Evaluate from
	// Input.Artifact).
	Conditions []*Condition
	// Signals are the external providers that must answer for the digest
	// (see signals.go); conditions read their answers as signals.<name>.
	Signals []*SignalRequirement
}

// NeedsEvidence reports whether the requirements need signatures or
// attestations gathered (anything but conditions alone).
func (q *Require) NeedsEvidence() bool {
	return q != nil && (len(q.Signatures) > 0 || len(q.Attestations) > 0 || q.Chain != "" || q.MBOM != "")
}

// Condition is one of require.conditions.
type Condition struct {
	// Name names the condition in reasons; "" when the file gives none
	// (the reason then quotes Expr).
	Name string
	// UsesSignals: the condition reads signals (and then nothing of the
	// artifact: load refuses a condition that mixes them).
	UsesSignals bool
	Expr        string // CEL source
	// UsesNow: the condition reads the clock (now), so its result can
	// change without a policy change.
	UsesNow bool

	prg cel.Program
}

// label is how reasons name the condition.
func (c *Condition) label() string {
	// One line, whatever YAML block style the file used: reasons end up
	// in HTTP reason phrases and log lines.
	expr := strings.Join(strings.Fields(c.Expr), " ")
	if c.Name != "" {
		return c.Name + ": " + expr
	}
	return expr
}

// TimeDependent reports whether a decision of this rule can change with
// time alone (a condition reads now): callers bound how long they reuse it.
func (r *Rule) TimeDependent() bool {
	if r != nil && r.Rego != nil && r.Rego.usesTime {
		return true
	}
	if r == nil || r.Require == nil {
		return false
	}
	for _, c := range r.Require.Conditions {
		if c.UsesNow {
			return true
		}
	}
	return false
}

// HasConditions reports whether the rule has require.conditions (the
// caller must then pass Input.Artifact).
func (r *Rule) HasConditions() bool {
	return r != nil && r.Require != nil && len(r.Require.Conditions) > 0
}

// ReadsArtifact reports whether deciding under the rule reads what the
// artifact itself says (conditions other than over signals, or a Rego
// module): the caller must pass Input.Artifact, and a manifest covered by
// an allowed index is still decided on its own facts.
func (r *Rule) ReadsArtifact() bool {
	if r == nil {
		return false
	}
	if r.Rego != nil {
		return true
	}
	for _, c := range r.conditions() {
		if !c.UsesSignals {
			return true
		}
	}
	return false
}

func (r *Rule) conditions() []*Condition {
	if r.Require == nil {
		return nil
	}
	return r.Require.Conditions
}

// MBOMMode is the model bill of materials requirement.
type MBOMMode string

// MBOM modes.
const (
	MBOMRequired MBOMMode = "required"
	MBOMOptional MBOMMode = "optional"
)

// KnownChains are the provenance chain profiles `require.chain` may name.
var KnownChains = []string{"llm-release"}

// AttestationRequirement is one required attestation.
type AttestationRequirement struct {
	PredicateType string
	SignedBy      []string
	// SignedByMin is how many distinct signers of SignedBy must each have
	// signed a passing attestation of the type (k of n); 0 or 1: any one.
	SignedByMin int
	Condition   string // CEL source, empty for none

	prg cel.Program
}

// Revision is a stable hash of the policy's canonical content and of the
// bytes of every trust file it references. Verdict caches key on it.
func (p *Policy) Revision() string { return p.revision }

// Files returns the absolute paths of the policy file and of every trust
// file it references.
func (p *Policy) Files() []string { return append([]string(nil), p.deps...) }

// Match returns the first rule whose patterns match the repository
// ("<upstream>/<repo path>"), or nil when none does (which must deny).
func (p *Policy) Match(repository string) *Rule {
	if repository == "" {
		return nil
	}
	segs := glob.Segments(repository)
	for _, r := range p.Rules {
		for _, g := range r.globs {
			if g.MatchSegments(segs) {
				return r
			}
		}
	}
	return nil
}

// VerifyOptions are the verification requirements of this rule that verify
// enforces while verifying evidence (pass them in verify.CollectOptions).
func (r *Rule) VerifyOptions() verify.VerifyOptions {
	if r == nil || r.Require == nil {
		return verify.VerifyOptions{}
	}
	return verify.VerifyOptions{RequireTlog: r.Require.TLog, RequireTimestamp: r.Require.Timestamp}
}
