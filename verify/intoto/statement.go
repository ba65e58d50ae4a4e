// Package intoto parses in-toto attestation Statements (v0.1 and v1) from
// hostile bytes and matches their subjects against a digest.
package intoto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pullgate/pullgate/verify/dsse"
	"github.com/pullgate/pullgate/verify/strictjson"
)

// Statement and payload types.
const (
	StatementV01 = "https://in-toto.io/Statement/v0.1"
	StatementV1  = "https://in-toto.io/Statement/v1"
	// PayloadType is the DSSE payloadType of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
)

// Limits on statements.
const (
	MaxStatementSize = 16 << 20
	MaxSubjects      = 4096
	MaxDigestsPerSub = 16
)

// Statement is a parsed in-toto statement.
type Statement struct {
	Type          string
	Subjects      []Subject
	PredicateType string
	// Predicate is the raw predicate JSON (nil when absent).
	Predicate json.RawMessage
}

// Subject is one statement subject: a name and digests by algorithm.
type Subject struct {
	Name   string
	Digest map[string]string
}

type wireStatement struct {
	Type          string          `json:"_type"`
	Subject       []wireSubject   `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

type wireSubject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Parse decodes a statement. It requires a known _type, a predicateType, at
// least one subject, and a non-empty digest set on every subject. The
// statement, predicate included, is read one way (strictjson): no key
// repeats at any depth (a repeated key is read differently by different
// JSON parsers, a classic signature-bypass vector), field names are
// matched in their exact case, the UTF-8 is valid and nothing follows.
// Unknown fields are ignored.
func Parse(data []byte) (*Statement, error) {
	if len(data) > MaxStatementSize {
		return nil, fmt.Errorf("in-toto: statement of %d bytes exceeds the %d byte limit", len(data), MaxStatementSize)
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("in-toto: statement is not a JSON object")
	}
	var w wireStatement
	if err := strictjson.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("in-toto: statement is not valid JSON: %w", err)
	}
	switch w.Type {
	case StatementV01, StatementV1:
	case "":
		return nil, errors.New("in-toto: statement has no _type")
	default:
		return nil, fmt.Errorf("in-toto: unsupported statement type %q", truncate(w.Type))
	}
	if w.PredicateType == "" {
		return nil, errors.New("in-toto: statement has no predicateType")
	}
	if len(w.Subject) == 0 {
		return nil, errors.New("in-toto: statement has no subject")
	}
	if len(w.Subject) > MaxSubjects {
		return nil, fmt.Errorf("in-toto: statement has %d subjects, more than the limit of %d", len(w.Subject), MaxSubjects)
	}
	st := &Statement{Type: w.Type, PredicateType: w.PredicateType, Subjects: make([]Subject, len(w.Subject))}
	for i, s := range w.Subject {
		if len(s.Digest) == 0 {
			return nil, fmt.Errorf("in-toto: subject %d has no digest", i)
		}
		if len(s.Digest) > MaxDigestsPerSub {
			return nil, fmt.Errorf("in-toto: subject %d has too many digests", i)
		}
		st.Subjects[i] = Subject{Name: s.Name, Digest: s.Digest}
	}
	if p := bytes.TrimSpace(w.Predicate); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		st.Predicate = w.Predicate
	}
	return st, nil
}

// HasSubjectDigest reports whether a subject carries the digest alg:hexValue
// (hex compared case-insensitively, as in-toto digests are hex strings).
func (s *Statement) HasSubjectDigest(alg, hexValue string) bool {
	want := strings.ToLower(hexValue)
	if _, err := hex.DecodeString(want); err != nil || want == "" {
		return false
	}
	for _, sub := range s.Subjects {
		if v, ok := sub.Digest[alg]; ok && strings.ToLower(v) == want {
			return true
		}
	}
	return false
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// ParseEnvelope parses a DSSE envelope that carries an in-toto statement
// (payloadType application/vnd.in-toto+json) and the statement in it, as
// the verifier reads cosign attestations and bundle envelopes; the proxy
// serves such an envelope only if this accepts it.
func ParseEnvelope(blob []byte) (*dsse.Envelope, *Statement, error) {
	env, err := dsse.Parse(blob)
	if err != nil {
		return nil, nil, err
	}
	if env.PayloadType != PayloadType {
		return nil, nil, fmt.Errorf("DSSE payloadType is %q, want %q", truncate(env.PayloadType), PayloadType)
	}
	st, err := Parse(env.Payload)
	if err != nil {
		return nil, nil, err
	}
	return env, st, nil
}
