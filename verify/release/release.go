// Package release checks verified attestations as a whole: the LLM release
// provenance chain (prompt + corpus → eval → route → slo), the model bill of
// materials against the layers being served, and OpenSSF model signing
// manifests against the same layers.
//
// Every function takes attestations that verify.Collect already verified
// (signature by configured trust, subject containing the decided digest).
// Attestations that failed verification are simply absent, so a statement
// re-signed by an untrusted key shows up here as a missing link. The checks
// never fetch anything and never look at the wall clock except through
// ChainOptions.Now.
package release

import (
	"fmt"
	"strings"
)

// Check is one verdict with a precise reason.
type Check struct {
	// Name is the check family: "chain llm-release", "mbom",
	// "openssf-model-signing".
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Code classifies a failure (empty when OK); see the Code* constants.
	Code string `json:"code,omitempty"`
	// Reason says what was checked or exactly what is wrong, prefixed by Name.
	Reason string `json:"reason"`
}

// Failure codes.
const (
	CodeMissing        = "missing"             // a required statement is absent
	CodeMissingLink    = "missing-link"        // a reference points at nothing verified
	CodeWrongLinkType  = "wrong-link-type"     // a reference points at the wrong kind
	CodeTemporalOrder  = "temporal-order"      // a statement predates what it references
	CodeFutureDated    = "future-dated"        // createdAt after the signing time or now
	CodeEvalFailed     = "eval-failed"         // the eval's thresholds did not hold
	CodeStaleEval      = "stale-eval"          // a newer eval exists for the same prompt
	CodeSuperseded     = "superseded"          // a newer prompt/corpus was not evaluated
	CodeSubject        = "subject-mismatch"    // a statement does not name the served digest
	CodeMalformed      = "malformed"           // a predicate failed strict decoding
	CodeAmbiguous      = "ambiguous"           // several candidates, none preferred
	CodeExtraFile      = "extra-file"          // a served layer the manifest does not list
	CodeMissingFile    = "missing-file"        // a listed file no layer serves
	CodeDigestMismatch = "digest-mismatch"     // same file, other sha256
	CodeSizeMismatch   = "size-mismatch"       // same file, other size
	CodeUntitled       = "untitled-layer"      // a layer without a title annotation
	CodeTensorMismatch = "tensor-mismatch"     // tensor names/dtypes/shapes differ
	CodeUnsupported    = "unsupported"         // a valid but unsupported variant
	CodeRootDigest     = "root-digest"         // OMS subject does not match resources
	CodeDuplicateTitle = "duplicate-title"     // two layers claim the same file
	CodeNoEvidence     = "no-evidence"         // nothing of the required type
	CodeTypeMismatch   = "predicate-type"      // an attestation of another type was given
	CodeInvalidInput   = "invalid-input"       // a caller-supplied layer is malformed
	CodeMissingTensors = "missing-tensor-info" // tensors expected, none supplied
)

// Report is the outcome of one check family.
type Report struct {
	Name   string  `json:"name"`
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Failures returns the failed checks.
func (r Report) Failures() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Reasons returns the reasons of the failed checks.
func (r Report) Reasons() []string {
	var out []string
	for _, c := range r.Failures() {
		out = append(out, c.Reason)
	}
	return out
}

// Err is nil when the report passed, else an error listing every failure.
func (r Report) Err() error {
	if r.OK {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(r.Reasons(), "; "))
}

type reporter struct {
	r Report
}

func newReporter(name string) *reporter {
	return &reporter{r: Report{Name: name, Checks: []Check{}}}
}

func (rp *reporter) pass(format string, args ...any) {
	rp.r.Checks = append(rp.r.Checks, Check{Name: rp.r.Name, OK: true, Reason: rp.r.Name + ": " + fmt.Sprintf(format, args...)})
}

func (rp *reporter) fail(code, format string, args ...any) {
	rp.r.Checks = append(rp.r.Checks, Check{Name: rp.r.Name, Code: code, Reason: rp.r.Name + ": " + fmt.Sprintf(format, args...)})
}

func (rp *reporter) done() Report {
	rp.r.OK = len(rp.r.Checks) > 0
	for _, c := range rp.r.Checks {
		if !c.OK {
			rp.r.OK = false
		}
	}
	return rp.r
}
