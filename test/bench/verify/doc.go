// Package verifybench holds the issue 3 benchmarks: a decision with a warm
// verdict cache (proxy.Server.Decide and the HTTP handler), a cold decision
// over evidence already fetched (verify.Collect + policy evaluation over an
// in-memory verify.Fetcher), and, in cli_vs_cosign.sh, whole-process
// `pullgate verify` against `cosign verify` + `cosign verify-attestation`.
package verifybench
