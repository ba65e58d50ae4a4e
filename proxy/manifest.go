package proxy

import (
	"github.com/pullgate/pullgate/verify/ocimanifest"
)

// Manifest media types pullgate serves.
const (
	mtOCIManifest    = ocimanifest.MediaTypeOCIManifest
	mtOCIIndex       = ocimanifest.MediaTypeOCIIndex
	mtDockerManifest = ocimanifest.MediaTypeDockerManifest
	mtDockerList     = ocimanifest.MediaTypeDockerList
)

// parsedManifest is what pullgate needs from a manifest or index.
type parsedManifest = ocimanifest.Manifest

// parseManifest validates manifest bytes against the media type the upstream
// declared (ocimanifest.Parse).
func parseManifest(body []byte, declared string) (*parsedManifest, error) {
	return ocimanifest.Parse(body, declared)
}
