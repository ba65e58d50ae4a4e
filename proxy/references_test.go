package proxy_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/pullgate/pullgate/test/modelcorpus"
)

const referencesPolicy = `rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      formats: { pickle: deny }
      references: {require: allowlist, allow: ["meta-llama/*"]}
`

// A cold fetch of X (an adapter_config.json naming a base model outside
// the allowlist) started under a tag declaring X as a chat template (its
// bytes are then read as a template, not as a config) is in flight when a
// tag declaring X as adapter_config.json is allowed. The fetch is judged
// as that declaration too before the blob is released: the config's
// load-time reference is refused, and the config tag is denied from then
// on.
func TestColdFetchJudgesReferencesOfDeclarationAllowedMeanwhile(t *testing.T) {
	const repo = "models/closure-race"
	const weightConfig = "application/vnd.cncf.model.weight.config.v1.raw"
	cfg := modelcorpus.PEFTAdapterConfig("attacker/Meta-Llama-3-8B")
	held := newHeldBlob()
	e := startWith(t, held.wrap, referencesPolicy)
	b := ivPushBlob(t, e.up.Host, repo, cfg, docRaw)
	declModel(t, e, repo+":tmpl", named(b, docRaw, titleKey, "chat_template.jinja"))
	declModel(t, e, repo+":adapter", named(b, weightConfig, titleKey, "adapter_config.json"))

	e.want(t, repo+"/manifests/tmpl", 200, "")
	st, body := held.fetch(t, e, repo, digest.Digest(b.Digest.String()), func() {
		e.want(t, repo+"/manifests/adapter", 200, "")
	})
	if st == 200 && bytes.Equal(body, cfg) {
		t.Fatal("adapter_config.json naming attacker/Meta-Llama-3-8B served after the tag declaring it a config was allowed")
	}
	if !strings.Contains(string(body), "attacker/Meta-Llama-3-8B") {
		t.Errorf("refusal does not name the reference: %d %s", st, body)
	}
	e.want(t, repo+"/manifests/adapter", 403, "attacker/Meta-Llama-3-8B")
}
