package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
)

// The VSA key is pullgate's own: a policy that trusts it for artifacts is
// refused at start, and a reload that makes the policy trust it keeps the
// policy in force (docs/vsa.md, "Keys").
func TestVSAKeyIsNotATrustKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyPair := func(name string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, _ := x509.MarshalPKCS8PrivateKey(k)
		pub, _ := x509.MarshalPKIXPublicKey(k.Public())
		write(name+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}))
		write(name+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	}
	keyPair("vsa")
	keyPair("release")
	policyTrusting := func(pub string) []byte {
		return []byte("trust:\n  keys:\n    - {name: release, path: ./" + pub + "}\nrules:\n  - name: apps\n    match: [\"upstream.local/**\"]\n    require: {signatures: [release]}\n")
	}
	cfg, err := config.Parse([]byte(`
listen: 127.0.0.1:0
storage: {path: ` + filepath.Join(dir, "data") + `}
upstreams: [{name: upstream.local, url: "http://127.0.0.1:1"}]
policy: ` + filepath.Join(dir, "policy.yaml") + `
vsa: {key: ` + filepath.Join(dir, "vsa.key") + `, verifierId: "https://pullgate.example/test"}
`))
	if err != nil {
		t.Fatal(err)
	}
	open := func() (*proxy.Server, error) {
		return proxy.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), proxy.Options{Registerer: prometheus.NewRegistry()})
	}

	write("policy.yaml", policyTrusting("vsa.pub"))
	if srv, err := open(); err == nil {
		srv.Close()
		t.Fatal("a policy trusting the VSA key was accepted")
	} else if !strings.Contains(err.Error(), `vsa.key is the public key of trust key "release"`) {
		t.Fatalf("error does not name the key: %v", err)
	}

	write("policy.yaml", policyTrusting("release.pub"))
	srv, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rev := srv.Engine().Policy().Revision()
	write("policy.yaml", policyTrusting("vsa.pub"))
	if err := srv.ReloadPolicy(); err == nil || !strings.Contains(err.Error(), "vsa.key") {
		t.Fatalf("reload to a policy trusting the VSA key: %v", err)
	}
	if got := srv.Engine().Policy().Revision(); got != rev {
		t.Fatalf("the refused policy took effect: revision %s, was %s", got, rev)
	}
}
