package modele2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/verify/attest"
)

const omsPolicy = `trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: signed-models
    match: ["upstream.local/models/**"]
    require:
      attestations:
        - predicateType: https://model_signing/signature/v1.0
          signedBy: [release]
`

// omsStatement is what OpenSSF model_signing produces for files: per-file
// sha256 resources sorted by name, subject = the root digest over them.
func omsStatement(files map[string][]byte) []byte {
	var names []string
	for n := range files {
		names = append(names, n)
	}
	// one file per model here; several would be sorted by name
	h := sha256.New()
	var res []any
	for _, n := range names {
		s := sha256.Sum256(files[n])
		h.Write(s[:])
		res = append(res, map[string]any{"name": n, "digest": hex.EncodeToString(s[:]), "algorithm": "sha256"})
	}
	b, _ := json.Marshal(map[string]any{
		"_type":         attest.StatementTypeV1,
		"subject":       []any{map[string]any{"name": "model", "digest": map[string]string{"sha256": hex.EncodeToString(h.Sum(nil))}}},
		"predicateType": attest.OpenSSFModelSigningType,
		"predicate": map[string]any{"resources": res,
			"serialization": map[string]any{"method": "files", "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": []string{".git"}}},
	})
	return b
}

// attachBundle pushes a Sigstore bundle as a referrer of subject (cosign v3's
// layout), by hand: attest.Push rightly refuses statements that do not name
// the artifact digest, and OpenSSF statements name the model's files.
func attachBundle(t *testing.T, host, repo, subject string, subjectSize int64, bundle []byte) {
	t.Helper()
	repoRef, _ := name.NewRepository(host+"/"+repo, name.Insecure)
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	lay := static.NewLayer(bundle, attest.BundleMediaType)
	if err := remote.WriteLayer(repoRef, cfg); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repoRef, lay); err != nil {
		t.Fatal(err)
	}
	ld, _ := lay.Digest()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  attest.BundleMediaType,
		"config":        map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
		"layers":        []any{map[string]any{"mediaType": attest.BundleMediaType, "digest": ld.String(), "size": len(bundle)}},
		"subject":       map[string]any{"mediaType": types.OCIManifestSchema1, "digest": subject, "size": subjectSize},
		"annotations":   map[string]string{"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": attest.OpenSSFModelSigningType},
	}
	body, _ := json.Marshal(m)
	sum := sha256.Sum256(body)
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/sha256:%s", host, repo, hex.EncodeToString(sum[:])), bytes.NewReader(body))
	req.Header.Set("Content-Type", string(types.OCIManifestSchema1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("pushing the referrer: HTTP %d", resp.StatusCode)
	}
}

// OpenSSF model signing is evidence for model artifacts: its per-file digests
// must equal the layer digests being served.
func TestOpenSSFModelSigningThroughProxy(t *testing.T) {
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	os.WriteFile(filepath.Join(dir, "release.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: omsPolicy, Dir: dir})
	e := &env{up: up, px: px}

	weights := goodSafetensors()
	sign := func(k *ecdsa.PrivateKey, files map[string][]byte) []byte {
		b, err := attest.Sign(context.Background(), omsStatement(files), attest.SignOptions{Signer: k})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		repo    string
		signed  map[string][]byte // what the signature covers
		signer  *ecdsa.PrivateKey
		allowed bool
		reason  string
	}{
		{"models/oms-good", map[string][]byte{"model.safetensors": weights}, key, true, ""},
		{"models/oms-swapped", map[string][]byte{"model.safetensors": append([]byte(nil), goodSafetensors()[:len(weights)-1]...)}, key, false, "model.safetensors"},
		{"models/oms-attacker", map[string][]byte{"model.safetensors": weights}, attacker, false, "signed by release: none found"},
		{"models/oms-unsigned", nil, nil, false, "signed by release: none found"},
	}
	for _, c := range cases {
		t.Run(c.repo, func(t *testing.T) {
			e.push(t, c.repo+":1", true, file{"model.safetensors", mtWeightRaw, weights})
			ref, _ := name.ParseReference(up.Host+"/"+c.repo+":1", name.Insecure)
			desc, err := remote.Get(ref)
			if err != nil {
				t.Fatal(err)
			}
			if c.signer != nil {
				attachBundle(t, up.Host, c.repo, desc.Digest.String(), desc.Size, sign(c.signer, c.signed))
			}
			r := harness.OrasManifestFetch(t, px.Host+"/upstream.local/"+c.repo+":1", false)
			switch {
			case c.allowed && r.Err != nil:
				t.Fatalf("want allowed: %v\n%s", r.Err, r.Output())
			case !c.allowed && r.Err == nil:
				t.Fatalf("want denied (%s), got the manifest", c.reason)
			case !c.allowed && !strings.Contains(r.Output(), c.reason):
				t.Fatalf("denial lacks %q:\n%s", c.reason, r.Output())
			}
			if c.allowed {
				r, d := harness.OrasPull(t, px.Host+"/upstream.local/"+c.repo+":1")
				got, _ := os.ReadFile(filepath.Join(d, "model.safetensors"))
				if r.Err != nil || !bytes.Equal(got, weights) {
					t.Fatalf("pull: %v", r.Err)
				}
			}
		})
	}
}
