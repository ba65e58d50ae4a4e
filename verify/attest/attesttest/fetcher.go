package attesttest

import "github.com/pullgate/pullgate/verify/attest"

// Fetcher is attest.RegistryFetcher (the registry fetcher `pullgate vsa
// check` uses), kept under its test-helper name.
type Fetcher = attest.RegistryFetcher
