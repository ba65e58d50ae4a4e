// Package shape checks that a blob served as part of a signature or
// attestation artifact has the shape of one: a cosign simple-signing
// payload, a DSSE envelope, a Sigstore bundle, an in-toto statement, or an
// image configuration. The proxy serves such blobs under the subject's
// decision instead of the repository's content rules, so nothing else may
// pass as one: a model's config.json with auto_map, a tokenizer config with
// a chat template or any other JSON that a loader would act on has top-level
// keys none of these shapes has, and is refused.
//
// Signed JSON is read one way: a simple-signing payload, a DSSE envelope
// (with its in-toto statement) and a Sigstore bundle are checked by the very
// parsers the verifier decides with (verify/cosign, verify/intoto,
// verify.CheckBundle, all on verify/strictjson), so a blob is served exactly
// when the verifier can read it, and means to the client what it meant to
// the decision. Whether the evidence verifies is the verifier's business.
package shape

import (
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/intoto"
	"github.com/pullgate/pullgate/verify/strictjson"
)

// Evidence media types of signature and attestation layers.
const (
	SimpleSigning  = "application/vnd.dev.cosign.simplesigning.v1+json"
	DSSEEnvelope   = "application/vnd.dsse.envelope.v1+json"
	Bundle03       = "application/vnd.dev.sigstore.bundle.v0.3+json"
	Bundle03Params = "application/vnd.dev.sigstore.bundle+json;version=0.3"
	InToto         = "application/vnd.in-toto+json"
)

// IsLayerType reports a media type that marks a signature/attestation layer.
func IsLayerType(mediaType string) bool {
	switch mediaType {
	case SimpleSigning, DSSEEnvelope, Bundle03, Bundle03Params, InToto:
		return true
	}
	return false
}

type statement struct {
	Type          string          `json:"_type"`
	Subject       json.RawMessage `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Check returns an error unless b, declared with mediaType in a
// signature/attestation manifest, has the shape that media type promises.
// Any other media type (the manifest's config) must be an image
// configuration: {} or the fields of one, and nothing else.
func Check(mediaType string, b []byte) error {
	switch mediaType {
	case SimpleSigning:
		if _, err := cosign.ParseSimpleSigning(b); err != nil {
			return fmt.Errorf("not a cosign simple-signing payload: %w", err)
		}
	case DSSEEnvelope:
		if _, _, err := intoto.ParseEnvelope(b); err != nil {
			return fmt.Errorf("not a DSSE envelope of an in-toto statement: %w", err)
		}
	case Bundle03, Bundle03Params:
		if err := verify.CheckBundle(b); err != nil {
			return fmt.Errorf("not a Sigstore bundle: %w", err)
		}
	case InToto:
		// A statement, or (as some tools write it) a DSSE envelope.
		var s statement
		serr := strictjson.UnmarshalObject(b, &s)
		if serr == nil && s.Type != "" && len(s.Subject) > 0 && s.PredicateType != "" {
			return nil
		}
		if _, _, err := intoto.ParseEnvelope(b); err == nil {
			return nil
		}
		if serr == nil {
			serr = errors.New("_type, subject and predicateType are required")
		}
		return fmt.Errorf("not an in-toto statement or DSSE envelope: %w", serr)
	default:
		var c v1.ConfigFile
		if err := strictjson.UnmarshalObject(b, &c); err != nil {
			return fmt.Errorf("config of a signature/attestation artifact (%s) is not an image configuration: %w", mediaType, err)
		}
		// Not signed JSON, but JSON a loader might read: the content
		// rules for JSON configs apply (templates, remote-code hooks).
		if err := content.CheckConfigJSON(content.Options{}, b); err != nil {
			return fmt.Errorf("config of a signature/attestation artifact (%s): %w", mediaType, err)
		}
	}
	return nil
}
