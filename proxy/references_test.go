package proxy_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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
	var mu sync.Mutex
	target := ""
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			tg := target
			mu.Unlock()
			if r.Method == http.MethodGet && tg != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+tg) {
				once.Do(func() { close(arrived) })
				<-release
			}
			next.ServeHTTP(w, r)
		})
	}
	e := startWith(t, wrap, referencesPolicy)
	b := ivPushBlob(t, e.up.Host, repo, cfg, docRaw)
	declModel(t, e, repo+":tmpl", named(b, docRaw, titleKey, "chat_template.jinja"))
	declModel(t, e, repo+":adapter", named(b, weightConfig, titleKey, "adapter_config.json"))
	mu.Lock()
	target = b.Digest.String()
	mu.Unlock()
	blob := repo + "/blobs/" + b.Digest.String()

	e.want(t, repo+"/manifests/tmpl", 200, "")
	type result struct {
		st   int
		body []byte
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(e.proxy.URL + "/v2/upstream.local/" + blob)
		if err != nil {
			done <- result{}
			return
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		done <- result{resp.StatusCode, buf.Bytes()}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the blob fetch never reached the upstream")
	}
	e.want(t, repo+"/manifests/adapter", 200, "")
	close(release)
	r := <-done
	if r.st == 200 && bytes.Equal(r.body, cfg) {
		t.Fatal("adapter_config.json naming attacker/Meta-Llama-3-8B served after the tag declaring it a config was allowed")
	}
	if !strings.Contains(string(r.body), "attacker/Meta-Llama-3-8B") {
		t.Errorf("refusal does not name the reference: %d %s", r.st, r.body)
	}
	e.want(t, repo+"/manifests/adapter", 403, "attacker/Meta-Llama-3-8B")
}
