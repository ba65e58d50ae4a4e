package signals

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// Bounds of an answer. An answer larger than MaxAnswerSize is refused
// while it is read (the rest is never read), so the evidence within it is
// bounded by it too.
const (
	MaxAnswerSize = 1 << 20
	MaxFindings   = 4096
	MaxEvidence   = 16
)

// Severities a finding may have.
var Severities = []string{"critical", "high", "medium", "low", "info", "unknown"}

// Error kinds: what went wrong asking a provider. The policy's onError
// decides what any of them means (deny, by default); they are metric
// outcomes and audit reasons.
const (
	KindTimeout   = "timeout"   // the provider did not answer within its timeout
	KindNetwork   = "network"   // connection, TLS or token-file failure
	KindStatus    = "status"    // HTTP status other than 200
	KindMalformed = "malformed" // the answer breaks the contract (syntax, fields, size)
	KindSubject   = "subject"   // the answer is about another digest
	KindExec      = "exec"      // the program failed to start or exited non-zero
	KindInvalid   = "invalid"   // the ask itself is wrong: unknown provider, no digest
)

// Error is a failure to get a usable answer from a provider.
type Error struct {
	Provider string
	Kind     string
	Msg      string
}

func (e *Error) Error() string {
	return fmt.Sprintf("signal provider %s: %s: %s", e.Provider, e.Kind, e.Msg)
}

// readCapped reads r up to MaxAnswerSize bytes; more is an error of kind
// malformed (the excess is not read).
func readCapped(r io.Reader) ([]byte, *Error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxAnswerSize+1))
	if err != nil {
		return nil, &Error{Kind: KindNetwork, Msg: "reading the answer: " + err.Error()}
	}
	if len(b) > MaxAnswerSize {
		return nil, &Error{Kind: KindMalformed, Msg: fmt.Sprintf("answer larger than %d bytes", MaxAnswerSize)}
	}
	return b, nil
}

// ParseAnswer reads an answer about digest want strictly: one JSON object
// of at most MaxAnswerSize bytes, no repeated key, no key the contract
// does not define (facts excepted: it is free-form), apiVersion equal to
// APIVersion, provider name and version present, status done or pending,
// severities from Severities, facts an object, at most MaxFindings
// findings and MaxEvidence evidence objects, ttl not negative. An answer
// about another digest is an *Error of kind subject; any other fault of
// kind malformed. The Error's Provider is left empty for the caller.
func ParseAnswer(b []byte, want string) (*Answer, error) {
	a, err := parseAnswer(b, want)
	if err != nil {
		return nil, err
	}
	return a, nil
}

func parseAnswer(b []byte, want string) (*Answer, *Error) {
	bad := func(format string, args ...any) *Error {
		return &Error{Kind: KindMalformed, Msg: fmt.Sprintf(format, args...)}
	}
	if len(b) > MaxAnswerSize {
		return nil, bad("answer larger than %d bytes", MaxAnswerSize)
	}
	var a Answer
	if err := strictjson.UnmarshalObject(b, &a); err != nil {
		return nil, bad("%v", err)
	}
	if a.APIVersion != APIVersion {
		return nil, bad("apiVersion %q: want %q", clip(a.APIVersion), APIVersion)
	}
	if a.Provider.Name == "" || a.Provider.Version == "" {
		return nil, bad("provider.name and provider.version are required (a version change is how older answers become stale)")
	}
	switch a.Status {
	case StatusDone, StatusPending:
	default:
		return nil, bad("status %q: want %q or %q", clip(a.Status), StatusDone, StatusPending)
	}
	if a.Subject.Digest != want {
		return nil, &Error{Kind: KindSubject, Msg: fmt.Sprintf("answer is about %q, asked about %q", clip(a.Subject.Digest), want)}
	}
	// What pullgate repeats in reasons, audit lines and pullgate verify's
	// output: short, printable ASCII.
	for _, f := range [...]struct{ what, v string }{{"provider.name", a.Provider.Name}, {"provider.version", a.Provider.Version},
		{"provider.dbVersion", a.Provider.DBVersion}, {"verdict", a.Verdict}} {
		if !shortASCII(f.v) {
			return nil, bad("%s %q: at most %d printable ASCII characters", f.what, clip(f.v), maxLabel)
		}
	}
	if len(a.Findings) > MaxFindings {
		return nil, bad("%d findings: at most %d", len(a.Findings), MaxFindings)
	}
	for i, f := range a.Findings {
		if f.ID == "" {
			return nil, bad("findings[%d].id is required", i)
		}
		if !validSeverity(f.Severity) {
			return nil, bad("findings[%d].severity %q: want one of %v", i, clip(f.Severity), Severities)
		}
	}
	if len(a.Evidence) > MaxEvidence {
		return nil, bad("%d evidence items: at most %d", len(a.Evidence), MaxEvidence)
	}
	for i, e := range a.Evidence {
		if t := bytes.TrimSpace(e); len(t) == 0 || t[0] != '{' {
			return nil, bad("evidence[%d]: must be a JSON object (a Sigstore bundle)", i)
		}
	}
	if a.TTL < 0 {
		return nil, bad("ttl %d: must not be negative", a.TTL)
	}
	// facts decodes into a map: anything but an object or null fails
	// above; null is refused here (an object, or no key at all). An
	// object always gives a map, so only an answer without one is
	// decoded again to tell null from no key.
	if a.Facts == nil {
		var raw struct {
			Facts json.RawMessage `json:"facts"`
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, bad("%v", err)
		}
		if raw.Facts != nil && !bytes.HasPrefix(bytes.TrimSpace(raw.Facts), []byte("{")) {
			return nil, bad("facts must be a JSON object")
		}
	}
	return &a, nil
}

func validSeverity(s string) bool {
	for _, v := range Severities {
		if s == v {
			return true
		}
	}
	return false
}

// maxLabel bounds the provider's name, version, database version and
// verdict, which reasons and audit lines repeat.
const maxLabel = 128

// shortASCII reports whether s is at most maxLabel printable ASCII
// characters (no control, no bidi override, nothing a terminal or log
// reader interprets).
func shortASCII(s string) bool {
	if len(s) > maxLabel {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// clip is a value the provider sent, for an error message: printable and
// at most 160 bytes (a sha512 digest fits).
func clip(s string) string {
	s = printable(s)
	if len(s) > 160 {
		s = strings.ToValidUTF8(s[:160], "") + "…"
	}
	return s
}
