// Package dsse parses and verifies DSSE envelopes (Dead Simple Signing
// Envelope, https://github.com/secure-systems-lab/dsse, protocol v1). Input
// is hostile: parsing is strict and bounded, and verification is over the
// pre-authentication encoding (PAE) of the exact payload bytes.
package dsse

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// Limits on what an envelope may contain.
const (
	// MaxEnvelopeSize bounds the JSON envelope handed to Parse.
	MaxEnvelopeSize = 16 << 20
	// MaxSignatures bounds the number of signatures in one envelope.
	MaxSignatures = 16
	// MaxSignatureSize bounds one decoded signature (RSA-8192 is 1 KiB).
	MaxSignatureSize = 4096
)

// Envelope is a parsed DSSE envelope with its payload already decoded.
type Envelope struct {
	PayloadType string
	// Payload is the decoded payload: the exact bytes that were signed.
	Payload    []byte
	Signatures []Signature
}

// Signature is one decoded signature of an envelope.
type Signature struct {
	KeyID string
	Sig   []byte
}

type wireEnvelope struct {
	PayloadType *string         `json:"payloadType"`
	Payload     *string         `json:"payload"`
	Signatures  []wireSignature `json:"signatures"`
}

type wireSignature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Parse decodes a JSON DSSE envelope. It requires payloadType, payload and
// at least one non-empty signature, and decodes base64 in the standard or
// URL-safe alphabet, padded or not, as the DSSE spec allows. The envelope
// is read one way (strictjson): one JSON object with no repeated key, the
// envelope's fields in their exact case and no other field, valid UTF-8.
func Parse(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("dsse: envelope of %d bytes exceeds the %d byte limit", len(data), MaxEnvelopeSize)
	}
	var w wireEnvelope
	if err := strictjson.UnmarshalKnown(data, &w); err != nil {
		return nil, fmt.Errorf("dsse: envelope is not valid JSON: %w", err)
	}
	if w.PayloadType == nil || *w.PayloadType == "" {
		return nil, errors.New("dsse: envelope has no payloadType")
	}
	if w.Payload == nil {
		return nil, errors.New("dsse: envelope has no payload")
	}
	if len(w.Signatures) == 0 {
		return nil, errors.New("dsse: envelope has no signatures")
	}
	if len(w.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("dsse: envelope has %d signatures, more than the limit of %d", len(w.Signatures), MaxSignatures)
	}
	payload, err := decodeB64(*w.Payload)
	if err != nil {
		return nil, fmt.Errorf("dsse: payload is not base64: %w", err)
	}
	env := &Envelope{PayloadType: *w.PayloadType, Payload: payload, Signatures: make([]Signature, 0, len(w.Signatures))}
	for i, s := range w.Signatures {
		if s.Sig == "" {
			return nil, fmt.Errorf("dsse: signature %d is empty", i)
		}
		if len(s.Sig) > MaxSignatureSize*2 {
			return nil, fmt.Errorf("dsse: signature %d is too large", i)
		}
		sig, err := decodeB64(s.Sig)
		if err != nil {
			return nil, fmt.Errorf("dsse: signature %d is not base64: %w", i, err)
		}
		if len(sig) == 0 || len(sig) > MaxSignatureSize {
			return nil, fmt.Errorf("dsse: signature %d has invalid length %d", i, len(sig))
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: s.KeyID, Sig: sig})
	}
	return env, nil
}

func decodeB64(s string) ([]byte, error) {
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// PAE is the DSSE v1 pre-authentication encoding:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
func PAE(payloadType string, payload []byte) []byte {
	lt := strconv.Itoa(len(payloadType))
	lb := strconv.Itoa(len(payload))
	out := make([]byte, 0, 6+1+len(lt)+1+len(payloadType)+1+len(lb)+1+len(payload))
	out = append(out, "DSSEv1 "...)
	out = append(out, lt...)
	out = append(out, ' ')
	out = append(out, payloadType...)
	out = append(out, ' ')
	out = append(out, lb...)
	out = append(out, ' ')
	out = append(out, payload...)
	return out
}

// VerifyFunc checks one signature over a message (the PAE bytes).
type VerifyFunc func(message, sig []byte) error

// ErrNoValidSignature is returned when no signature of the envelope verifies.
var ErrNoValidSignature = errors.New("dsse: no signature verifies")

// Verify reports whether any signature of the envelope verifies with verify
// over PAE(payloadType, payload). It returns the index of the first signature
// that verified.
func (e *Envelope) Verify(verify VerifyFunc) (int, error) {
	if e == nil || len(e.Signatures) == 0 {
		return -1, ErrNoValidSignature
	}
	pae := PAE(e.PayloadType, e.Payload)
	var errs []error
	for i, s := range e.Signatures {
		err := verify(pae, s.Sig)
		if err == nil {
			return i, nil
		}
		errs = append(errs, err)
	}
	return -1, fmt.Errorf("%w: %w", ErrNoValidSignature, errors.Join(errs...))
}
