// Package scenarios is the evaluation blueprint of issue 5 run for real: each
// LLM supply-chain scenario (compromised dependency image, malicious hub
// artifact, unsafe deserialization, forged provenance, backdoored adapter,
// tampered system prompt, eval regression, stale eval, tampered tokenizer,
// tag moved after release, and good releases that must pass) is built on an
// in-process distribution/v3 upstream, signed with keys generated in the test
// (verify/attest Sign, cosign v3 where interop matters), attached as OCI
// referrers with verify/attest Push, and pulled through a running pullgate
// proxy with real clients (oras, go-containerregistry). The `pullgate verify`
// CLI is built once per run and its exit codes are asserted too.
//
// TestScenarios prints the scenario table (and writes docs/scenarios.md when
// PULLGATE_WRITE_SCENARIOS=1), TestTamper is the tamper suite, TestInterop
// covers cosign v3 ⇄ pullgate through the proxy. All tests live in _test.go
// files.
package scenarios
