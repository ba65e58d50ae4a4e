package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Diagnostic is one problem found in a policy file, positioned at the YAML
// node that caused it. Line and Col are 1-based; 0 means "whole file".
type Diagnostic struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
	// Fix tells the operator how to repair the problem.
	Fix string `json:"fix,omitempty"`
	// Severity is SeverityWarning for a warning (`policy lint` exits 0);
	// empty for an error.
	Severity string `json:"severity,omitempty"`
}

// SeverityWarning marks a Diagnostic that is a warning.
const SeverityWarning = "warning"

// HasErrors reports whether any diagnostic is an error (not a warning).
func HasErrors(diags []Diagnostic) bool {
	for _, d := range diags {
		if d.Severity != SeverityWarning {
			return true
		}
	}
	return false
}

// String renders "file:line:col: message (fix: ...)", the format of
// `pullgate policy lint`.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Col)
	}
	b.WriteString(": ")
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(d.Message)
	if d.Fix != "" {
		b.WriteString(" (fix: ")
		b.WriteString(d.Fix)
		b.WriteString(")")
	}
	return b.String()
}

// LoadError is returned by Load when the policy is invalid. It carries every
// diagnostic, not only the first.
type LoadError struct {
	Diagnostics []Diagnostic
}

func (e *LoadError) Error() string {
	if len(e.Diagnostics) == 0 {
		return "invalid policy"
	}
	parts := make([]string, 0, len(e.Diagnostics))
	for _, d := range e.Diagnostics {
		parts = append(parts, d.String())
	}
	return fmt.Sprintf("invalid policy (%d error(s)):\n%s", len(e.Diagnostics), strings.Join(parts, "\n"))
}

// DiagnosticsOf extracts the diagnostics from an error returned by Load.
// Other errors become a single file-level diagnostic.
func DiagnosticsOf(file string, err error) []Diagnostic {
	if err == nil {
		return nil
	}
	var le *LoadError
	if errors.As(err, &le) {
		return le.Diagnostics
	}
	return []Diagnostic{{File: file, Message: err.Error()}}
}
