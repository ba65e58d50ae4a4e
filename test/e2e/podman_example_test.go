package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/tools"
)

// exampleAddr is pullgate's address in the shipped node examples.
const exampleAddr = "10.96.100.50:5000"

// crioExampleDir is deploy/nodes/crio (PULLGATE_CRIO_EXAMPLE_DIR overrides).
func crioExampleDir() string {
	if d := os.Getenv("PULLGATE_CRIO_EXAMPLE_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "nodes", "crio")
}

// The shipped CRI-O/podman example, with pullgate's address replaced by the
// test's, on a podman node that also loads the host's distribution alias
// file (/etc/containers/registries.conf.d): upstreams named docker.io and
// ghcr.io are local registries behind pullgate.
func TestPodmanShippedCrioExample(t *testing.T) {
	tools.Need(t, "podman")
	dir := crioExampleDir()
	conf, err := os.ReadFile(filepath.Join(dir, "registries.conf"))
	if err != nil {
		t.Fatalf("the shipped example: %v", err)
	}
	if !strings.Contains(string(conf), exampleAddr) {
		t.Fatalf("%s/registries.conf does not use pullgate's example address %s", dir, exampleAddr)
	}
	hub := harness.StartUpstream(t, harness.UpstreamOptions{Name: "docker.io"})
	ghcr := harness.StartUpstream(t, harness.UpstreamOptions{Name: "ghcr.io"})
	alpine := hub.PushImage(t, "library/alpine", "v1", harness.ImageOptions{})
	hub.PushImage(t, "blocked/app", "v1", harness.ImageOptions{})
	onGHCR := ghcr.PushImage(t, "acme/app", "v1", harness.ImageOptions{})
	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{hub, ghcr}})

	node := func(t *testing.T, pullgate string) *podman {
		pm := newPodman(t)
		write(t, pm.regConf, strings.ReplaceAll(string(conf), exampleAddr, pullgate))
		dropins, _ := filepath.Glob(filepath.Join(dir, "registries.conf.d", "*.conf"))
		user := filepath.Join(pm.dir, "home", ".config", "containers", "registries.conf.d")
		if err := os.MkdirAll(user, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, d := range dropins {
			write(t, filepath.Join(user, filepath.Base(d)), string(mustRead(t, d)))
		}
		return pm
	}
	allowed := []struct{ ref, digest string }{
		{"docker.io/library/alpine:v1", alpine.Digest},
		{"alpine:v1", alpine.Digest}, // short name: an alias of the distribution's file
		{"ghcr.io/acme/app:v1", onGHCR.Digest},
		{"ghcr.io/acme/app@" + onGHCR.Digest, onGHCR.Digest},
	}
	for _, a := range allowed {
		t.Run("allowed "+a.ref, func(t *testing.T) {
			pm := node(t, px.Host)
			if res := pm.pull(t, a.ref); res.Err != nil {
				t.Fatalf("podman pull %s: %v", a.ref, res)
			}
			if got := pm.digest(t, a.ref); got != a.digest {
				t.Fatalf("podman stored %s for %s, upstream has %s", got, a.ref, a.digest)
			}
		})
	}
	t.Run("denied once", func(t *testing.T) {
		pm := node(t, px.Host)
		before := len(decisions(t, px, hub.Name, "blocked/app"))
		res := pm.pull(t, "docker.io/blocked/app:v1")
		if res.Err == nil || !strings.Contains(res.Stderr, "denied: pullgate denied docker.io/blocked/app@v1: rule "+gate.DenyRule) {
			t.Fatalf("denied pull: %v", res)
		}
		if n := len(decisions(t, px, hub.Name, "blocked/app")) - before; n != 1 {
			t.Fatalf("%d audit decisions for one denied pull, want 1", n)
		}
	})
	// Registries pullgate does not front are routed to it and refused there,
	// the distribution's alias for centos (quay.io) included.
	for _, ref := range []string{"quay.io/acme/app:v1", "registry.k8s.io/pause:3.9", "centos:v1"} {
		t.Run("not fronted "+ref, func(t *testing.T) {
			pm := node(t, px.Host)
			res := pm.pull(t, ref)
			if res.Err == nil {
				t.Fatalf("podman pulled %s: %v", ref, res)
			}
			if !strings.Contains(res.Stderr, px.Host+"/") {
				t.Fatalf("%s did not go to pullgate: %q", ref, res.Stderr)
			}
		})
	}
	// Registries nobody lists, under a blocked top-level domain: refused
	// by registries.conf itself, before any request (without the wildcard
	// entries podman would try to reach them; no DNS here, so the error
	// would be a lookup failure instead).
	for _, ref := range []string{"registry.unlisted.io/acme/app:v1", "harbor.corp.com/team/app:v1"} {
		t.Run("blocked "+ref, func(t *testing.T) {
			pm := node(t, px.Host)
			res := pm.pull(t, ref)
			if res.Err == nil {
				t.Fatalf("podman pulled %s: %v", ref, res)
			}
			if !strings.Contains(res.Stderr, "is blocked in") {
				t.Fatalf("%s was not blocked by registries.conf: %q", ref, res.Stderr)
			}
		})
	}
	t.Run("pullgate down", func(t *testing.T) {
		down := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{hub, ghcr}})
		addr := down.Host
		down.Close()
		hub.Reg.ResetCounts()
		pm := node(t, addr)
		if res := pm.pull(t, "docker.io/library/alpine:v1"); res.Err == nil {
			t.Fatalf("pulled with pullgate down: %v", res)
		}
		if n := hub.Reg.Total(); n != 0 {
			t.Fatalf("upstream got %d requests with pullgate down", n)
		}
	})
}
