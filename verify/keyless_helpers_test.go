package verify_test

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/test/sigstoretest"
)

// Keyless evidence comes from the shared virtual-Sigstore helpers.
const (
	ghIssuer  = sigstoretest.GHIssuer
	ghSubject = sigstoretest.GHSubject
)

type bundleParts = sigstoretest.BundleParts

var (
	newVirtualSigstore       = sigstoretest.NewVirtualSigstore
	trustedRootJSON          = sigstoretest.TrustedRootJSON
	completeTLE              = sigstoretest.CompleteTLE
	entityBundle             = sigstoretest.EntityBundle
	legacyKeylessAnnotations = sigstoretest.LegacyKeylessAnnotations
	rfc3161Annotation        = sigstoretest.RFC3161Annotation
	later                    = sigstoretest.Later
)

type (
	ocispecDescriptor = ocispec.Descriptor
	upstreamRegistry  = *upstream.Registry
)
