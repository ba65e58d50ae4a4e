// Package load is pullgate's load generator (issue 12): it seeds
// distribution's registry binary with 50 images and ModelPack models
// (open, signed by a release key, unsigned where signatures are required,
// in a denied repository, models with and without a code layer), runs the
// real bin/pullgate in front of it with client auth off and then on
// (htpasswd users and pullgate's token endpoint), and drives it with many
// concurrent registry clients (plain net/http, one transport each) issuing
// a mix of manifests by tag, by digest and HEAD, blobs cold, warm and with
// Range, referrers and tag lists. Every response is checked against what
// the corpus says the request must get: allowed bodies by digest, ranges
// byte for byte, denials as 403 DENIED naming the deciding rule. It
// samples pullgate's RSS, file descriptors (by peer) and goroutines before,
// during and after the run, and requires pullgate to return to idle.
//
// A run is bounded in time and in count, talks to loopback only, and ends
// by itself. It runs as the test TestLoad: the short run of `make test`
// (50 clients, 5 s per phase) by default, `make bench` (500 clients) and
// `make soak` (30 minutes at a steady rate) with -load.* flags.
package load
