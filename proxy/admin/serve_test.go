package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServePlainAndTLSAndShutdown(t *testing.T) {
	h := New(Options{})
	// A self-signed certificate from httptest.
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	cert := ts.TLS.Certificates[0]
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	ts.Close()

	for _, useTLS := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var cfg *tls.Config
		scheme := "http"
		client := &http.Client{Timeout: 5 * time.Second}
		if useTLS {
			cfg = &tls.Config{Certificates: []tls.Certificate{cert}}
			scheme = "https"
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		}
		done := make(chan error, 1)
		go func() { done <- Serve(ctx, ln, h, cfg, nil) }()
		resp, err := client.Get(scheme + "://" + ln.Addr().String() + "/healthz")
		if err != nil {
			t.Fatalf("tls=%v: %v", useTLS, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok\n" || (useTLS && resp.TLS == nil) {
			t.Fatalf("tls=%v: %d %q", useTLS, resp.StatusCode, b)
		}
		if useTLS && resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("TLS version %x", resp.TLS.Version)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after the context ended")
		}
		if _, err := client.Get(scheme + "://" + ln.Addr().String() + "/healthz"); err == nil {
			t.Fatal("still serving after shutdown")
		}
	}
}

func TestDirWritable(t *testing.T) {
	dir := t.TempDir()
	if err := DirWritable(dir); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("probe left %d files", len(entries))
	}

	if err := DirWritable(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("missing dir: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if err := DirWritable(file); err == nil {
		t.Fatal("a regular file reported as a writable directory")
	}
	if os.Geteuid() != 0 { // root writes through permissions
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o500)
		if err := DirWritable(ro); err == nil {
			t.Fatal("read-only dir reported writable")
		}
	}
}
