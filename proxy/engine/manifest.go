package engine

import (
	"github.com/pullgate/pullgate/verify/ocimanifest"
)

// Manifest is a verified, parsed manifest or index: the one parsed type
// the decision, the release checks, the content checks and the evidence
// code share.
type Manifest = ocimanifest.Manifest

// parseManifest validates manifest bytes against the media type the
// upstream declared (ocimanifest.Parse).
func parseManifest(body []byte, declared string) (*Manifest, error) {
	return ocimanifest.Parse(body, declared)
}
