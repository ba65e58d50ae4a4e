package proxy_test

// Evidence grants from a second review: an artifact's content is judged as
// content wherever an attestation also lists it, a blob that fails the
// evidence check is refused only as evidence, and re-pointing cosign tags
// cannot launder a denied subject's signature.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullgate/pullgate/cache/store"
)

// An Ollama chat template that reaches Python objects, which is at the same
// time a well-formed in-toto statement (the template engine renders the
// JSON around the {{ }} as literal text).
var templateStatement = []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"m","digest":{"sha256":"62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a"}}],"predicateType":"https://example.com/p","predicate":{"t":"{{ ''.__class__.__mro__[1].__subclasses__() }}"}}`)

// A model's chat template that the content rules refuse is served
// uninspected to the model's consumers once any attestation in the same
// repository lists the same blob: after a restart (or on another replica,
// or after any content finding purged the in-memory grants) the blob's
// grant comes from the first allowed manifest the store links it to, and an
// evidence grant skips the rule's content inspection.
func TestContentGrantPreferredOverEvidenceAfterRestart(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	const tmplType = "application/vnd.ollama.image.template"
	cfg := ivPushBlob(t, h, repo, []byte(`{"a":1}`), "application/vnd.oci.image.config.v1+json")
	tmpl := ivPushBlob(t, h, repo, templateStatement, tmplType)
	md := ivImage(t, h, repo+":1", cfg, tmpl)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	resp, mb := get(t, base+"/manifests/1")
	if resp.StatusCode != 200 {
		t.Fatalf("model manifest: %d %s", resp.StatusCode, mb)
	}
	// Attestations of the model itself (its subject is the model), listing
	// the template blob as an in-toto statement. Several, so that one of
	// them is listed before the model among the blob's links.
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	att := ivDesc(tmpl)
	att.MediaType = "application/vnd.in-toto+json"
	subj := ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: md.String(), Size: int64(len(mb))}
	for i := 0; i < 8; i++ {
		ed := ivPushManifest(t, h, fmt.Sprintf("%s:att%d", repo, i), ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
			ArtifactType: fmt.Sprintf("application/vnd.example.att.v%d+json", i), Config: ivDesc(empty), Layers: []ivDescriptor{att}, Subject: &subj})
		if resp, b := get(t, base+"/manifests/"+ed.String()); resp.StatusCode != 200 {
			t.Fatalf("attestation %d: %d %s", i, resp.StatusCode, b)
		}
	}
	names, _ := e.srv.Store().ListMeta(context.Background(), store.MetaKey("links", "upstream.local", repo, "_blobs", tmpl.Digest.Hex))
	t.Logf("manifests linked to the template: %d, first %s (model %s)", len(names), names[0], md.Encoded())

	// Control: in the process that served the model's manifest, the
	// template is inspected as one and refused.
	// (not requested here: a finding would be recorded and deny it everywhere)

	// Restart (or another replica on the same store): the consumer of the
	// model, which already has the manifest, asks for the template.
	e.proxy.Close()
	e.srv.Close()
	e.open(t)
	base = e.proxy.URL + "/v2/upstream.local/" + repo
	resp, b := get(t, base+"/blobs/"+tmpl.Digest.String())
	if resp.StatusCode == 200 && bytes.Equal(b, templateStatement) {
		t.Fatalf("chat template %s (declared %s in model %s, containing __class__) was served (200) without the template check", tmpl.Digest, tmplType, md)
	}
	t.Logf("template: %d %s", resp.StatusCode, b)
}

// Control for the above: the same template blob, with no attestation
// listing it, is refused by content inspection after a restart.
func TestTemplateRefusedAfterRestart(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	const tmplType = "application/vnd.ollama.image.template"
	cfg := ivPushBlob(t, h, repo, []byte(`{"a":1}`), "application/vnd.oci.image.config.v1+json")
	tmpl := ivPushBlob(t, h, repo, templateStatement, tmplType)
	ivImage(t, h, repo+":1", cfg, tmpl)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, mb := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model manifest: %d %s", resp.StatusCode, mb)
	}
	e.proxy.Close()
	e.srv.Close()
	e.open(t)
	base = e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, b := get(t, base+"/blobs/"+tmpl.Digest.String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("template without evidence: %d %s, want 403", resp.StatusCode, b)
	}
}

// Same as above in one process, without a restart: any content finding
// (here: a pickle an attacker pushed to another repository and pulled)
// purges every in-memory grant, so the consumer's blob request after its
// manifest request is granted through the store's links, the attestation
// first.
func TestContentGrantPreferredOverEvidenceAfterPurge(t *testing.T) {
	e := startWith(t, nil, templatePolicy)
	h, repo := e.up.Host, "models/chat"
	const tmplType = "application/vnd.ollama.image.template"
	cfg := ivPushBlob(t, h, repo, []byte(`{"a":1}`), "application/vnd.oci.image.config.v1+json")
	tmpl := ivPushBlob(t, h, repo, templateStatement, tmplType)
	md := ivImage(t, h, repo+":1", cfg, tmpl)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	_, mb := get(t, base+"/manifests/1")
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	att := ivDesc(tmpl)
	att.MediaType = "application/vnd.in-toto+json"
	subj := ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: md.String(), Size: int64(len(mb))}
	for i := 0; i < 8; i++ {
		ed := ivPushManifest(t, h, fmt.Sprintf("%s:att%d", repo, i), ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
			ArtifactType: fmt.Sprintf("application/vnd.example.att.v%d+json", i), Config: ivDesc(empty), Layers: []ivDescriptor{att}, Subject: &subj})
		get(t, base+"/manifests/"+ed.String())
	}
	// The consumer pulls the model's manifest: the template is granted as
	// a template layer.
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("model manifest: %d %s", resp.StatusCode, b)
	}
	// Meanwhile: a content finding anywhere.
	ocfg := ivPushBlob(t, h, "models/other", []byte(`{"a":9}`), "application/vnd.oci.image.config.v1+json")
	pk := ivPushBlob(t, h, "models/other", []byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."), "application/vnd.oci.image.layer.v1.tar")
	ivImage(t, h, "models/other:1", ocfg, pk)
	get(t, e.proxy.URL+"/v2/upstream.local/models/other/manifests/1")
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/models/other/blobs/"+pk.Digest.String()); resp.StatusCode != 403 {
		t.Fatalf("control: pickle not refused: %d", resp.StatusCode)
	}
	resp, b := get(t, base+"/blobs/"+tmpl.Digest.String())
	if resp.StatusCode == 200 && bytes.Equal(b, templateStatement) {
		t.Fatalf("chat template %s (declared %s in model %s, containing __class__) was served (200) without the template check", tmpl.Digest, tmplType, md)
	}
	t.Logf("template: %d %s", resp.StatusCode, b)
}

// The signature of a denied model (a subject-less cosign artifact whose
// payload names the denied digest) is refused by its own .sig tag and by
// digest, but once the upstream's tag of an allowed model's signature
// points at the same manifest and is asked for once, the persisted
// evidence-subjects record is overwritten and the denied model's signature
// is served by digest (and its blob).
func TestCosignTagRepointDoesNotLaunderDeniedSignature(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	bad := ivPushBlob(t, h, repo, []byte(`{"auto_map": {"AutoModel": "evil.Model"}}`), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", cfg, good)
	bd := ivImage(t, h, repo+":bad", cfg, bad)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	get(t, base+"/manifests/good")
	get(t, base+"/manifests/bad")
	get(t, base+"/blobs/"+bad.Digest.String())
	if resp, _ := get(t, base+"/manifests/"+bd.String()); resp.StatusCode != 403 {
		t.Fatalf("control: bad model not denied: %d", resp.StatusCode)
	}
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	payload := []byte(`{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"` + bd.String() + `"},"type":"cosign container image signature"},"optional":null}`)
	sig := ivPushBlob(t, h, repo, payload, "application/vnd.dev.cosign.simplesigning.v1+json")
	dtag := "sha256-" + bd.Encoded() + ".sig"
	m := ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(sig)}}
	ed := ivPushManifest(t, h, repo+":"+dtag, m)
	if resp, _ := get(t, base+"/manifests/"+dtag); resp.StatusCode != 403 {
		t.Fatalf("control: denied model's signature by tag: %d", resp.StatusCode)
	}
	if resp, _ := get(t, base+"/manifests/"+ed.String()); resp.StatusCode != 403 {
		t.Fatalf("control: denied model's signature by digest: %d", resp.StatusCode)
	}
	// The allowed model's .sig tag is pointed at the same manifest.
	gtag := "sha256-" + gd.Encoded() + ".sig"
	ivPushManifest(t, h, repo+":"+gtag, m)
	r0, _ := get(t, base+"/manifests/"+gtag)
	r1, _ := get(t, base+"/manifests/"+ed.String())
	r2, b2 := get(t, base+"/blobs/"+sig.Digest.String())
	t.Logf("via the allowed model's tag: %d; by digest: %d; payload blob: %d", r0.StatusCode, r1.StatusCode, r2.StatusCode)
	if r1.StatusCode == 200 || r2.StatusCode == 200 && bytes.Equal(b2, payload) {
		t.Fatalf("signature of denied model %s (payload names it) served by digest %d, its payload %d, after %s was pointed at it", bd, r1.StatusCode, r2.StatusCode, gtag)
	}
}

const rfTwoRules = `rules:
  - name: open
    match: ["upstream.local/app/**"]
    action: allow
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      formats: { pickle: deny }
      denyCodeLayers: true
`

// A blob stored by a fetch under a rule without content checks, then listed
// as a DSSE envelope of an attestation of an allowed model: the stored copy
// is checked as evidence (GET, HEAD, Range), as is a cold one.
func TestEvidenceCheckOnStoredAndColdBlobs(t *testing.T) {
	e := startWith(t, nil, rfTwoRules)
	h := e.up.Host
	evil := []byte(`{"auto_map": {"AutoModel": "evil.Model"}}`)
	evil2 := []byte(`{"auto_map": {"AutoModel": "evil2.Model"}}`)
	acfg := ivPushBlob(t, h, "app/x", []byte(`{"a":0}`), "application/vnd.oci.image.config.v1+json")
	ax := ivPushBlob(t, h, "app/x", evil, "application/vnd.oci.image.layer.v1.tar")
	ivImage(t, h, "app/x:1", acfg, ax)
	get(t, e.proxy.URL+"/v2/upstream.local/app/x/manifests/1")
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/x/blobs/"+ax.Digest.String()); resp.StatusCode != 200 {
		t.Fatalf("app/x layer: %d", resp.StatusCode)
	}
	repo := "models/m"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	gd := ivImage(t, h, repo+":good", cfg, good)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	_, gb := get(t, base+"/manifests/good")
	m1 := ivPushBlob(t, h, repo, evil, "application/vnd.dsse.envelope.v1+json")
	m2 := ivPushBlob(t, h, repo, evil2, "application/vnd.dsse.envelope.v1+json")
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	ed := ivPushManifest(t, h, repo+":att", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.in-toto+json", Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(m1), ivDesc(m2)},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: gd.String(), Size: int64(len(gb))}})
	if resp, b := get(t, base+"/manifests/"+ed.String()); resp.StatusCode != 200 && !strings.Contains(string(b), "names no subject") {
		t.Fatalf("attestation: %d %s", resp.StatusCode, b)
	}
	for _, d := range []string{m1.Digest.String(), m2.Digest.String()} { // stored, cold
		for _, hdr := range []map[string]string{{"Range": "bytes=0-5"}, {"If-None-Match": `"x"`}, nil} {
			st, _, b, _ := ivDo(t, "GET", base+"/blobs/"+d, hdr)
			if st == 200 || st == 206 {
				t.Errorf("GET %v %s: %d %s", hdr, d, st, b)
			}
		}
		if st, _, _, _ := ivDo(t, "HEAD", base+"/blobs/"+d, nil); st == 200 {
			t.Logf("HEAD %s: %d (headers only)", d, st)
		}
	}
}

// A good model's layer, listed by an attacker's attestation as a DSSE
// envelope and fetched once through that attestation, fails the evidence
// shape check; that failure is recorded as a content finding of the blob
// under the repository's rule, and the good model is denied from then on.
func TestEvidenceShapeFailureDoesNotDenyTheModel(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h, repo := e.up.Host, "models/m"
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	other := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 9}`), "application/vnd.oci.image.layer.v1.tar")
	od := ivImage(t, h, repo+":other", cfg, other) // any allowed subject
	gd := ivImage(t, h, repo+":good", cfg, good)
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	_, ob := get(t, base+"/manifests/other")
	// The attacker's attestation (subject: an allowed model) lists the good
	// model's layer as a DSSE envelope.
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	l := ivDesc(good)
	l.MediaType = "application/vnd.dsse.envelope.v1+json"
	ed := ivPushManifest(t, h, repo+":att", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.in-toto+json", Config: ivDesc(empty), Layers: []ivDescriptor{l},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: od.String(), Size: int64(len(ob))}})
	if resp, b := get(t, base+"/manifests/"+ed.String()); resp.StatusCode != 200 && !strings.Contains(string(b), "names no subject") {
		t.Fatalf("attestation: %d %s", resp.StatusCode, b)
	}
	resp, b := get(t, base+"/blobs/"+good.Digest.String())
	t.Logf("good layer through the attestation: %d %s", resp.StatusCode, b)
	// A consumer pulls the good model.
	resp, b = get(t, base+"/manifests/good")
	if resp.StatusCode != 200 {
		t.Fatalf("good model %s denied after its layer was fetched as a DSSE envelope of someone else's attestation: %d %s", gd, resp.StatusCode, b)
	}
	if resp, b := get(t, base+"/blobs/"+good.Digest.String()); resp.StatusCode != 200 {
		t.Fatalf("good model's layer: %d %s", resp.StatusCode, b)
	}
}

// The same from another repository under the same rule: the attacker
// re-uploads the victim's (public) layer bytes in their own repository and
// lists them in an attestation of their own model; the finding is recorded
// per rule and blob, not per repository, so the victim's model is denied in
// its own repository.
func TestEvidenceShapeFailureDoesNotDenyOtherRepositories(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	h := e.up.Host
	vcfg := ivPushBlob(t, h, "models/victim", []byte(`{"architecture":"victim"}`), "application/vnd.oci.image.config.v1+json")
	vl := ivPushBlob(t, h, "models/victim", []byte(`{"hidden_size": 64}`), "application/vnd.oci.image.layer.v1.tar")
	vd := ivImage(t, h, "models/victim:1", vcfg, vl)

	// Attacker's repository: an own model, and an attestation of it whose
	// "DSSE envelope" is the victim's layer bytes.
	acfg := ivPushBlob(t, h, "models/evil", []byte(`{"architecture":"evil"}`), "application/vnd.oci.image.config.v1+json")
	al := ivPushBlob(t, h, "models/evil", []byte(`{"hidden_size": 1}`), "application/vnd.oci.image.layer.v1.tar")
	ad := ivImage(t, h, "models/evil:1", acfg, al)
	ab := e.proxy.URL + "/v2/upstream.local/models/evil"
	_, amb := get(t, ab+"/manifests/1")
	copyOf := ivPushBlob(t, h, "models/evil", []byte(`{"hidden_size": 64}`), "application/vnd.dsse.envelope.v1+json")
	empty := ivPushBlob(t, h, "models/evil", []byte(`{}`), "application/vnd.oci.empty.v1+json")
	ed := ivPushManifest(t, h, "models/evil:att", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.in-toto+json", Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(copyOf)},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: ad.String(), Size: int64(len(amb))}})
	get(t, ab+"/manifests/"+ed.String())
	get(t, ab+"/blobs/"+copyOf.Digest.String())

	vb := e.proxy.URL + "/v2/upstream.local/models/victim"
	if resp, b := get(t, vb+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("victim model %s in models/victim denied after models/evil fetched its layer's bytes as a DSSE envelope: %d %s", vd, resp.StatusCode, b)
	}
}
