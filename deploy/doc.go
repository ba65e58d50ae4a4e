// Package deploy holds pullgate's deployment material: Kubernetes manifests
// (a kustomize base and overlays under kubernetes/) and node configuration
// for containerd, CRI-O and Docker (under nodes/). It has no Go code; its
// tests check that the manifests parse strictly into the Kubernetes API
// types, that the configuration and policy they embed load with pullgate's
// own loaders, and that the node configurations point at pullgate without a
// fallback around it. docs/deploy.md is the guide.
package deploy
