package verifye2e

import "github.com/pullgate/pullgate/test/sigstoretest"

// Keyless evidence comes from the shared virtual-Sigstore helpers (Fulcio,
// Rekor and TSA from sigstore-go's pkg/testing/ca, written as the
// operator's trusted_root.json).
type bundleParts = sigstoretest.BundleParts

var (
	newVirtualSigstore = sigstoretest.NewVirtualSigstore
	trustedRootJSON    = sigstoretest.TrustedRootJSON
	completeTLE        = sigstoretest.CompleteTLE
	entityBundle       = sigstoretest.EntityBundle
	later              = sigstoretest.Later
)
