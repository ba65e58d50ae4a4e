package policy

import (
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/release"
)

// ReleaseExitCode is the exit code of a release check report (0 when it
// passed): that of its most serious failure, tampering (12) over malformed
// (14) over missing evidence (10) over unmet requirements (13).
func ReleaseExitCode(r release.Report) int {
	if r.OK {
		return ExitAllowed
	}
	best := 0
	rank := map[int]int{ExitMismatch: 4, ExitMalformed: 3, ExitNoEvidence: 2, ExitUnmet: 1}
	for _, f := range r.Failures() {
		if code := releaseFailureCode(f.Code); rank[code] > rank[best] {
			best = code
		}
	}
	if best == 0 {
		best = ExitUnmet
	}
	return best
}

func releaseFailureCode(code string) int {
	switch code {
	case release.CodeDigestMismatch, release.CodeSizeMismatch, release.CodeSubject, release.CodeExtraFile,
		release.CodeMissingFile, release.CodeTensorMismatch, release.CodeRootDigest, release.CodeDuplicateTitle:
		return ExitMismatch
	case release.CodeMalformed, release.CodeInvalidInput:
		return ExitMalformed
	case release.CodeNoEvidence:
		return ExitNoEvidence
	}
	return ExitUnmet
}

// EvidenceExitCode is the exit code that evidence failures explain when
// nothing verified: a digest or subject mismatch (12) over a signature that
// does not verify or is not trusted (11) over malformed evidence (14) over
// a fetch error (1); no failure at all is no evidence (10).
func EvidenceExitCode(failures []verify.Failure) int {
	kinds := map[verify.FailureKind]bool{}
	for _, f := range failures {
		kinds[f.Kind] = true
	}
	switch {
	case kinds[verify.FailMismatch]:
		return ExitMismatch
	case kinds[verify.FailInvalid]:
		return ExitInvalid
	case kinds[verify.FailMalformed]:
		return ExitMalformed
	case kinds[verify.FailFetch]:
		return ExitOther
	}
	return ExitNoEvidence
}
