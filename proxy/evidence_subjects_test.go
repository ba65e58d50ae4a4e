package proxy_test

// Evidence subjects from a fourth review: payloads are read as the verifier
// reads them (bundles with sigstore-go, statement digests in any case), a
// layer that names nothing refuses the artifact, the work one artifact can
// cause is bounded, and referrers listings offer only what is served.

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/dsse"
	"github.com/pullgate/pullgate/verify/intoto"
)

// allowedAndDeniedModels: an allowed model (good) and a denied one (bad: content finding).
func allowedAndDeniedModels(t *testing.T, e *env, repo string) (gd, bd digest.Digest, gb []byte) {
	t.Helper()
	h := e.up.Host
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	good := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 8}`), "application/vnd.oci.image.layer.v1.tar")
	bad := ivPushBlob(t, h, repo, []byte(`{"auto_map": {"AutoModel": "evil.Model"}}`), "application/vnd.oci.image.layer.v1.tar")
	gd = ivImage(t, h, repo+":good", cfg, good)
	bd = ivImage(t, h, repo+":bad", cfg, bad)
	_, gb = get(t, base+"/manifests/good")
	get(t, base+"/manifests/bad")
	get(t, base+"/blobs/"+bad.Digest.String())
	if resp, _ := get(t, base+"/manifests/"+bd.String()); resp.StatusCode != 403 {
		t.Fatalf("control: bad model not denied: %d", resp.StatusCode)
	}
	return gd, bd, gb
}

// pushEvidence pushes an evidence manifest (subject field: subj) with one layer.
func pushEvidence(t *testing.T, e *env, repo, tag string, subj digest.Digest, subjBody []byte, layer v1.Descriptor) digest.Digest {
	t.Helper()
	h := e.up.Host
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	return ivPushManifest(t, h, repo+":"+tag, ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.dev.sigstore.bundle.v0.3+json", Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(layer)},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: subj.String(), Size: int64(len(subjBody))}})
}

func statementAbout(subjects ...string) []byte {
	var parts []string
	for _, s := range subjects {
		parts = append(parts, `{"name":"x","digest":{"sha256":"`+s+`"}}`)
	}
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[` + strings.Join(parts, ",") + `],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`)
}

// A Sigstore bundle with a message signature over the denied model's digest
// (what pullgate's own collector accepts as a signature of that model:
// collect.go bundle(), "bundle signs sha256:...") in a manifest whose
// subject field names the allowed model.
func TestBundleMessageSignatureOfDeniedSubjectRefused(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, bd, gb := allowedAndDeniedModels(t, e, repo)
	raw, _ := hex.DecodeString(bd.Encoded())
	bundle := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"k"},"tlogEntries":[]},"messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"` +
		base64.StdEncoding.EncodeToString(raw) + `"},"signature":"c2ln"}}`)
	// pullgate's own verifier reads this bundle as signing the denied model
	if b, err := verify.ParseBundle(bundle); err != nil {
		t.Logf("ParseBundle: %v", err)
	} else if sc, err := b.SignatureContent(); err == nil && sc.MessageSignatureContent() != nil {
		t.Logf("pullgate's verifier: bundle message digest sha256:%x (denied model %s)", sc.MessageSignatureContent().Digest(), bd)
	}
	l := ivPushBlob(t, e.up.Host, repo, bundle, "application/vnd.dev.sigstore.bundle.v0.3+json")
	ed := pushEvidence(t, e, repo, "sig", gd, gb, l)
	r0, b0 := get(t, base+"/manifests/"+ed.String())
	r1, b1 := get(t, base+"/blobs/"+l.Digest.String())
	if r0.StatusCode == 200 || r1.StatusCode == 200 && bytes.Equal(b1, bundle) {
		t.Fatalf("message-signature bundle over denied %s served: manifest %d, bundle blob %d (%.100s)", bd, r0.StatusCode, r1.StatusCode, b0)
	}
}

// A bundle whose envelope key is spelled the protobuf way (dsse_envelope):
// protojson (sigstore-go, verify.ParseBundle) reads it, the encoding/json
// struct in signedDigests does not.
func TestBundleProtoFieldNamesOfDeniedSubjectRefused(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, bd, gb := allowedAndDeniedModels(t, e, repo)
	stmt := statementAbout(bd.Encoded())
	bundle := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"k"},"tlogEntries":[]},"dsse_envelope":{"payload":"` +
		base64.StdEncoding.EncodeToString(stmt) + `","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"c2ln","keyid":""}]}}`)
	if b, err := verify.ParseBundle(bundle); err != nil {
		t.Logf("ParseBundle: %v", err)
	} else if sc, err := b.SignatureContent(); err == nil && sc.EnvelopeContent() != nil {
		envJSON, _ := json.Marshal(sc.EnvelopeContent().RawEnvelope())
		env, err := dsse.Parse(envJSON)
		if err == nil {
			st, err := intoto.Parse(env.Payload)
			t.Logf("pullgate's verifier (collect.go bundle path): payloadType %q, statement names denied model: %v (%v)", env.PayloadType, err == nil && st.HasSubjectDigest("sha256", bd.Encoded()), err)
		}
	}
	l := ivPushBlob(t, e.up.Host, repo, bundle, "application/vnd.dev.sigstore.bundle.v0.3+json")
	ed := pushEvidence(t, e, repo, "att", gd, gb, l)
	r0, b0 := get(t, base+"/manifests/"+ed.String())
	r1, b1 := get(t, base+"/blobs/"+l.Digest.String())
	t.Logf("manifest %d, blob %d %.200s", r0.StatusCode, r1.StatusCode, b1)
	if r0.StatusCode == 200 || r1.StatusCode == 200 && bytes.Equal(b1, bundle) {
		t.Fatalf("bundle whose statement names denied %s served: manifest %d, bundle blob %d (%.100s)", bd, r0.StatusCode, r1.StatusCode, b0)
	}
}

// An in-toto statement naming the denied model in upper-case hex
// (intoto.HasSubjectDigest, used by pullgate's verifier, compares hex
// case-insensitively).
func TestUppercaseStatementSubjectOfDeniedSubjectRefused(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, bd, gb := allowedAndDeniedModels(t, e, repo)
	stmt := statementAbout(strings.ToUpper(bd.Encoded()))
	st, _ := intoto.Parse(stmt)
	t.Logf("verifier's HasSubjectDigest(denied model): %v", st.HasSubjectDigest("sha256", bd.Encoded()))
	envl := []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString(stmt) + `","signatures":[{"keyid":"","sig":"c2ln"}]}`)
	l := ivPushBlob(t, e.up.Host, repo, envl, "application/vnd.dsse.envelope.v1+json")
	ed := pushEvidence(t, e, repo, "att", gd, gb, l)
	r0, b0 := get(t, base+"/manifests/"+ed.String())
	r1, b1 := get(t, base+"/blobs/"+l.Digest.String())
	if r0.StatusCode == 200 || r1.StatusCode == 200 && bytes.Equal(b1, envl) {
		t.Fatalf("attestation naming denied %s (upper-case hex) served: manifest %d, envelope blob %d (%.100s)", bd, r0.StatusCode, r1.StatusCode, b0)
	}
}

// The evidence layer cannot be read when the manifest is decided (the
// upstream answers 404 for it for a moment): its subjects come from the
// subject field alone, the manifest is served, and its blob grant outlives
// the re-decision that would deny it.
func TestUnreadableEvidenceLayerFailsClosed(t *testing.T) {
	var hide atomic.Value
	hide.Store("")
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d := hide.Load().(string); d != "" && strings.Contains(r.URL.Path, "/blobs/"+d) {
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := startWith(t, wrap, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, bd, gb := allowedAndDeniedModels(t, e, repo)
	payload := simpleSigningPayload(bd)
	l := ivPushBlob(t, e.up.Host, repo, payload, "application/vnd.dev.cosign.simplesigning.v1+json")
	ed := pushEvidence(t, e, repo, "sig", gd, gb, l)
	hide.Store(l.Digest.String())
	r0, b0 := get(t, base+"/manifests/"+ed.String())
	hide.Store("")
	r1, b1 := get(t, base+"/blobs/"+l.Digest.String())
	r2, _ := get(t, base+"/manifests/"+ed.String())
	t.Logf("manifest while its layer was unreadable: %d %.200s; layer afterwards: %d; manifest afterwards: %d", r0.StatusCode, b0, r1.StatusCode, r2.StatusCode)
	if r0.StatusCode == 200 || r1.StatusCode == 200 && bytes.Equal(b1, payload) {
		t.Fatalf("signature of denied %s served: manifest %d (layer unreadable at decision), payload %d", bd, r0.StatusCode, r1.StatusCode)
	}
}

// Amplification: one request for an evidence manifest whose statement
// names many digests makes one upstream manifest request per digest, every
// time (NotFound answers are not remembered).
func TestManyEvidenceSubjectsBounded(t *testing.T) {
	var manifestGets atomic.Int64
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				manifestGets.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	e := startWith(t, wrap, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, _, gb := allowedAndDeniedModels(t, e, repo)
	var subs []string
	for i := 0; i < 4000; i++ {
		subs = append(subs, digest.FromString(string(rune(i))+"x").Encoded())
	}
	stmt := statementAbout(subs...)
	envl := []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString(stmt) + `","signatures":[{"keyid":"","sig":"c2ln"}]}`)
	l := ivPushBlob(t, e.up.Host, repo, envl, "application/vnd.dsse.envelope.v1+json")
	ed := pushEvidence(t, e, repo, "att", gd, gb, l)
	for i := 0; i < 2; i++ {
		before := manifestGets.Load()
		resp, _ := get(t, base+"/manifests/"+ed.String())
		n := manifestGets.Load() - before
		t.Logf("request %d: %d, upstream manifest requests: %d", i, resp.StatusCode, n)
		if n > 100 {
			t.Errorf("one client request for evidence manifest %s caused %d upstream manifest requests", ed, n)
		}
	}
}

// Fan-out: evidence naming evidence naming evidence ... (depth limit 4),
// K subjects per level, nothing cached for evidence verdicts: one request
// makes K^3 evidence decisions.
func TestEvidenceFanOutBounded(t *testing.T) {
	var manifestGets atomic.Int64
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				manifestGets.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	e := startWith(t, wrap, modelPolicy)
	repo := "models/m"
	h := e.up.Host
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, _, gb := allowedAndDeniedModels(t, e, repo)
	const K = 120 // 8.5 s warm per request here; 60: 1 s, 25: 77 ms (cubic)
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	level := func(name string, names []digest.Digest) []digest.Digest {
		var layer v1.Descriptor
		if names == nil {
			layer = ivPushBlob(t, h, repo, simpleSigningPayload(gd), "application/vnd.dev.cosign.simplesigning.v1+json")
		} else {
			var hx []string
			for _, d := range names {
				hx = append(hx, d.Encoded())
			}
			stmt := statementAbout(hx...)
			envl := []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString(stmt) + `","signatures":[{"keyid":"","sig":"c2ln"}]}`)
			layer = ivPushBlob(t, h, repo, envl, "application/vnd.dsse.envelope.v1+json")
		}
		var out []digest.Digest
		for i := 0; i < K; i++ {
			out = append(out, ivPushManifest(t, h, repo+":"+name+string(rune('a'+i/26))+string(rune('a'+i%26)), ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
				ArtifactType: "application/vnd.example." + name + string(rune('a'+i/26)) + string(rune('a'+i%26)), Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(layer)},
				Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: gd.String(), Size: int64(len(gb))}}))
		}
		return out
	}
	hs := level("h", nil)
	gs := level("g", hs)
	fs := level("f", gs)
	top := level("s", fs)[0]
	for i := 0; i < 2; i++ {
		before := manifestGets.Load()
		start := time.Now()
		resp, _ := get(t, base+"/manifests/"+top.String())
		el := time.Since(start)
		t.Logf("request %d: %d in %v, upstream manifest requests %d", i, resp.StatusCode, el, manifestGets.Load()-before)
		if el > 2*time.Second {
			t.Errorf("one request for evidence manifest %s took %v (K=%d subjects per level, %d decisions)", top, el, K, K*K*K)
		}
	}
}

// The referrers listing of an allowed model lists an evidence manifest the
// proxy then refuses (its payload names a denied model): a client that
// fetches every referrer it is given (cosign) fails on the listing's own
// entry.
func TestReferrersListOnlyServable(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, bd, gb := allowedAndDeniedModels(t, e, repo)
	good := statementAbout(gd.Encoded())
	genv := []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString(good) + `","signatures":[{"keyid":"","sig":"c2ln"}]}`)
	gl := ivPushBlob(t, e.up.Host, repo, genv, "application/vnd.dsse.envelope.v1+json")
	pushEvidence(t, e, repo, "att-good", gd, gb, gl)
	l := ivPushBlob(t, e.up.Host, repo, simpleSigningPayload(bd), "application/vnd.dev.cosign.simplesigning.v1+json")
	pushEvidence(t, e, repo, "att-bad", gd, gb, l)
	resp, b := get(t, base+"/referrers/"+gd.String())
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &idx) != nil {
		t.Fatalf("referrers: %d %s", resp.StatusCode, b)
	}
	for _, m := range idx.Manifests {
		r, rb := get(t, base+"/manifests/"+m.Digest)
		t.Logf("listed referrer %s: %d", m.Digest, r.StatusCode)
		if r.StatusCode != 200 {
			t.Errorf("referrers of allowed %s list %s, which the proxy refuses: %d %.200s", gd, m.Digest, r.StatusCode, rb)
		}
	}
}

// Controls: attacks the proxy refuses.
func TestEvidenceOfDeniedSubjectRefusedControls(t *testing.T) {
	var hide atomic.Value
	hide.Store("")
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d := hide.Load().(string); d != "" && strings.Contains(r.URL.Path, "/blobs/"+d) {
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := startWith(t, wrap, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, bd, gb := allowedAndDeniedModels(t, e, repo)
	check := func(name string, body []byte, mt string, hideAfter bool) {
		l := ivPushBlob(t, e.up.Host, repo, body, mt)
		ed := pushEvidence(t, e, repo, name, gd, gb, l)
		r0, _ := get(t, base+"/manifests/"+ed.String())
		if hideAfter {
			hide.Store(l.Digest.String())
			r0, _ = get(t, base+"/manifests/"+ed.String())
			hide.Store("")
		}
		r1, _ := get(t, base+"/blobs/"+l.Digest.String())
		t.Logf("%s: manifest %d, blob %d", name, r0.StatusCode, r1.StatusCode)
		if r0.StatusCode == 200 || r1.StatusCode == 200 {
			t.Errorf("%s served", name)
		}
	}
	var subs []string
	for i := 0; i < 500; i++ {
		subs = append(subs, digest.FromString(string(rune(i))+"y").Encoded())
	}
	subs = append(subs, bd.Encoded())
	st := statementAbout(subs...)
	check("bd-last-of-many", []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"`+base64.StdEncoding.EncodeToString(st)+`","signatures":[{"keyid":"","sig":"c2ln"}]}`), "application/vnd.dsse.envelope.v1+json", false)
	check("raw-statement", statementAbout(bd.Encoded()), "application/vnd.in-toto+json", false)
	check("dsse-in-intoto-type", []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"`+base64.RawURLEncoding.EncodeToString(statementAbout(bd.Encoded()))+`","signatures":[{"keyid":"","sig":"c2ln"}]}`), "application/vnd.in-toto+json", false)
	check("cached-then-unreadable", simpleSigningPayload(bd), "application/vnd.dev.cosign.simplesigning.v1+json", true)
	bundle := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"k"},"tlogEntries":[]},"dsseEnvelope":{"payload":"` +
		base64.StdEncoding.EncodeToString(statementAbout(gd.Encoded(), bd.Encoded())) + `","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"c2ln","keyid":""}]}}`)
	check("bundle-dsse-two-subjects", bundle, "application/vnd.dev.sigstore.bundle+json;version=0.3", false)
}
