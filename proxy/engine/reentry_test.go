package engine_test

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// A child of an allowed index pulled by the tag sha256-<its own hex>:
// deciding it looks for an allowed parent, whose decision (asked by the
// same tag) treats the index as fallback-tag evidence about the child and
// decides the child again, inside the child's own singleflight call.
func TestDecisionReentryDoesNotDeadlock(t *testing.T) {
	e := newEnv(t)
	w := seed(t, e)
	eng := e.open(t, "store")
	v, _ := admit(t, eng, subject(t, eng, "signed/multi", "1")) // persists the _parents links
	if !v.Allowed {
		t.Fatalf("index: %+v", v.Reasons)
	}
	c := w.index.Children[0]
	tag := "sha256-" + digest.Digest(c.Digest).Encoded()
	e.up.TagManifest(t, "signed/multi", tag, c.Manifest, c.MediaType)
	done := make(chan struct{})
	go func() {
		defer close(done)
		v, _ := admit(t, eng, subject(t, eng, "signed/multi", tag))
		t.Logf("child by fallback tag: allowed=%v %q", v.Allowed, v.Reasons)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("deadlock: the decision of %s by tag %s never returns", c.Digest, tag)
	}
}
