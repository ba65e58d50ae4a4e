// Package ocimanifest is the one parser of OCI and Docker v2 image manifests
// and indexes that pullgate serves: Parse validates the bytes once, and the
// parsed Manifest is what the proxy's decision, the content checks
// (verify/content.CheckManifest), the release checks (verify/release) and
// the evidence code read. It imports nothing of pullgate's.
package ocimanifest

import (
	// digest.Digest.Validate accepts an algorithm only when its hash is
	// linked in: sha512 is valid here whatever else the binary imports.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest media types pullgate serves.
const (
	MediaTypeOCIManifest    = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex       = ocispec.MediaTypeImageIndex
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// IsIndexType reports a multi-platform index media type (OCI or Docker).
func IsIndexType(mt string) bool { return mt == MediaTypeOCIIndex || mt == MediaTypeDockerList }

// IsManifestType reports an image manifest media type (OCI or Docker v2).
func IsManifestType(mt string) bool {
	return mt == MediaTypeOCIManifest || mt == MediaTypeDockerManifest
}

// IsKnownType reports a media type Parse accepts.
func IsKnownType(mt string) bool { return IsIndexType(mt) || IsManifestType(mt) }

// Manifest is a parsed and validated manifest or index. A Manifest returned
// by Parse is never modified; share it, do not change it.
type Manifest struct {
	// MediaType is the manifest's media type: embedded, else the one the
	// upstream declared, else inferred from the structure. Always one of
	// the four known types.
	MediaType    string
	ArtifactType string
	Config       *ocispec.Descriptor  // image manifests only (never nil there)
	Layers       []ocispec.Descriptor // image manifests only
	Manifests    []ocispec.Descriptor // index children (indexes only)
	Subject      *ocispec.Descriptor
	Annotations  map[string]string
	// Raw is the exact bytes parsed (shared with the caller, not copied):
	// what was hashed, signed and is served.
	Raw []byte

	// derived holds values other packages compute once from the manifest
	// (see Derived); a pointer so that a copy shares it.
	derived *derived
}

type derived struct {
	vals sync.Map   // key → value, read without locking
	mu   sync.Mutex // held while computing, so each key is computed once
}

// IsIndex reports a multi-platform index.
func (m *Manifest) IsIndex() bool { return IsIndexType(m.MediaType) }

// Blobs is every blob the manifest references (config first).
func (m *Manifest) Blobs() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	return append(out, m.Layers...)
}

// Derived returns the value compute returns for key, computed once per
// parsed manifest (a parsed manifest never changes, so neither does what is
// derived from it). key should be a value of a type private to the caller's
// package; compute must not call Derived on the same manifest. A Manifest
// not made by Parse computes every time.
func (m *Manifest) Derived(key any, compute func() any) any {
	d := m.derived
	if d == nil {
		return compute()
	}
	if v, ok := d.vals.Load(key); ok {
		return v
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.vals.Load(key); ok {
		return v
	}
	v := compute()
	d.vals.Store(key, v)
	return v
}

// Parse validates manifest bytes against the media type the upstream
// declared (declared may be empty, e.g. unknown). It refuses anything that
// is not JSON with schemaVersion 2, whose declared and embedded media types
// disagree (when the declared one is a manifest type), of another media
// type, an index with a config or layers, an image manifest without a
// config or with child manifests, and descriptors (config, layers,
// children, subject) whose digest is not a valid sha256 or sha512 digest or
// whose size is negative. body is kept as Raw, not copied.
func Parse(body []byte, declared string) (*Manifest, error) {
	var raw struct {
		SchemaVersion *int                 `json:"schemaVersion"`
		MediaType     string               `json:"mediaType"`
		ArtifactType  string               `json:"artifactType"`
		Config        *ocispec.Descriptor  `json:"config"`
		Layers        []ocispec.Descriptor `json:"layers"`
		Manifests     []ocispec.Descriptor `json:"manifests"`
		Subject       *ocispec.Descriptor  `json:"subject"`
		Annotations   map[string]string    `json:"annotations"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("not a valid JSON manifest: %v", err)
	}
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		return nil, fmt.Errorf("unsupported manifest schemaVersion (want 2)")
	}
	mt := raw.MediaType
	switch {
	case mt != "" && declared != "" && IsKnownType(declared) && mt != declared:
		return nil, fmt.Errorf("media type mismatch: upstream declared %s but the manifest says %s", declared, mt)
	case mt == "" && IsKnownType(declared):
		mt = declared
	case mt == "":
		// OCI allows omitting mediaType: infer from structure.
		if raw.Manifests != nil && raw.Config == nil {
			mt = MediaTypeOCIIndex
		} else {
			mt = MediaTypeOCIManifest
		}
	}
	if !IsKnownType(mt) {
		return nil, fmt.Errorf("unsupported manifest media type %q", mt)
	}
	m := &Manifest{MediaType: mt, ArtifactType: raw.ArtifactType, Subject: raw.Subject, Annotations: raw.Annotations,
		Raw: body, derived: &derived{}}
	if IsIndexType(mt) {
		if raw.Config != nil || raw.Layers != nil {
			return nil, fmt.Errorf("index has config or layers")
		}
		m.Manifests = raw.Manifests
	} else {
		if raw.Config == nil {
			return nil, fmt.Errorf("manifest has no config")
		}
		if raw.Manifests != nil {
			return nil, fmt.Errorf("manifest has child manifests")
		}
		m.Config, m.Layers = raw.Config, raw.Layers
	}
	check := func(what string, d ocispec.Descriptor) error {
		if err := d.Digest.Validate(); err != nil || (d.Digest.Algorithm() != digest.SHA256 && d.Digest.Algorithm() != digest.SHA512) {
			return fmt.Errorf("%s has an invalid digest %q", what, d.Digest)
		}
		if d.Size < 0 {
			return fmt.Errorf("%s %s has a negative size", what, d.Digest)
		}
		return nil
	}
	for _, d := range m.Blobs() {
		if err := check("layer", d); err != nil {
			return nil, err
		}
	}
	for _, d := range m.Manifests {
		if err := check("child manifest", d); err != nil {
			return nil, err
		}
	}
	if m.Subject != nil {
		if err := check("subject", *m.Subject); err != nil {
			return nil, err
		}
	}
	return m, nil
}
