package harness

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The harness's upstreams must really enforce what tests rely on: anonymous
// pulls fail on protected upstreams, credentials work, the CA is required.
func TestUpstreamAuthStyles(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts UpstreamOptions
	}{
		{"basic", UpstreamOptions{Basic: true}},
		{"token", UpstreamOptions{Token: true}},
		{"tls", UpstreamOptions{TLS: true}},
		{"token+tls", UpstreamOptions{Token: true, TLS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := StartUpstream(t, tc.opts)
			img := u.PushImage(t, "open/app", "v1", ImageOptions{})
			ref := u.Ref("open/app:v1")
			r, _ := name.ParseReference(ref, u.nameOpts()...)
			// With credentials and CA: works, same digest.
			got, err := remote.Get(r, u.RemoteOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest.String() != img.Digest {
				t.Fatalf("digest %s, want %s", got.Digest, img.Digest)
			}
			// Without credentials (but with the CA): refused when auth is on.
			_, err = remote.Get(r, remote.WithTransport(u.Transport()))
			if (u.Creds != nil) != (err != nil) {
				t.Fatalf("anonymous pull err=%v, creds=%v", err, u.Creds != nil)
			}
			if u.Creds != nil {
				bad := remote.WithAuth(&authn.Basic{Username: u.Creds.Username, Password: "wrong"})
				if _, err := remote.Get(r, remote.WithTransport(u.Transport()), bad); err == nil {
					t.Fatal("wrong password accepted")
				}
			}
			if u.CA != nil {
				// Without the CA, TLS verification fails.
				_, err := remote.Get(r, append(u.RemoteOptions(), remote.WithTransport(http.DefaultTransport))...)
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("pull without CA: %v", err)
				}
			}
			if u.Token != nil {
				if u.Token.Issued() == 0 || u.Token.Rejected() == 0 {
					t.Fatalf("token server issued %d rejected %d", u.Token.Issued(), u.Token.Rejected())
				}
				found := false
				for _, s := range u.Token.Scopes() {
					if s == "repository:open/app:pull" {
						found = true
					}
				}
				if !found {
					t.Fatalf("scopes requested: %v", u.Token.Scopes())
				}
			}
		})
	}
}

func TestTokenServerHonoursScopeAndService(t *testing.T) {
	u := StartUpstream(t, UpstreamOptions{Token: true})
	reader := Credentials{Username: "reader", Password: "r-secret"}
	u.Token.AddUser(reader, "pull")
	img := u.PushImage(t, "open/app", "v1", ImageOptions{})
	r, _ := name.ParseReference(u.Ref("open/app:v1"), name.Insecure)
	ro := remote.WithAuth(&authn.Basic{Username: reader.Username, Password: reader.Password})
	if d, err := remote.Get(r, ro); err != nil || d.Digest.String() != img.Digest {
		t.Fatalf("reader pull: %v", err)
	}
	// A pull-only user cannot push: the token carries no push action.
	r2, _ := name.ParseReference(u.Ref("open/app:v2"), name.Insecure)
	if err := remote.Write(r2, RandomImage(t, ImageOptions{}), ro); err == nil {
		t.Fatal("pull-only user pushed")
	}
	ctx := context.Background()
	// Wrong service is refused.
	st, _, _, err := Get(ctx, u.Token.Realm+"?service=other&scope=repository:open/app:pull", nil)
	if err != nil || st != http.StatusBadRequest {
		t.Fatalf("wrong service: %d %v", st, err)
	}
	// No credentials: 401.
	st, _, _, err = Get(ctx, u.Token.TokenURL("repository:open/app:pull"), nil)
	if err != nil || st != http.StatusUnauthorized {
		t.Fatalf("anonymous token: %d %v", st, err)
	}
}

func TestLiarAndDown(t *testing.T) {
	u := StartUpstream(t, UpstreamOptions{})
	img := u.PushImage(t, "open/app", "v1", ImageOptions{})
	other := u.PushImage(t, "open/other", "v1", ImageOptions{})
	ctx := context.Background()
	blobURL := u.URL + "/v2/open/app/blobs/" + img.Layers[0].Digest
	u.Liar.LieBlob(img.Layers[0].Digest)
	st, h, body, err := Get(ctx, blobURL, nil)
	if err != nil || st != 200 {
		t.Fatal(st, err)
	}
	if int64(len(body)) != img.Layers[0].Size || Sha256(body) == img.Layers[0].Digest || h.Get("Docker-Content-Digest") != img.Layers[0].Digest {
		t.Fatalf("lie: len %d digest %s header %s", len(body), Sha256(body), h.Get("Docker-Content-Digest"))
	}
	u.Liar.LieManifest(img.Digest, other.Manifest)
	for _, ref := range []string{"v1", img.Digest} {
		_, h, body, _ := Get(ctx, u.URL+"/v2/open/app/manifests/"+ref, map[string]string{"Accept": img.MediaType})
		if Sha256(body) != other.Digest || h.Get("Docker-Content-Digest") != img.Digest {
			t.Fatalf("manifest lie by %s: got %s header %s", ref, Sha256(body), h.Get("Docker-Content-Digest"))
		}
	}
	u.Liar.Honest()
	_, _, body, _ = Get(ctx, blobURL, nil)
	if Sha256(body) != img.Layers[0].Digest {
		t.Fatal("honest blob wrong")
	}
	if u.Liar.Lies() != 3 {
		t.Fatalf("lies %d", u.Liar.Lies())
	}
	u.Down()
	if _, _, _, err := Get(ctx, blobURL, nil); err == nil {
		t.Fatal("upstream still answers after Down")
	}
}

func TestReferrersStyles(t *testing.T) {
	for _, api := range []bool{true, false} {
		u := StartUpstream(t, UpstreamOptions{Referrers: api})
		img := u.PushImage(t, "open/app", "v1", ImageOptions{})
		a := u.PushArtifact(t, "open/app", ArtifactOptions{ArtifactType: "application/vnd.example.sbom+json", Subject: img.Descriptor()})
		fallback := "sha256-" + strings.TrimPrefix(img.Digest, "sha256:")
		st, _, body, _ := Get(context.Background(), u.URL+"/v2/open/app/manifests/"+fallback, map[string]string{"Accept": "application/vnd.oci.image.index.v1+json"})
		if api && st != 404 {
			t.Fatalf("API upstream has a fallback tag: %d", st)
		}
		if !api && (st != 200 || !strings.Contains(string(body), a.Digest)) {
			t.Fatalf("tag fallback missing: %d %s", st, body)
		}
		st, _, body, _ = Get(context.Background(), u.URL+"/v2/open/app/referrers/"+img.Digest, nil)
		if api && (st != 200 || !strings.Contains(string(body), a.Digest)) {
			t.Fatalf("referrers API: %d %s", st, body)
		}
		if !api && st != 404 {
			t.Fatalf("no-API upstream answered referrers: %d", st)
		}
	}
}

func TestRegistryBinary(t *testing.T) {
	u := StartRegistryBinary(t, "dist.local")
	img := u.PushImage(t, "open/app", "v1", ImageOptions{})
	d, err := GGCRPull(u.Ref("open/app:v1"))
	if err != nil || d != img.Digest {
		t.Fatalf("%s %v", d, err)
	}
}

func TestRegistryProxyMode(t *testing.T) {
	up := StartUpstream(t, UpstreamOptions{})
	img := up.PushImage(t, "open/app", "v1", ImageOptions{})
	px := StartRegistryProxy(t, "distproxy.local", up.URL)
	d, err := GGCRPull(px.Ref("open/app:v1"))
	if err != nil || d != img.Digest {
		t.Fatalf("%s %v", d, err)
	}
	if up.Count("GET", "/blobs/"+img.Layers[0].Digest) != 1 {
		t.Fatalf("registry proxy did not fetch from the upstream")
	}
}
