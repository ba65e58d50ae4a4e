package proxy_test

// Legitimate evidence flows under the evidence-subject rules (from a fifth
// review): pullgate's own MBOM attestations of large models, signatures of
// attestations in referrers listings, buildx-style attestations in indexes.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
)

func startReferrers(t *testing.T, policy string) *env {
	t.Helper()
	up, err := upstream.Start(upstream.Options{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	e := &env{up: up, dir: t.TempDir(), policy: policy}
	e.open(t)
	return e
}

func referrerDigests(t *testing.T, url string) (int, []string, string) {
	t.Helper()
	resp, b := get(t, url)
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	_ = json.Unmarshal(b, &idx)
	var out []string
	for _, m := range idx.Manifests {
		out = append(out, m.Digest)
	}
	return resp.StatusCode, out, string(b)
}

// pullgate's own `attest create --type mbom` + `attest sign` + `attest push`
// for a model of many files: every file is a statement subject (its
// sha256, which is the layer digest when the model is an OCI artifact), plus
// the artifact digest.
func TestMBOMOfManyFilesServedAndListed(t *testing.T) {
	for _, files := range []int{3, 70} {
		e := startReferrers(t, modelPolicy)
		repo := "models/m"
		base := e.proxy.URL + "/v2/upstream.local/" + repo
		gd, _, _ := allowedAndDeniedModels(t, e, repo)
		r, err := attesttest.WriteRelease(t.TempDir(), attesttest.ReleaseOptions{Subject: gd.String(), ModelFiles: files})
		if err != nil {
			t.Fatal(err)
		}
		// the model's files are blobs of the repository
		for _, b := range r.Model {
			ivPushBlob(t, e.up.Host, repo, b, "application/octet-stream")
		}
		key, _, _ := attesttest.NewKey()
		bundle, err := attest.Sign(context.Background(), r.Statements[attest.KindMBOM], attest.SignOptions{Signer: key})
		if err != nil {
			t.Fatal(err)
		}
		pushed, err := attest.Push(context.Background(), e.up.Host+"/"+repo+"@"+gd.String(), [][]byte{bundle}, attest.PushOptions{Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := attest.ParseStatement(r.Statements[attest.KindMBOM])
		_ = st
		resp, body := get(t, base+"/manifests/"+pushed[0].Digest)
		code, listed, _ := referrerDigests(t, base+"/referrers/"+gd.String())
		t.Logf("model files %d: MBOM referrer manifest %d %.200s; referrers listing %d lists %d", files, resp.StatusCode, body, code, len(listed))
		if resp.StatusCode != 200 {
			t.Errorf("model files %d: pullgate's own MBOM attestation of allowed %s refused: %d %.300s", files, gd, resp.StatusCode, body)
		}
		if len(listed) != 1 {
			t.Errorf("model files %d: referrers of allowed %s list %v, want the MBOM referrer", files, gd, listed)
		}
	}
}

// A signature of an attestation (evidence about evidence, one level): served
// by digest, so the referrers listing of the attestation must list it.
func TestReferrersOfAttestationListItsSignature(t *testing.T) {
	e := startReferrers(t, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	h := e.up.Host
	gd, _, gb := allowedAndDeniedModels(t, e, repo)
	al := ivPushBlob(t, h, repo, statementEnvelope(gd), "application/vnd.dsse.envelope.v1+json")
	ad := pushEvidence(t, e, repo, "att", gd, gb, al)
	_, ab := get(t, base+"/manifests/"+ad.String())
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	sl := ivPushBlob(t, h, repo, simpleSigningPayload(ad), "application/vnd.dev.cosign.simplesigning.v1+json")
	sd := ivPushManifest(t, h, repo+":sig-of-att", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json", Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(sl)},
		Subject: &ivDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: ad.String(), Size: int64(len(ab))}})

	ra, _ := get(t, base+"/manifests/"+ad.String())
	rs, sb := get(t, base+"/manifests/"+sd.String())
	rl, _ := get(t, base+"/blobs/"+sl.Digest.String())
	code, listed, raw := referrerDigests(t, base+"/referrers/"+ad.String())
	t.Logf("attestation %d; its signature by digest %d %.200s, layer %d; referrers of the attestation: %d %s", ra.StatusCode, rs.StatusCode, sb, rl.StatusCode, code, raw)
	if rs.StatusCode != 200 {
		t.Fatalf("signature of allowed attestation refused by digest: %d %s", rs.StatusCode, sb)
	}
	found := false
	for _, d := range listed {
		found = found || d == sd.String()
	}
	if !found {
		t.Errorf("referrers of attestation %s omit its signature %s, which the proxy serves by digest (listing: %s)", ad, sd, raw)
	}
}

// Multi-arch: attestations on an index and on its children (referrers and by
// digest), and a buildx-style attestation manifest inside the index (no
// subject field; its statement names the sibling platform image).
func TestMultiArchEvidenceServed(t *testing.T) {
	e := startReferrers(t, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	h := e.up.Host
	cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
	l1 := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 1}`), "application/vnd.oci.image.layer.v1.tar")
	l2 := ivPushBlob(t, h, repo, []byte(`{"hidden_size": 2}`), "application/vnd.oci.image.layer.v1.tar")
	c1 := ivImage(t, h, repo+":c1", cfg, l1)
	c2 := ivImage(t, h, repo+":c2", cfg, l2)
	_, c1b := get(t, base+"/manifests/c1")
	_, c2b := get(t, base+"/manifests/c2")
	// buildx attestation manifest: in-toto layer, no subject field
	empty := ivPushBlob(t, h, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	bl := ivPushBlob(t, h, repo, statementAbout(c1.Encoded()), "application/vnd.in-toto+json")
	bx := ivPushManifest(t, h, repo+":bx", ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: ivDesc(empty), Layers: []ivDescriptor{ivDesc(bl)}})
	_, bxb := get(t, e.up.URL+"/v2/"+repo+"/manifests/bx")
	idx := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []map[string]any{
		{"mediaType": string(types.OCIManifestSchema1), "digest": c1.String(), "size": len(c1b), "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
		{"mediaType": string(types.OCIManifestSchema1), "digest": c2.String(), "size": len(c2b), "platform": map[string]string{"os": "linux", "architecture": "arm64"}},
		{"mediaType": string(types.OCIManifestSchema1), "digest": bx.String(), "size": len(bxb), "platform": map[string]string{"os": "unknown", "architecture": "unknown"},
			"annotations": map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": c1.String()}},
	}}
	ib, _ := json.Marshal(idx)
	id := digest.FromBytes(ib)
	pushRawIndex(t, h, repo+":multi", ib)
	if r, b := get(t, base+"/manifests/multi"); r.StatusCode != 200 {
		t.Fatalf("index: %d %s", r.StatusCode, b)
	}
	// attestations on the index and on child c2
	ai := pushEvidence(t, e, repo, "att-idx", id, ib, ivPushBlob(t, h, repo, statementEnvelope(id), "application/vnd.dsse.envelope.v1+json"))
	ac := pushEvidence(t, e, repo, "att-c2", c2, c2b, ivPushBlob(t, h, repo, statementEnvelope(c2), "application/vnd.dsse.envelope.v1+json"))
	for name, d := range map[string]digest.Digest{"buildx attestation child": bx, "attestation of index": ai, "attestation of child": ac} {
		r, b := get(t, base+"/manifests/"+d.String())
		t.Logf("%s %s: %d", name, d, r.StatusCode)
		if r.StatusCode != 200 {
			t.Errorf("%s %s refused: %d %.300s", name, d, r.StatusCode, b)
		}
	}
	for name, pair := range map[string][2]digest.Digest{"index": {id, ai}, "child": {c2, ac}} {
		code, listed, raw := referrerDigests(t, base+"/referrers/"+pair[0].String())
		if code != 200 || len(listed) != 1 || listed[0] != pair[1].String() {
			t.Errorf("referrers of %s: %d %s, want %s", name, code, raw, pair[1])
		}
	}
	if r, _ := get(t, base+"/blobs/"+bl.Digest.String()); r.StatusCode != 200 {
		t.Errorf("buildx attestation layer: %d", r.StatusCode)
	}
}

func pushRawIndex(t *testing.T, host, repoTag string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+host+"/v2/"+strings.Replace(repoTag, ":", "/manifests/", 1), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("push index: %d", resp.StatusCode)
	}
}

var _ = base64.StdEncoding
