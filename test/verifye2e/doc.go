// Package verifye2e proves issue 3 (signatures, attestations and conditions
// decided on pull) end to end: a real distribution/v3 upstream, images signed
// and attested by the real cosign v2 and v3 binaries (key-based, offline) and
// by sigstore-go's virtual Sigstore (keyless), the pullgate proxy opened from
// a generated pullgate.yaml and policy.yaml, real clients pulling through it
// (crane, go-containerregistry, cosign verify), and the `pullgate verify` CLI
// built once per run. All tests live in _test.go files.
package verifye2e
