// Package shape checks that a blob served as part of a signature or
// attestation artifact has the shape of one: a cosign simple-signing
// payload, a DSSE envelope, a Sigstore bundle, an in-toto statement, or an
// image configuration. The proxy serves such blobs under the subject's
// decision instead of the repository's content rules, so nothing else may
// pass as one: a model's config.json with auto_map, a tokenizer config with
// a chat template or any other JSON that a loader would act on has top-level
// keys none of these shapes has, and is refused.
//
// Only the top level (and the DSSE signature list) is checked strictly;
// whether the evidence verifies is the verifier's business.
package shape

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pullgate/pullgate/verify/content"
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

type simpleSigning struct {
	Critical struct {
		Identity map[string]any `json:"identity"`
		Image    struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

type envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

type bundle struct {
	MediaType            string          `json:"mediaType"`
	VerificationMaterial json.RawMessage `json:"verificationMaterial"`
	DSSEEnvelope         json.RawMessage `json:"dsseEnvelope"`
	MessageSignature     json.RawMessage `json:"messageSignature"`
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
		var s simpleSigning
		if err := strict(b, &s); err != nil {
			return fmt.Errorf("not a cosign simple-signing payload: %w", err)
		}
		if s.Critical.Image.DockerManifestDigest == "" || s.Critical.Type == "" {
			return errors.New("not a cosign simple-signing payload: critical.image.docker-manifest-digest or critical.type is missing")
		}
	case DSSEEnvelope:
		if err := checkEnvelope(b); err != nil {
			return err
		}
	case Bundle03, Bundle03Params:
		var s bundle
		if err := strict(b, &s); err != nil {
			return fmt.Errorf("not a Sigstore bundle: %w", err)
		}
		if s.MediaType == "" || len(s.VerificationMaterial) == 0 || (len(s.DSSEEnvelope) == 0) == (len(s.MessageSignature) == 0) {
			return errors.New("not a Sigstore bundle: mediaType, verificationMaterial and exactly one of dsseEnvelope or messageSignature are required")
		}
	case InToto:
		// A statement, or (as some tools write it) a DSSE envelope.
		var s statement
		serr := strict(b, &s)
		if serr == nil && s.Type != "" && len(s.Subject) > 0 && s.PredicateType != "" {
			return nil
		}
		if checkEnvelope(b) == nil {
			return nil
		}
		if serr == nil {
			serr = errors.New("_type, subject and predicateType are required")
		}
		return fmt.Errorf("not an in-toto statement or DSSE envelope: %w", serr)
	default:
		var c v1.ConfigFile
		if err := strict(b, &c); err != nil {
			return fmt.Errorf("config of a signature/attestation artifact (%s) is not an image configuration: %w", mediaType, err)
		}
	}
	return nil
}

func checkEnvelope(b []byte) error {
	var e envelope
	if err := strict(b, &e); err != nil {
		return fmt.Errorf("not a DSSE envelope: %w", err)
	}
	if e.PayloadType == "" || e.Payload == "" || len(e.Signatures) == 0 {
		return errors.New("not a DSSE envelope: payloadType, payload and signatures are required")
	}
	return nil
}

// strict decodes one JSON object into v: valid UTF-8 with no duplicate keys
// at any level (content.CheckConfigJSON's strict parser), top-level keys
// exactly (case-sensitively) the JSON names of v's fields, nothing unknown
// below them either, and nothing after the object.
func strict(b []byte, v any) error {
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	if err := content.CheckConfigJSON(content.Options{}, b); err != nil {
		return err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return err
	}
	names := fieldNames(reflect.TypeOf(v).Elem())
	for k := range top {
		if !names[k] {
			return fmt.Errorf("unknown field %q", k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// fieldNames are the JSON names of a struct's fields.
func fieldNames(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	return names
}
