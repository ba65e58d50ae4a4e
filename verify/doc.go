// Package verify turns untrusted bytes (signatures, attestations, bundles and
// model files) into evidence that policy can decide on. It never does HTTP
// routing and never reads configuration files: trust material is handed to it
// already loaded, and artifacts are read through the Fetcher interface.
package verify
