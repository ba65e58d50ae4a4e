package proxy_test

// Evidence from a third review: the content of an artifact denied here is
// never served as evidence, and the subjects an evidence artifact speaks
// about come from its signed payloads as well as its subject field and tag.

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

const ollamaTemplateType = "application/vnd.ollama.image.template"

// pushAttestation pushes an attestation (subject: subj) listing blob as an in-toto
// statement layer and has the proxy decide it by digest.
// benignModel pushes an allowed Ollama-style model (a system prompt) as
// repo:benign, pulls its manifest through the proxy, and returns its config,
// digest and manifest bytes: a subject for attestations.
func benignModel(t *testing.T, e *env, repo string) (cfg v1.Descriptor, d digest.Digest, body []byte) {
	t.Helper()
	cfg = ivPushBlob(t, e.up.Host, repo, []byte(`{"a":1}`), "application/vnd.oci.image.config.v1+json")
	system := ivPushBlob(t, e.up.Host, repo, []byte("You are helpful."), "application/vnd.ollama.image.system")
	d = ivImage(t, e.up.Host, repo+":benign", cfg, system)
	resp, body := get(t, e.proxy.URL+"/v2/upstream.local/"+repo+"/manifests/benign")
	if resp.StatusCode != 200 {
		t.Fatalf("benign model: %d %s", resp.StatusCode, body)
	}
	return cfg, d, body
}

func pushAttestation(t *testing.T, e *env, repo, tag string, subj digest.Digest, subjBody []byte, blobs ...v1.Descriptor) digest.Digest {
	t.Helper()
	h := e.up.Host
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	var ls []ivDescriptor
	for _, b := range blobs {
		d := ivDesc(b)
		d.MediaType = "application/vnd.in-toto+json"
		ls = append(ls, d)
	}
	ed := ivPushManifest(t, h, repo+":"+tag, ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.example.att+json", Config: ivDesc(empty), Layers: ls,
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: subj.String(), Size: int64(len(subjBody))}})
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, b := get(t, base+"/manifests/"+ed.String()); resp.StatusCode != 200 {
		t.Fatalf("attestation %s: %d %s", ed, resp.StatusCode, b)
	}
	return ed
}

// A model whose manifest the consumer legitimately received (allowed at the
// time) lists a pickle first and a chat template that reaches Python
// objects second. The pickle is refused, which denies the model; the
// template, which the rule refuses as a template, is then served anyway
// because an attestation of another (allowed) artifact lists the same
// bytes as an in-toto statement: the model is no longer "allowed", so the
// evidence grant wins and no content check runs.
func TestTemplateOfDeniedModelNotServedAsEvidence(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg, ad, ab := benignModel(t, e, repo)

	pk := ivPushBlob(t, h, repo, []byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."), "application/vnd.oci.image.layer.v1.tar")
	tmpl := ivPushBlob(t, h, repo, templateStatement, ollamaTemplateType)
	md := ivImage(t, h, repo+":1", cfg, pk, tmpl)
	pushAttestation(t, e, repo, "att", ad, ab, tmpl)

	// The consumer pulls the model: manifest, then layers in order.
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model manifest: %d %s", resp.StatusCode, b)
	}
	if resp, b := get(t, base+"/blobs/"+pk.Digest.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("control: pickle: %d %s", resp.StatusCode, b)
	}
	resp, b := get(t, base+"/blobs/"+tmpl.Digest.String())
	t.Logf("template after the pickle was refused: %d %.200s", resp.StatusCode, b)
	if resp.StatusCode == 200 && bytes.Equal(b, templateStatement) {
		t.Fatalf("chat template %s (declared %s in model %s, contains __class__/__mro__) served 200 via the attestation's evidence grant once the model was denied", tmpl.Digest, ollamaTemplateType, md)
	}
}

// Control for the above: the same sequence without the attestation refuses
// the template.
func TestTemplateOfDeniedModelRefused(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg := ivPushBlob(t, h, repo, []byte(`{"a":1}`), "application/vnd.oci.image.config.v1+json")
	pk := ivPushBlob(t, h, repo, []byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."), "application/vnd.oci.image.layer.v1.tar")
	tmpl := ivPushBlob(t, h, repo, templateStatement, ollamaTemplateType)
	ivImage(t, h, repo+":1", cfg, pk, tmpl)
	get(t, base+"/manifests/1")
	get(t, base+"/blobs/"+pk.Digest.String())
	if resp, b := get(t, base+"/blobs/"+tmpl.Digest.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("template without attestation: %d %s", resp.StatusCode, b)
	}
}

// The model is denied at the manifest level (a layer media type the rule
// does not allow): its template blob is still served through an
// attestation of an allowed artifact.
func TestTemplateOfManifestDeniedModelNotServedAsEvidence(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg, ad, ab := benignModel(t, e, repo)
	other := ivPushBlob(t, h, repo, []byte("x"), "application/x-not-allowed")
	tmpl := ivPushBlob(t, h, repo, templateStatement, ollamaTemplateType)
	md := ivImage(t, h, repo+":1", cfg, tmpl, other)
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("control: model manifest: %d %s", resp.StatusCode, b)
	}
	pushAttestation(t, e, repo, "att", ad, ab, tmpl)
	resp, b := get(t, base+"/blobs/"+tmpl.Digest.String())
	t.Logf("template: %d %.200s", resp.StatusCode, b)
	if resp.StatusCode == 200 && bytes.Equal(b, templateStatement) {
		t.Fatalf("chat template %s of denied model %s served 200 via evidence grant", tmpl.Digest, md)
	}
}

// The same through a policy reload: the consumer got the model's manifest
// under the old policy; the new policy denies the model (its media types),
// yet the template, listed by an attestation, is served under the new
// policy without its template check.
func TestTemplateNotServedAsEvidenceAfterPolicyChange(t *testing.T) {
	old := strings.Replace(templatePolicy, "mediaTypes: [ollama, oras]", "mediaTypes: [ollama, oras, \"application/x-extra\"]", 1)
	e := startWith(t, nil, old)
	h, repo := e.up.Host, "models/chat"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg, ad, ab := benignModel(t, e, repo)
	other := ivPushBlob(t, h, repo, []byte("x"), "application/x-extra")
	tmpl := ivPushBlob(t, h, repo, templateStatement, ollamaTemplateType)
	md := ivImage(t, h, repo+":1", cfg, tmpl, other)
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model manifest under old policy: %d %s", resp.StatusCode, b)
	}
	pushAttestation(t, e, repo, "att", ad, ab, tmpl)
	// reload (restart on the same store with the stricter policy)
	e.proxy.Close()
	e.srv.Close()
	e.policy = templatePolicy
	e.open(t)
	base = e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, _ := get(t, base+"/manifests/"+md.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("control: model under new policy: %d", resp.StatusCode)
	}
	resp, b := get(t, base+"/blobs/"+tmpl.Digest.String())
	t.Logf("template: %d %.200s", resp.StatusCode, b)
	if resp.StatusCode == 200 && bytes.Equal(b, templateStatement) {
		t.Fatalf("chat template %s of model %s (denied under the new policy) served 200 via evidence grant", tmpl.Digest, md)
	}
}

// An image configuration (the shape an evidence manifest's config must
// have) whose author field is a Jinja payload, listed as the config of an
// attestation and as a .jinja file in a denied model.
func TestTemplateAsEvidenceConfigRefused(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg, ad, ab := benignModel(t, e, repo)
	payload := []byte(`{"author":"{{ cycler.__init__.__globals__.os.popen('id').read() }}"}`)
	tmpl := ivPushBlob(t, h, repo, payload, ollamaTemplateType)
	other := ivPushBlob(t, h, repo, []byte("x"), "application/x-not-allowed")
	ivImage(t, h, repo+":1", cfg, tmpl, other)
	get(t, base+"/manifests/1")
	stmt := ivPushBlob(t, h, repo, []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"m","digest":{"sha256":"00"}}],"predicateType":"x","predicate":{}}`), "application/vnd.in-toto+json")
	c := ivDesc(tmpl)
	c.MediaType = "application/vnd.oci.image.config.v1+json"
	ed := ivPushManifest(t, h, repo+":att", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.example.att+json", Config: c, Layers: []ivDescriptor{ivDesc(stmt)},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: ad.String(), Size: int64(len(ab))}})
	if resp, b := get(t, base+"/manifests/"+ed.String()); resp.StatusCode != 200 && !strings.Contains(string(b), "names no subject") {
		t.Fatalf("attestation: %d %s", resp.StatusCode, b)
	}
	resp, b := get(t, base+"/blobs/"+tmpl.Digest.String())
	t.Logf("config-template: %d %.200s", resp.StatusCode, b)
	if resp.StatusCode == 200 && bytes.Equal(b, payload) {
		t.Fatalf("jinja payload %s served 200 as an attestation's config", tmpl.Digest)
	}
}

func simpleSigningPayload(d digest.Digest) []byte {
	return []byte(`{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"` + d.String() + `"},"type":"cosign container image signature"},"optional":null}`)
}

// Availability: a legitimate cosign signature of an allowed model is
// denied for good once anyone able to push a tag in the repository points
// sha256-<other>.sig at the same manifest and asks the proxy for it once;
// the record survives the tag being pointed away again and restarts.
func TestCosignTagCannotPoisonSignature(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", cfg, good)
	get(t, base+"/manifests/good")
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	sig := ivPushBlob(t, h, repo, simpleSigningPayload(gd), "application/vnd.dev.cosign.simplesigning.v1+json")
	m := ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(sig)}}
	gtag := "sha256-" + gd.Encoded() + ".sig"
	sd := ivPushManifest(t, h, repo+":"+gtag, m)
	if resp, b := get(t, base+"/manifests/"+gtag); resp.StatusCode != 200 {
		t.Fatalf("control: legitimate signature: %d %s", resp.StatusCode, b)
	}
	// Attacker: a tag naming a digest that does not exist, pointed at the
	// legitimate signature, asked for once, then pointed away.
	bogus := digest.FromString("nothing")
	btag := "sha256-" + bogus.Encoded() + ".sig"
	ivPushManifest(t, h, repo+":"+btag, m)
	r0, _ := get(t, base+"/manifests/"+btag)
	other := ivPushBlob(t, h, repo, []byte(`{"x":1}`), "application/vnd.oci.image.layer.v1.tar")
	ivImage(t, h, repo+":"+btag, cfg, other)
	t.Logf("attacker's tag: %d", r0.StatusCode)
	e.proxy.Close()
	e.srv.Close()
	e.open(t)
	base = e.proxy.URL + "/v2/upstream.local/" + repo
	r1, b1 := get(t, base+"/manifests/"+gtag)
	r2, _ := get(t, base+"/manifests/"+sd.String())
	r3, _ := get(t, base+"/blobs/"+sig.Digest.String())
	if r1.StatusCode != 200 || r2.StatusCode != 200 || r3.StatusCode != 200 {
		t.Fatalf("legitimate signature of allowed %s denied after a foreign tag pointed at it once (tag then re-pointed): by tag %d (%.300s), by digest %d, payload %d",
			gd, r1.StatusCode, b1, r2.StatusCode, r3.StatusCode)
	}
}

// Bypass: the tag-derived subject is ignored as soon as the manifest has a
// subject field. The signature of a denied model (its payload names the
// denied digest), wrapped in a manifest whose subject field names an
// allowed model and pushed under the denied model's .sig tag, is served by
// that tag.
func TestSubjectFieldCannotLaunderDeniedSignature(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	bad := ivPushBlob(t, h, repo, []byte(`{"auto_map": {"AutoModel": "evil.Model"}}`), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", cfg, good)
	bd := ivImage(t, h, repo+":bad", cfg, bad)
	_, gb := get(t, base+"/manifests/good")
	get(t, base+"/manifests/bad")
	get(t, base+"/blobs/"+bad.Digest.String())
	if resp, _ := get(t, base+"/manifests/"+bd.String()); resp.StatusCode != 403 {
		t.Fatalf("control: bad model not denied: %d", resp.StatusCode)
	}
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	payload := simpleSigningPayload(bd)
	sig := ivPushBlob(t, h, repo, payload, "application/vnd.dev.cosign.simplesigning.v1+json")
	dtag := "sha256-" + bd.Encoded() + ".sig"
	ivPushManifest(t, h, repo+":"+dtag, ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: ivDesc(empty),
		Layers:  []ivDescriptor{ivDesc(sig)},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: gd.String(), Size: int64(len(gb))}})
	r0, b0 := get(t, base+"/manifests/"+dtag)
	r1, b1 := get(t, base+"/blobs/"+sig.Digest.String())
	if r0.StatusCode == 200 || r1.StatusCode == 200 && bytes.Equal(b1, payload) {
		t.Fatalf("signature of denied model %s served by its own tag %s: manifest %d, payload %d (%s)", bd, dtag, r0.StatusCode, r1.StatusCode, b0[:0])
	}
}

// runFetch: the evidence fetch comes first and passes (the template is a
// valid in-toto statement); the model's consumer then asks for the blob:
// it is inspected as a template and refused, and the finding recorded.
func TestEvidenceFetchFirstThenModelInspected(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg, ad, ab := benignModel(t, e, repo)
	tmpl := ivPushBlob(t, h, repo, templateStatement, ollamaTemplateType)
	pushAttestation(t, e, repo, "att", ad, ab, tmpl)
	if resp, _ := get(t, base+"/blobs/"+tmpl.Digest.String()); resp.StatusCode != 200 {
		t.Fatalf("evidence fetch: %d", resp.StatusCode)
	}
	ivImage(t, h, repo+":1", cfg, tmpl)
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model: %d %s", resp.StatusCode, b)
	}
	if resp, b := get(t, base+"/blobs/"+tmpl.Digest.String()); resp.StatusCode != 403 {
		t.Fatalf("template after evidence fetch: %d %.200s", resp.StatusCode, b)
	}
	if resp, _ := get(t, base+"/manifests/1"); resp.StatusCode != 403 {
		t.Fatalf("model after finding: %d", resp.StatusCode)
	}
	e.proxy.Close()
	e.srv.Close()
	e.open(t)
	base = e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, b := get(t, base+"/blobs/"+tmpl.Digest.String()); resp.StatusCode != 403 {
		t.Fatalf("template after restart: %d %.200s", resp.StatusCode, b)
	}
}

// The model was pulled (allowed) and then deleted upstream; after a
// restart the template's grant must still come from the model.
func TestModelDeletedUpstreamStillJudgesItsContent(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg, ad, ab := benignModel(t, e, repo)
	tmpl := ivPushBlob(t, h, repo, templateStatement, ollamaTemplateType)
	md := ivImage(t, h, repo+":1", cfg, tmpl)
	pushAttestation(t, e, repo, "att", ad, ab, tmpl)
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest(http.MethodDelete, e.up.URL+"/v2/"+repo+"/manifests/"+md.String(), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("delete upstream: %v %v", err, resp)
	}
	e.proxy.Close()
	e.srv.Close()
	e.open(t)
	base = e.proxy.URL + "/v2/upstream.local/" + repo
	resp, b := get(t, base+"/blobs/"+tmpl.Digest.String())
	t.Logf("template: %d %.120s", resp.StatusCode, b)
	if resp.StatusCode == 200 {
		t.Fatalf("template served after the model was deleted upstream")
	}
}

// The model was never pulled through the proxy: the proxy knows the blob
// only as an in-toto statement and serves it as one (no link to judge it
// by). Documents the limit.
func TestEvidenceOfModelNeverPulled(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg, ad, ab := benignModel(t, e, repo)
	tmpl := ivPushBlob(t, h, repo, templateStatement, ollamaTemplateType)
	ivImage(t, h, repo+":1", cfg, tmpl)
	pushAttestation(t, e, repo, "att", ad, ab, tmpl)
	resp, b := get(t, base+"/blobs/"+tmpl.Digest.String())
	t.Logf("template (model never pulled): %d %.80s", resp.StatusCode, b)
	// then the model is pulled: the template must now be judged as one
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model: %d %s", resp.StatusCode, b)
	}
	if resp, b := get(t, base+"/blobs/"+tmpl.Digest.String()); resp.StatusCode != 403 {
		t.Fatalf("template after the model was pulled: %d %.200s", resp.StatusCode, b)
	}
}

// Same as TestCosignTagCannotPoisonSignature without a restart.
func TestCosignTagCannotPoisonSignatureNow(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", cfg, good)
	get(t, base+"/manifests/good")
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	sig := ivPushBlob(t, h, repo, simpleSigningPayload(gd), "application/vnd.dev.cosign.simplesigning.v1+json")
	m := ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(sig)}}
	gtag := "sha256-" + gd.Encoded() + ".sig"
	ivPushManifest(t, h, repo+":"+gtag, m)
	if resp, b := get(t, base+"/manifests/"+gtag); resp.StatusCode != 200 {
		t.Fatalf("control: legitimate signature: %d %s", resp.StatusCode, b)
	}
	btag := "sha256-" + digest.FromString("nothing").Encoded() + ".sig"
	ivPushManifest(t, h, repo+":"+btag, m)
	get(t, base+"/manifests/"+btag)
	if r1, b1 := get(t, base+"/manifests/"+gtag); r1.StatusCode != 200 {
		t.Fatalf("legitimate signature by its own tag, same process: %d %.200s", r1.StatusCode, b1)
	}
}
