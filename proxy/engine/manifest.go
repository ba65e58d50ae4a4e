package engine

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify/content"
)

// Manifest media types pullgate serves.
const (
	MediaTypeOCIManifest    = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex       = ocispec.MediaTypeImageIndex
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func isIndexType(mt string) bool { return mt == MediaTypeOCIIndex || mt == MediaTypeDockerList }
func isManifestType(mt string) bool {
	return mt == MediaTypeOCIManifest || mt == MediaTypeDockerManifest
}

// Manifest is what pullgate needs from a manifest or index.
type Manifest struct {
	MediaType    string
	ArtifactType string
	Config       *ocispec.Descriptor
	Layers       []ocispec.Descriptor
	Manifests    []ocispec.Descriptor // index children
	Subject      *ocispec.Descriptor
	Annotations  map[string]string

	classesOnce sync.Once
	classes     map[digest.Digest][]content.Class
}

// IsIndex reports a multi-platform index.
func (m *Manifest) IsIndex() bool { return isIndexType(m.MediaType) }

// Blobs is every blob the manifest references (config first).
func (m *Manifest) Blobs() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	return append(out, m.Layers...)
}

// blobClasses returns, by blob digest, every class (media type, file name)
// the manifest's descriptors declare the blob as: a blob listed twice, or
// by a descriptor whose names disagree, has several. Computed once per
// parsed manifest (parsed manifests are cached and never modified).
func (m *Manifest) blobClasses() map[digest.Digest][]content.Class {
	m.classesOnce.Do(func() {
		out := make(map[digest.Digest][]content.Class, len(m.Layers)+1)
		for _, d := range m.Blobs() {
			out[d.Digest] = content.MergeClasses(out[d.Digest], content.DeclarationOf(d).Classes())
		}
		m.classes = out
	})
	return m.classes
}

// parseManifest validates manifest bytes against the media type the upstream
// declared. It refuses anything whose declared and embedded media types
// disagree, and descriptors with invalid digests or sizes.
func parseManifest(body []byte, declared string) (*Manifest, error) {
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
	case mt != "" && declared != "" && isKnownManifestType(declared) && mt != declared:
		return nil, fmt.Errorf("media type Mismatch: upstream declared %s but the manifest says %s", declared, mt)
	case mt == "" && isKnownManifestType(declared):
		mt = declared
	case mt == "":
		// OCI allows omitting mediaType: infer from structure.
		if raw.Manifests != nil && raw.Config == nil {
			mt = MediaTypeOCIIndex
		} else {
			mt = MediaTypeOCIManifest
		}
	}
	if !isKnownManifestType(mt) {
		return nil, fmt.Errorf("unsupported manifest media type %q", mt)
	}
	m := &Manifest{MediaType: mt, ArtifactType: raw.ArtifactType, Subject: raw.Subject, Annotations: raw.Annotations}
	if isIndexType(mt) {
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

func isKnownManifestType(mt string) bool { return isIndexType(mt) || isManifestType(mt) }
