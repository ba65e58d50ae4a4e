package tlsreload_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullgate/pullgate/proxy/tlsreload"
)

var (
	serialMu sync.Mutex
	serialN  = time.Now().UnixNano()
)

func serial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serialN++
	return big.NewInt(serialN)
}

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, cn string) *ca {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{c, k, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf issues a server (for 127.0.0.1) or client certificate; it returns
// the PEMs and the serial number.
func (c *ca) leaf(t *testing.T, server bool) (certPEM, keyPEM []byte, sn *big.Int) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sn = serial()
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &k.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), sn
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func write(t *testing.T, path string, b []byte, rename bool) {
	t.Helper()
	if !rename {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// serve runs an http.Server on the Reloader's configuration, answering
// which client certificate (if any) it verified.
func serve(t *testing.T, r *tlsreload.Reloader) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig: r.TLSConfig(),
		ErrorLog:  log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if len(req.TLS.VerifiedChains) > 0 {
				_, _ = io.WriteString(w, "verified "+req.TLS.VerifiedChains[0][0].SerialNumber.String())
				return
			}
			_, _ = io.WriteString(w, "no client certificate")
		}),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// presented is the serial of the certificate the server presents on a new
// handshake.
func presented(t *testing.T, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	root := newCA(t, "server CA")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1, k1, sn1 := root.leaf(t, true)
	write(t, certFile, c1, false)
	write(t, keyFile, k1, false)
	var logs syncBuffer
	r, err := tlsreload.New(certFile, keyFile, "", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	if got := presented(t, addr, roots); got.Cmp(sn1) != 0 {
		t.Fatalf("serial %v, want %v", got, sn1)
	}

	// Rewritten in place: the next handshake presents the new certificate.
	c2, k2, sn2 := root.leaf(t, true)
	write(t, certFile, c2, false)
	write(t, keyFile, k2, false)
	if got := presented(t, addr, roots); got.Cmp(sn2) != 0 {
		t.Fatalf("after rewrite: serial %v, want %v", got, sn2)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Fatalf("reload not logged: %s", logs.String())
	}

	// Replaced by rename (Kubernetes Secret volumes swap a symlink, editors
	// rename): the same.
	c3, k3, sn3 := root.leaf(t, true)
	write(t, certFile, c3, true)
	// Only the certificate so far: it does not match the key, the previous
	// pair stays in service and the problem is logged.
	if got := presented(t, addr, roots); got.Cmp(sn2) != 0 {
		t.Fatalf("half-written rotation: serial %v, want the previous %v", got, sn2)
	}
	if !strings.Contains(logs.String(), "keeping the previous certificate") {
		t.Fatalf("mismatch not logged: %s", logs.String())
	}
	write(t, keyFile, k3, true)
	if got := presented(t, addr, roots); got.Cmp(sn3) != 0 {
		t.Fatalf("after rename: serial %v, want %v", got, sn3)
	}

	// Files gone: keep serving what was loaded.
	_ = os.Remove(certFile)
	if got := presented(t, addr, roots); got.Cmp(sn3) != 0 {
		t.Fatalf("after removal: serial %v, want %v", got, sn3)
	}

	// HTTP/2 is negotiated over the per-handshake configuration.
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	resp, err := cl.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s", resp.Proto)
	}
}

func TestClientCAReload(t *testing.T) {
	dir := t.TempDir()
	root := newCA(t, "server CA")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "clients.pem")
	c, k, _ := root.leaf(t, true)
	write(t, certFile, c, false)
	write(t, keyFile, k, false)
	ca1, ca2 := newCA(t, "clients 1"), newCA(t, "clients 2")
	write(t, caFile, ca1.pem, false)
	r, err := tlsreload.New(certFile, keyFile, caFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	get := func(cert *tls.Certificate) (string, error) {
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := cl.Get("https://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	pair := func(c *ca) (tls.Certificate, *big.Int) {
		cp, kp, sn := c.leaf(t, false)
		p, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		return p, sn
	}
	from1, sn1 := pair(ca1)
	from2, sn2 := pair(ca2)

	// No certificate: allowed (Basic and Bearer clients).
	if body, err := get(nil); err != nil || body != "no client certificate" {
		t.Fatalf("without a certificate: %q %v", body, err)
	}
	if body, err := get(&from1); err != nil || body != "verified "+sn1.String() {
		t.Fatalf("trusted certificate: %q %v", body, err)
	}
	// A client only offers a certificate the server's CA list names, so a
	// certificate from CA 2 is not even sent; one from an impostor CA that
	// copies CA 1's name is sent and fails the handshake.
	if body, err := get(&from2); err == nil && body != "no client certificate" {
		t.Fatalf("certificate from an untrusted CA accepted: %q", body)
	}
	impostor, _ := pair(newCA(t, "clients 1"))
	if body, err := get(&impostor); err == nil {
		t.Fatalf("certificate from an impostor CA accepted: %q", body)
	}
	// Rotate the client CA: CA 2 only.
	write(t, caFile, ca2.pem, true)
	if body, err := get(&from2); err != nil || body != "verified "+sn2.String() {
		t.Fatalf("after CA rotation: %q %v", body, err)
	}
	if body, err := get(&from1); err == nil && body != "no client certificate" {
		t.Fatalf("certificate from the removed CA accepted: %q", body)
	}
	// A broken bundle keeps the previous one.
	write(t, caFile, []byte("not pem"), false)
	if body, err := get(&from2); err != nil || body != "verified "+sn2.String() {
		t.Fatalf("after a broken bundle: %q %v", body, err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	root := newCA(t, "server CA")
	c, k, _ := root.leaf(t, true)
	_, k2, _ := root.leaf(t, true)
	certFile, keyFile, otherKey := filepath.Join(dir, "c"), filepath.Join(dir, "k"), filepath.Join(dir, "k2")
	write(t, certFile, c, false)
	write(t, keyFile, k, false)
	write(t, otherKey, k2, false)
	if _, err := tlsreload.New(certFile, otherKey, "", nil); err == nil {
		t.Fatal("mismatched key accepted")
	}
	if _, err := tlsreload.New(certFile, filepath.Join(dir, "missing"), "", nil); err == nil {
		t.Fatal("missing key accepted")
	}
	if _, err := tlsreload.New(certFile, keyFile, keyFile, nil); err == nil || !strings.Contains(err.Error(), "no PEM certificates") {
		t.Fatalf("a key as client CA bundle: %v", err)
	}
	if _, err := tlsreload.New("", keyFile, "", nil); err == nil {
		t.Fatal("empty cert path accepted")
	}
}
