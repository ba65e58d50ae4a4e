package upstream_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	testreg "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/test/harness"
)

// An upstream is used over exactly the scheme its url names. One
// configured as http:// whose port speaks TLS is not silently used over
// https (go-containerregistry's ping falls back between schemes): it fails
// with an error that says what to configure, and nothing reaches it over
// https. One configured as https:// stays https.
func TestConfiguredSchemeOnly(t *testing.T) {
	ca := harness.NewCA(t)
	reg := start(t, testreg.Options{TLS: ca.Server})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = ca.ClientTLS()
	img, err := random.Image(300, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Host + "/tls/app:v1")
	if err := remote.Write(ref, img, remote.WithTransport(tr)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("https configured stays https", func(t *testing.T) {
		c := newClient(t, reg, func(u *config.Upstream) { u.CA = ca.CertFile })
		if _, _, _, err := c.Fetcher("tls/app", maxManifest).Manifest(ctx, "v1"); err != nil {
			t.Fatalf("https upstream: %v", err)
		}
	})

	t.Run("http configured on a TLS port fails", func(t *testing.T) {
		reg.ResetCounts()
		c := newClient(t, reg, func(u *config.Upstream) { u.URL = "http://" + reg.Host; u.CA = ca.CertFile })
		_, _, _, err := c.Fetcher("tls/app", maxManifest).Manifest(ctx, "v1")
		if err == nil {
			t.Fatal("an upstream configured as http:// was used over https")
		}
		t.Logf("error: %v", err)
		if msg := err.Error(); !strings.Contains(msg, "configured as http://") || !strings.Contains(msg, "https://"+reg.Host) {
			t.Errorf("error does not say what is wrong and what to configure: %v", err)
		}
		if n := reg.Count("", "/v2/"); n != 0 {
			t.Errorf("%d requests reached the upstream over https", n)
		}
	})
}
