package main

import (
	"encoding/json"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func toOCIManifest(raw []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	err := json.Unmarshal(raw, &m)
	return m, err
}
