package proxy_test

// Ordinary use under the evidence rules (from a sixth review): the empty
// descriptor every OCI 1.1 artifact shares stays servable, warm evidence
// blobs cost about what a layer does, listings and multi-arch pulls make no
// needless upstream requests.

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

func envelopeN(subject digest.Digest, i int) []byte {
	st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x%d","digest":{"sha256":"%s"}}],"predicateType":"https://example.com/p","predicate":{}}`, i, subject.Encoded())
	return []byte(fmt.Sprintf(`{"payloadType":"application/vnd.in-toto+json","payload":"%s","signatures":[{"keyid":"","sig":"c2ln"}]}`, base64.StdEncoding.EncodeToString([]byte(st))))
}

// Warm GETs of an evidence layer / the shared empty config vs a model layer.
func TestWarmEvidenceBlobCost(t *testing.T) {
	for _, n := range []int{1, 20, 80} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { warmEvidence(t, n) })
	}
}

func warmEvidence(t *testing.T, n int) {
	e := startWith(t, nil, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, _, gb := allowedAndDeniedModels(t, e, repo)
	goodLayer := digest.FromBytes([]byte(`{"hidden_size": 8}`))
	if r, _ := get(t, base+"/blobs/"+goodLayer.String()); r.StatusCode != 200 {
		t.Fatalf("good layer %d", r.StatusCode)
	}
	var layer digest.Digest
	for i := 0; i < n; i++ {
		l := ivPushBlob(t, e.up.Host, repo, envelopeN(gd, i), "application/vnd.dsse.envelope.v1+json")
		ed := pushEvidence(t, e, repo, fmt.Sprintf("att%d", i), gd, gb, l)
		if r, b := get(t, base+"/manifests/"+ed.String()); r.StatusCode != 200 {
			t.Fatalf("evidence %d: %d %s", i, r.StatusCode, b)
		}
		if r, b := get(t, base+"/blobs/"+l.Digest.String()); r.StatusCode != 200 {
			t.Fatalf("evidence layer %d: %d %s", i, r.StatusCode, b)
		}
		layer = digest.Digest(l.Digest.String())
	}
	emptyCfg := digest.FromBytes([]byte(`{}`))
	if r, b := get(t, base+"/blobs/"+emptyCfg.String()); r.StatusCode != 200 {
		t.Fatalf("empty config: %d %s", r.StatusCode, b)
	}
	loop := func(name string, d digest.Digest) time.Duration {
		e.up.ResetCounts()
		start := time.Now()
		for i := 0; i < 200; i++ {
			if r, _ := get(t, base+"/blobs/"+d.String()); r.StatusCode != 200 {
				t.Fatalf("%s: %d", name, r.StatusCode)
			}
		}
		el := time.Since(start)
		t.Logf("%s: 200 warm GETs in %v (%v/GET), upstream requests %d", name, el, el/200, e.up.Total())
		if n := e.up.Total(); n != 0 {
			t.Errorf("%s: %d upstream requests on 200 warm GETs, want 0", name, n)
		}
		return el
	}
	tg := loop("model layer", goodLayer)
	te := loop("evidence layer", layer)
	tc := loop(fmt.Sprintf("empty config shared by %d attestations", n), emptyCfg)
	if te > 5*tg || tc > 5*tg {
		t.Errorf("warm evidence GETs cost %.1fx / %.1fx a model layer's", float64(te)/float64(tg), float64(tc)/float64(tg))
	}
}

// A referrers listing of N attestations, twice.
func TestReferrersListingCost(t *testing.T) {
	e := startReferrers(t, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, _, gb := allowedAndDeniedModels(t, e, repo)
	const n = 20
	for i := 0; i < n; i++ {
		l := ivPushBlob(t, e.up.Host, repo, envelopeN(gd, i), "application/vnd.dsse.envelope.v1+json")
		pushEvidence(t, e, repo, fmt.Sprintf("att%d", i), gd, gb, l)
	}
	var counts []int64
	for k := 0; k < 3; k++ {
		e.up.ResetCounts()
		code, listed, raw := referrerDigests(t, base+"/referrers/"+gd.String())
		if code != 200 || len(listed) != n {
			t.Fatalf("listing %d: %d, %d listed %.300s", k, code, len(listed), raw)
		}
		counts = append(counts, e.up.Total())
		t.Logf("listing %d of %d referrers: %d upstream requests (manifest GETs %d, blob GETs %d)", k, n, e.up.Total(),
			e.up.Count("GET", "/manifests/"), e.up.Count("GET", "/blobs/"))
	}
	if counts[1] > 2 {
		t.Errorf("second listing of %d referrers: %d upstream requests, want <= 2", n, counts[1])
	}
}

// A denied ORAS-style model with the empty config shares {} with the
// signatures of an allowed model: the signature's config must still be served.
func TestEmptyConfigOfDeniedModelStillServedAsEvidence(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	repo := "models/m"
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	gd, _, gb := allowedAndDeniedModels(t, e, repo)
	empty := ivPushBlob(t, e.up.Host, repo, []byte(`{}`), "application/vnd.oci.empty.v1+json")
	bad := ivPushBlob(t, e.up.Host, repo, []byte(`{"auto_map": {"AutoModel": "evil.Model"}}`), "application/vnd.oci.image.layer.v1.tar")
	bd2 := ivImage(t, e.up.Host, repo+":bad2", empty, bad)
	if r, _ := get(t, base+"/manifests/bad2"); r.StatusCode != 403 {
		t.Fatalf("control: bad2 %d", r.StatusCode)
	}
	_ = bd2
	l := ivPushBlob(t, e.up.Host, repo, statementEnvelope(gd), "application/vnd.dsse.envelope.v1+json")
	ed := pushEvidence(t, e, repo, "att", gd, gb, l)
	r, b := get(t, base+"/manifests/"+ed.String())
	if r.StatusCode != 200 {
		t.Fatalf("attestation of allowed model: %d %s", r.StatusCode, b)
	}
	rl, _ := get(t, base+"/blobs/"+l.Digest.String())
	rc, cb := get(t, base+"/blobs/"+empty.Digest.String())
	t.Logf("attestation manifest 200, layer %d, config {} %d %.300s", rl.StatusCode, rc.StatusCode, cb)
	if rc.StatusCode != 200 || rl.StatusCode != 200 {
		t.Errorf("attestation of allowed model %s: layer %d, config %d (want 200, 200)", gd, rl.StatusCode, rc.StatusCode)
	}
}

// Ordinary images: multi-arch, warm pulls cause only tag resolutions.
func TestMultiArchWarmPullUpstreamRequests(t *testing.T) {
	e := start(t, nil)
	idx, err := random.Index(2048, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(e.up.Host+"/app/multi:1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	pref, _ := name.ParseReference(e.host+"/upstream.local/app/multi:1", name.Insecure)
	pull := func() {
		pi, err := remote.Index(pref)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := pi.IndexManifest()
		for _, d := range im.Manifests {
			img, err := pi.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			ls, _ := img.Layers()
			for _, l := range ls {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 1<<20)
				for {
					if _, err := rc.Read(b); err != nil {
						break
					}
				}
				rc.Close()
			}
			if _, err := img.RawConfigFile(); err != nil {
				t.Fatal(err)
			}
		}
	}
	pull()
	e.up.ResetCounts()
	pull()
	t.Logf("warm multi-arch pull: %d upstream requests (manifests HEAD %d)", e.up.Total(), e.up.Count("HEAD", "/manifests/"))
	if e.up.Total() > 1 {
		t.Errorf("warm multi-arch pull: %d upstream requests, want <= 1 (tag)", e.up.Total())
	}
	_ = types.OCIManifestSchema1
}
