package attest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	r := writeRelease(t)
	key, _, err := attesttest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := attesttest.NewKey()
	stmt := r.Statements[attest.KindEval]
	b, err := attest.Sign(context.Background(), stmt, attest.SignOptions{Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	var bundle struct {
		MediaType            string `json:"mediaType"`
		VerificationMaterial struct {
			PublicKey struct {
				Hint string `json:"hint"`
			} `json:"publicKey"`
		} `json:"verificationMaterial"`
		DSSEEnvelope struct {
			Payload     string `json:"payload"`
			PayloadType string `json:"payloadType"`
			Signatures  []struct {
				Sig string `json:"sig"`
			} `json:"signatures"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	hint, _ := attest.KeyHint(key.Public())
	payload, _ := base64.StdEncoding.DecodeString(bundle.DSSEEnvelope.Payload)
	if bundle.MediaType != attest.BundleMediaType || bundle.DSSEEnvelope.PayloadType != attest.PayloadType ||
		bundle.VerificationMaterial.PublicKey.Hint != hint || !bytes.Equal(payload, stmt) || len(bundle.DSSEEnvelope.Signatures) != 1 {
		t.Fatalf("bundle layout: %s", b)
	}
	if strings.Contains(string(b), "BEGIN PUBLIC KEY") || strings.Contains(string(b), "rawBytes") {
		t.Fatal("key-based bundle must not carry the key (verifiers use configured keys)")
	}

	a, err := attesttest.Verify(b, map[string]crypto.PublicKey{"ci": key.Public()}, digest.Digest(artifact))
	if err != nil {
		t.Fatalf("sigstore-go verification: %v", err)
	}
	if a.Signer != "ci" || a.Statement.String() != attest.StatementDigest(stmt) || a.PredicateType != attest.KindEval.PredicateType() {
		t.Fatalf("attestation %+v", a)
	}
	// The same bundle under another key, for another digest, or with a
	// flipped payload byte must not verify.
	if _, err := attesttest.Verify(b, map[string]crypto.PublicKey{"other": other.Public()}, digest.Digest(artifact)); err == nil {
		t.Fatal("verified with the wrong key")
	}
	if _, err := attesttest.Verify(b, map[string]crypto.PublicKey{"ci": key.Public()}, digest.FromString("other")); err == nil {
		t.Fatal("verified for a digest the statement does not name")
	}
	tampered := bytes.Replace(payload, []byte(`"passed":true`), []byte(`"passed":false`), 1)
	if bytes.Equal(tampered, payload) {
		t.Fatal("fixture: no passed field")
	}
	forged := bytes.Replace(b, []byte(bundle.DSSEEnvelope.Payload), []byte(base64.StdEncoding.EncodeToString(tampered)), 1)
	if _, err := attesttest.Verify(forged, map[string]crypto.PublicKey{"ci": key.Public()}, digest.Digest(artifact)); err == nil {
		t.Fatal("verified a modified payload")
	}
}

func TestSignKeyFormats(t *testing.T) {
	r := writeRelease(t)
	stmt := r.Statements[attest.KindPrompt]
	ec, _, _ := attesttest.NewKey()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, k := range map[string]crypto.Signer{"ecdsa": ec, "ed25519": ed, "rsa": rk} {
		pemBytes, err := attesttest.PrivatePEM(k)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "key.pem")
		os.WriteFile(path, pemBytes, 0o600)
		b, err := attest.Sign(context.Background(), stmt, attest.SignOptions{KeyPath: path})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := attesttest.Verify(b, map[string]crypto.PublicKey{name: k.Public()}, digest.Digest(artifact)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := attest.Sign(context.Background(), stmt, attest.SignOptions{Signer: small}); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("1024-bit RSA: %v", err)
	}
}

func TestSignRejects(t *testing.T) {
	key, _, _ := attesttest.NewKey()
	ctx := context.Background()
	r := writeRelease(t)
	if _, err := attest.Sign(ctx, []byte(`{"hello":1}`), attest.SignOptions{Signer: key}); err == nil {
		t.Error("signed a non-statement")
	}
	bad := bytes.Replace(r.Statements[attest.KindSLO], []byte(`"latencyP95Ms":800`), []byte(`"latencyP95Ms":-1`), 1)
	if _, err := attest.Sign(ctx, bad, attest.SignOptions{Signer: key}); err == nil || !strings.Contains(err.Error(), "must not be negative") {
		t.Errorf("signed an invalid pullgate predicate: %v", err)
	}
	if _, err := attest.Sign(ctx, r.Statements[attest.KindSLO], attest.SignOptions{}); err == nil || !strings.Contains(err.Error(), "no key and no OIDC token") {
		t.Errorf("no key: %v", err)
	}
	if _, err := attest.Sign(ctx, r.Statements[attest.KindSLO], attest.SignOptions{IDToken: "x"}); err == nil || !strings.Contains(err.Error(), "Fulcio URL") {
		t.Errorf("keyless without Fulcio: %v", err)
	}
	if _, err := attest.Sign(ctx, r.Statements[attest.KindSLO], attest.SignOptions{KeyPEM: []byte("garbage")}); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("garbage key: %v", err)
	}
}

// pushImage pushes a random image and returns repo and digest.
func pushImage(t *testing.T, reg *upstream.Registry, repo string) (name.Repository, string) {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.NewRepository(reg.Host+"/"+repo, name.Insecure)
	if err := remote.Write(r.Tag("v1"), img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return r, d.String()
}

func TestPushReferrers(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", api), func(t *testing.T) {
			reg, err := upstream.Start(upstream.Options{Referrers: api})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			repo, dg := pushImage(t, reg, "team/model")
			r, err := attesttest.WriteRelease(t.TempDir(), attesttest.ReleaseOptions{Subject: dg})
			if err != nil {
				t.Fatal(err)
			}
			key, _, _ := attesttest.NewKey()
			var bundles [][]byte
			for _, k := range []attest.Kind{attest.KindEval, attest.KindMBOM} {
				b, err := attest.Sign(context.Background(), r.Statements[k], attest.SignOptions{Signer: key})
				if err != nil {
					t.Fatal(err)
				}
				bundles = append(bundles, b)
			}
			created := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
			// By tag: resolved once to the digest the statements name.
			pushed, err := attest.Push(context.Background(), repo.String()+":v1", bundles, attest.PushOptions{Insecure: true, Created: created})
			if err != nil {
				t.Fatal(err)
			}
			if len(pushed) != 2 || pushed[0].PredicateType != attest.KindEval.PredicateType() {
				t.Fatalf("pushed %+v", pushed)
			}

			idx, err := remote.Referrers(repo.Digest(dg))
			if err != nil {
				t.Fatal(err)
			}
			im, _ := idx.IndexManifest()
			if len(im.Manifests) != 2 {
				t.Fatalf("referrers: %d manifests", len(im.Manifests))
			}
			if !api {
				// The fallback tag sha256-<hex> holds the index.
				tag := repo.Tag(strings.Replace(dg, ":", "-", 1))
				desc, err := remote.Get(tag)
				if err != nil {
					t.Fatalf("fallback tag: %v", err)
				}
				if desc.MediaType != "application/vnd.oci.image.index.v1+json" {
					t.Fatalf("fallback tag media type %s", desc.MediaType)
				}
			}
			for i, p := range pushed {
				desc, err := remote.Get(repo.Digest(p.Digest))
				if err != nil {
					t.Fatal(err)
				}
				var m struct {
					MediaType    string `json:"mediaType"`
					ArtifactType string `json:"artifactType"`
					Config       struct {
						MediaType string `json:"mediaType"`
						Digest    string `json:"digest"`
						Size      int64  `json:"size"`
					} `json:"config"`
					Layers []struct {
						MediaType string `json:"mediaType"`
						Digest    string `json:"digest"`
					} `json:"layers"`
					Subject struct {
						Digest string `json:"digest"`
					} `json:"subject"`
					Annotations map[string]string `json:"annotations"`
				}
				json.Unmarshal(desc.Manifest, &m)
				want := map[string]string{
					"org.opencontainers.image.created":  "2026-11-21T00:00:00Z",
					"dev.sigstore.bundle.content":       "dsse-envelope",
					"dev.sigstore.bundle.predicateType": p.PredicateType,
				}
				if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.ArtifactType != attest.BundleMediaType ||
					m.Config.MediaType != "application/vnd.oci.empty.v1+json" ||
					m.Config.Digest != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" || m.Config.Size != 2 ||
					len(m.Layers) != 1 || m.Layers[0].MediaType != attest.BundleMediaType || m.Subject.Digest != dg ||
					fmt.Sprint(m.Annotations) != fmt.Sprint(want) {
					t.Fatalf("referrer manifest layout: %s", desc.Manifest)
				}
				l, _ := remote.Layer(repo.Digest(m.Layers[0].Digest))
				rc, _ := l.Compressed()
				got, _ := io.ReadAll(rc)
				rc.Close()
				if !bytes.Equal(got, bundles[i]) {
					t.Fatal("layer is not the bundle")
				}
				if _, err := attesttest.Verify(got, map[string]crypto.PublicKey{"ci": key.Public()}, digest.Digest(dg)); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestPushRejects(t *testing.T) {
	reg, err := upstream.Start(upstream.Options{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	repo, dg := pushImage(t, reg, "team/app")
	r := writeRelease(t) // statements bound to another digest
	key, _, _ := attesttest.NewKey()
	b, _ := attest.Sign(context.Background(), r.Statements[attest.KindRoute], attest.SignOptions{Signer: key})
	before := reg.Count("PUT", "/manifests/")
	_, err = attest.Push(context.Background(), repo.String()+"@"+dg, [][]byte{b}, attest.PushOptions{Insecure: true})
	if err == nil || !strings.Contains(err.Error(), "statement subjects do not include "+dg) {
		t.Fatalf("push of an unbound bundle: %v", err)
	}
	if _, err := attest.Push(context.Background(), repo.String()+"@"+dg, [][]byte{[]byte(`{"mediaType":"x"}`)}, attest.PushOptions{Insecure: true}); err == nil {
		t.Fatal("pushed a non-bundle")
	}
	if _, err := attest.Push(context.Background(), repo.String()+"@"+digest.FromString("absent").String(), [][]byte{b}, attest.PushOptions{Insecure: true}); err == nil {
		t.Fatal("pushed onto an absent subject")
	}
	if reg.Count("PUT", "/manifests/") != before {
		t.Fatal("a rejected push wrote manifests")
	}
}
