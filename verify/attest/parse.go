package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// MaxStatementSize bounds statements and predicates that are parsed.
const MaxStatementSize = 16 << 20

// ParsedStatement is a decoded in-toto statement with its predicate left raw.
type ParsedStatement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
	// Digest is sha256:<hex> of the exact bytes parsed.
	Digest string `json:"-"`
}

// StatementDigest returns sha256:<hex> of statement bytes, the value other
// statements use to reference it.
func StatementDigest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// ParseStatement decodes an in-toto Statement v1 strictly: unknown top-level
// fields, a wrong _type, no subject, malformed subject digests and a missing
// predicate are errors. The predicate is not decoded (see DecodePredicate).
func ParseStatement(b []byte) (*ParsedStatement, error) {
	if len(b) > MaxStatementSize {
		return nil, fmt.Errorf("statement is %d bytes, more than the %d byte limit", len(b), MaxStatementSize)
	}
	var s ParsedStatement
	if err := strictjson.UnmarshalObject(b, &s); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if s.Type != StatementTypeV1 {
		return nil, fmt.Errorf("statement: _type %q is not %s", s.Type, StatementTypeV1)
	}
	if s.PredicateType == "" {
		return nil, errors.New("statement: predicateType is required")
	}
	if err := checkText("predicateType", s.PredicateType, true); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if len(bytes.TrimSpace(s.Predicate)) == 0 || string(bytes.TrimSpace(s.Predicate)) == "null" {
		return nil, errors.New("statement: predicate is required")
	}
	if err := validateSubjects(s.Subject); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	s.Digest = StatementDigest(b)
	return &s, nil
}

func validateSubjects(subs []Subject) error {
	if len(subs) == 0 {
		return errors.New("at least one subject is required")
	}
	for i, s := range subs {
		if err := checkText(fmt.Sprintf("subject[%d].name", i), s.Name, false); err != nil {
			return err
		}
		if len(s.Digest) == 0 {
			return fmt.Errorf("subject[%d] %q has no digest", i, s.Name)
		}
		for alg, v := range s.Digest {
			if alg == "sha256" && !hexRE.MatchString(v) {
				return fmt.Errorf("subject[%d] %q: sha256 %q is not 64 lowercase hex digits", i, s.Name, v)
			}
			if err := checkText("subject digest", v, true); err != nil {
				return fmt.Errorf("subject[%d] %q: %w", i, s.Name, err)
			}
		}
	}
	return nil
}

// HasSubject reports whether the statement names the digest (sha256:<hex>)
// among its subjects.
func (s *ParsedStatement) HasSubject(dgst string) bool {
	return SubjectsContain(s.Subject, dgst)
}

// SubjectsContain reports whether subjects name the digest (sha256:<hex>).
func SubjectsContain(subs []Subject, dgst string) bool {
	if !IsDigest(dgst) {
		return false
	}
	h := dgst[len("sha256:"):]
	for _, s := range subs {
		if s.Digest["sha256"] == h {
			return true
		}
	}
	return false
}

// DecodePredicate decodes and validates a pullgate predicate by its type URI.
// It returns *PromptPredicate, *CorpusPredicate, *EvalPredicate,
// *RoutePredicate, *SLOPredicate or *MBOMPredicate.
func DecodePredicate(predicateType string, raw []byte) (any, error) {
	k, ok := KindOf(predicateType)
	if !ok {
		return nil, fmt.Errorf("predicate type %q is not a pullgate predicate", predicateType)
	}
	if len(raw) > MaxStatementSize {
		return nil, fmt.Errorf("%s predicate is larger than %d bytes", k, MaxStatementSize)
	}
	var p interface{ Validate() error }
	switch k {
	case KindPrompt:
		p = &PromptPredicate{}
	case KindCorpus:
		p = &CorpusPredicate{}
	case KindEval:
		p = &EvalPredicate{}
	case KindRoute:
		p = &RoutePredicate{}
	case KindSLO:
		p = &SLOPredicate{}
	case KindMBOM:
		p = &MBOMPredicate{}
	}
	if err := strictjson.UnmarshalObject(raw, p); err != nil {
		return nil, fmt.Errorf("%s predicate: %w", k, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s predicate: %w", k, err)
	}
	return p, nil
}

// CommonOf returns the common header of a decoded pullgate predicate.
func CommonOf(p any) (Common, bool) {
	switch v := p.(type) {
	case *PromptPredicate:
		return v.Common, true
	case *CorpusPredicate:
		return v.Common, true
	case *EvalPredicate:
		return v.Common, true
	case *RoutePredicate:
		return v.Common, true
	case *SLOPredicate:
		return v.Common, true
	case *MBOMPredicate:
		return v.Common, true
	}
	return Common{}, false
}
