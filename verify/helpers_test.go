package verify_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy/config"
	upstreamclient "github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/dsse"
)

func startUpstream(t testing.TB, referrers bool) *upstream.Registry {
	t.Helper()
	reg, err := upstream.Start(upstream.Options{Referrers: referrers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

// pushImage pushes a random single-layer image and returns its descriptor.
func pushImage(t testing.TB, reg *upstream.Registry, repo, tag string) ocispec.Descriptor {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	return ocispec.Descriptor{MediaType: string(mt), Digest: digest.FromBytes(raw), Size: int64(len(raw))}
}

// newFetcher reads repo on reg through pullgate's upstream client, with the
// default limits.maxManifestSize and upstream timeout.
func newFetcher(t testing.TB, reg *upstream.Registry, repo string) verify.Fetcher {
	t.Helper()
	c, err := upstreamclient.New(config.Upstream{Name: "test", URL: reg.URL, Timeout: config.Duration(30 * time.Second)}, func(p string) string { return p })
	if err != nil {
		t.Fatal(err)
	}
	return c.Fetcher(repo, 4<<20)
}

// pushBlob uploads a blob with the monolithic POST+PUT flow.
func pushBlob(t testing.TB, reg *upstream.Registry, repo string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	resp, err := http.Post(reg.URL+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("blob upload start: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = reg.URL + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+d.String(), bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("blob upload: %s %s", resp.Status, b)
	}
	return d
}

// putManifest stores manifest bytes under ref (tag or digest).
func putManifest(t testing.TB, reg *upstream.Registry, repo, ref, mediaType string, body []byte) digest.Digest {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, reg.URL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest put %s: %s %s", ref, resp.Status, b)
	}
	return digest.FromBytes(body)
}

var emptyConfig = []byte("{}")

type layerSpec struct {
	mediaType   string
	blob        []byte
	annotations map[string]string
}

// pushArtifact writes an OCI manifest with the given layers and returns its
// bytes and digest. ref "" stores it by digest.
func pushArtifact(t testing.TB, reg *upstream.Registry, repo, ref, artifactType string, subject *ocispec.Descriptor, annotations map[string]string, layers ...layerSpec) ([]byte, digest.Digest) {
	t.Helper()
	cfgMT := "application/vnd.oci.image.config.v1+json"
	if artifactType != "" {
		cfgMT = "application/vnd.oci.empty.v1+json"
	}
	cfg := ocispec.Descriptor{MediaType: cfgMT, Digest: pushBlob(t, reg, repo, emptyConfig), Size: int64(len(emptyConfig))}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Config: cfg, Subject: subject, Annotations: annotations}
	m.SchemaVersion = 2
	for _, l := range layers {
		d := pushBlob(t, reg, repo, l.blob)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.mediaType, Digest: d, Size: int64(len(l.blob)), Annotations: l.annotations})
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(body)
	if ref == "" {
		ref = d.String()
	}
	putManifest(t, reg, repo, ref, ocispec.MediaTypeImageManifest, body)
	return body, d
}

// pushLegacy writes cosign's sha256-<hex>.<suffix> manifest.
func pushLegacy(t testing.TB, reg *upstream.Registry, repo string, subject digest.Digest, suffix string, layers ...layerSpec) {
	t.Helper()
	pushArtifact(t, reg, repo, cosign.TagFor(subject, suffix), "", nil, nil, layers...)
}

// pushBundle attaches a sigstore bundle as an OCI referrer the way cosign v3
// does; with fallback it also maintains the sha256-<hex> referrers tag.
func pushBundle(t testing.TB, reg *upstream.Registry, repo string, subject ocispec.Descriptor, bundleJSON []byte, fallback bool) digest.Digest {
	t.Helper()
	body, d := pushArtifact(t, reg, repo, "", cosign.BundleMediaType, &subject,
		map[string]string{cosign.BundleContentAnnotation: "dsse-envelope"},
		layerSpec{mediaType: cosign.BundleMediaType, blob: bundleJSON})
	if fallback {
		tag := subject.Digest.Algorithm().String() + "-" + subject.Digest.Encoded()
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
		idx.SchemaVersion = 2
		resp, err := http.Get(reg.URL + "/v2/" + repo + "/manifests/" + tag)
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				_ = json.NewDecoder(resp.Body).Decode(&idx)
			}
			resp.Body.Close()
		}
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(body)), ArtifactType: cosign.BundleMediaType})
		ib, _ := json.Marshal(idx)
		putManifest(t, reg, repo, tag, ocispec.MediaTypeImageIndex, ib)
	}
	return d
}

// testKey is a real signing key made in the test.
type testKey struct {
	name string
	priv crypto.Signer
	pem  []byte
}

func newKey(t testing.TB, name, kind string) testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch kind {
	case "p256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "rsa2048":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		priv, err = rsa.GenerateKey(rand.Reader, 1024)
	default:
		t.Fatalf("unknown key kind %s", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testKey{name: name, priv: priv, pem: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

func (k testKey) spec() verify.KeySpec { return verify.KeySpec{Name: k.name, PEM: k.pem} }

// sign signs msg as cosign does for the key type.
func (k testKey) sign(t testing.TB, msg []byte) []byte {
	t.Helper()
	var sig []byte
	var err error
	switch p := k.priv.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(p, msg)
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(msg)
		sig, err = ecdsa.SignASN1(rand.Reader, p, h[:])
	case *rsa.PrivateKey:
		h := sha256.Sum256(msg)
		sig, err = rsa.SignPKCS1v15(rand.Reader, p, crypto.SHA256, h[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func simpleSigningPayload(d digest.Digest, ref string) []byte {
	return []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, ref, d))
}

// sigLayer is a cosign legacy signature layer signed by k.
func sigLayer(t testing.TB, k testKey, payload []byte) layerSpec {
	return layerSpec{
		mediaType:   cosign.SimpleSigningMediaType,
		blob:        payload,
		annotations: map[string]string{cosign.SignatureAnnotation: base64.StdEncoding.EncodeToString(k.sign(t, payload))},
	}
}

func statementJSON(stType, predType string, predicate string, digests ...digest.Digest) []byte {
	var subs []string
	for i, d := range digests {
		subs = append(subs, fmt.Sprintf(`{"name":"img%d","digest":{%q:%q}}`, i, d.Algorithm().String(), d.Encoded()))
	}
	return []byte(fmt.Sprintf(`{"_type":%q,"subject":[%s],"predicateType":%q,"predicate":%s}`, stType, strings.Join(subs, ","), predType, predicate))
}

// envelopeJSON signs payload into a DSSE envelope with k.
func envelopeJSON(t testing.TB, k testKey, payloadType string, payload []byte) []byte {
	t.Helper()
	sig := k.sign(t, dsse.PAE(payloadType, payload))
	env := map[string]any{
		"payloadType": payloadType,
		"payload":     base64.StdEncoding.EncodeToString(payload),
		"signatures":  []map[string]string{{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}},
	}
	b, _ := json.Marshal(env)
	return b
}

func attLayer(env []byte) layerSpec {
	return layerSpec{mediaType: cosign.DSSEMediaType, blob: env, annotations: map[string]string{cosign.SignatureAnnotation: "", "predicateType": "x"}}
}

// keyBundleJSON wraps a DSSE envelope signed with k into a sigstore bundle
// v0.3 with a public-key hint, as cosign v3 --key does.
func keyBundleJSON(t testing.TB, k testKey, payload []byte) []byte {
	t.Helper()
	sig := k.sign(t, dsse.PAE("application/vnd.in-toto+json", payload))
	b := map[string]any{
		"mediaType":            cosign.BundleMediaType,
		"verificationMaterial": map[string]any{"publicKey": map[string]string{"hint": "anything"}},
		"dsseEnvelope": map[string]any{
			"payload": base64.StdEncoding.EncodeToString(payload), "payloadType": "application/vnd.in-toto+json",
			"signatures": []map[string]string{{"sig": base64.StdEncoding.EncodeToString(sig)}},
		},
	}
	out, _ := json.Marshal(b)
	return out
}

// keyMessageBundleJSON is a message-signature bundle over artifact.
func keyMessageBundleJSON(t testing.TB, k testKey, artifact []byte) []byte {
	t.Helper()
	h := sha256.Sum256(artifact)
	b := map[string]any{
		"mediaType":            cosign.BundleMediaType,
		"verificationMaterial": map[string]any{"publicKey": map[string]string{"hint": "anything"}},
		"messageSignature": map[string]any{
			"messageDigest": map[string]string{"algorithm": "SHA2_256", "digest": base64.StdEncoding.EncodeToString(h[:])},
			"signature":     base64.StdEncoding.EncodeToString(k.sign(t, artifact)),
		},
	}
	out, _ := json.Marshal(b)
	return out
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func mustTrust(t testing.TB, spec verify.TrustSpec) *verify.Trust {
	t.Helper()
	tr, err := verify.NewTrust(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func summarize(r verify.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "found=%d sigs=%d atts=%d", r.Found, len(r.Signatures), len(r.Attestations))
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "\n  failure %s %s: %s", f.Kind, f.Source, f.Reason)
	}
	return b.String()
}
