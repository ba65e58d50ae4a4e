// Package tlsreload serves TLS with a certificate, key and optional client
// CA bundle that are re-read when their files change, so certificates can be
// rotated (cert-manager, a Kubernetes Secret update) without a restart.
//
// Files are checked on every handshake (a stat per file); a changed pair is
// loaded only if the certificate and key match, otherwise the previous pair
// keeps being served and the problem is logged, so a rotation that writes
// the two files one after the other never breaks the listener.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// Reloader holds the current certificate and client CA pool.
type Reloader struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger

	mu                           sync.Mutex
	certStamp, keyStamp, caStamp stamp
	cert                         *tls.Certificate
	pool                         *x509.CertPool
	lastErr                      string
}

// New loads certFile/keyFile (PEM) and, when clientCAFile is not empty, a PEM
// bundle of CAs whose client certificates are verified when presented.
func New(certFile, keyFile, clientCAFile string, log *slog.Logger) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both cert and key are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, caFile: clientCAFile, log: log.With("component", "tlsreload")}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reloadCertLocked(); err != nil {
		return nil, err
	}
	if clientCAFile != "" {
		if err := r.reloadCALocked(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// TLSConfig is a server configuration that asks the Reloader for the
// certificate (and the client CA pool) on every handshake. With a client CA,
// a client certificate is optional but verified when given
// (VerifyClientCertIfGiven), so Basic and Bearer clients still connect.
// NextProtos offers h2 and http/1.1 (it is meant for http.Server).
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2", "http/1.1"},
		GetCertificate:     r.GetCertificate,
		GetConfigForClient: r.GetConfigForClient,
	}
}

// GetCertificate returns the current certificate, reloading it first when
// its files changed.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked()
	return r.cert, nil
}

// GetConfigForClient returns the per-handshake configuration: the current
// certificate and, with a client CA, the current pool.
func (r *Reloader) GetConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked()
	cert := r.cert
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil },
	}
	if r.caFile != "" {
		c.ClientCAs = r.pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c, nil
}

// Certificate is the certificate currently served.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked()
	return r.cert
}

func (r *Reloader) refreshLocked() {
	cs, err1 := stampOf(r.certFile)
	ks, err2 := stampOf(r.keyFile)
	if err1 != nil || err2 != nil || !cs.same(r.certStamp) || !ks.same(r.keyStamp) {
		if err := r.reloadCertLocked(); err != nil {
			r.logOnce("keeping the previous certificate: " + err.Error())
		}
	}
	if r.caFile != "" {
		as, err := stampOf(r.caFile)
		if err != nil || !as.same(r.caStamp) {
			if err := r.reloadCALocked(); err != nil {
				r.logOnce("keeping the previous client CA bundle: " + err.Error())
			}
		}
	}
}

func (r *Reloader) logOnce(msg string) {
	if msg != r.lastErr {
		r.lastErr = msg
		r.log.Error("TLS reload failed", "error", msg)
	}
}

func (r *Reloader) reloadCertLocked() error {
	cs, err := stampOf(r.certFile)
	if err != nil {
		return fmt.Errorf("tls cert: %w", err)
	}
	ks, err := stampOf(r.keyFile)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	if r.cert != nil && cs.same(r.certStamp) && ks.same(r.keyStamp) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %s / %s: %w", r.certFile, r.keyFile, err)
	}
	first := r.cert == nil
	r.cert, r.certStamp, r.keyStamp, r.lastErr = &cert, cs, ks, ""
	if !first {
		attrs := []any{"cert", r.certFile}
		if cert.Leaf != nil {
			attrs = append(attrs, "subject", cert.Leaf.Subject.String(), "notAfter", cert.Leaf.NotAfter)
		}
		r.log.Info("TLS certificate reloaded", attrs...)
	}
	return nil
}

func (r *Reloader) reloadCALocked() error {
	as, err := stampOf(r.caFile)
	if err != nil {
		return fmt.Errorf("tls client CA: %w", err)
	}
	b, err := os.ReadFile(r.caFile)
	if err != nil {
		return fmt.Errorf("tls client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("tls client CA %s: no PEM certificates", r.caFile)
	}
	first := r.pool == nil
	r.pool, r.caStamp, r.lastErr = pool, as, ""
	if !first {
		r.log.Info("TLS client CA bundle reloaded", "file", r.caFile)
	}
	return nil
}

// stamp identifies a version of a file.
type stamp struct{ fi os.FileInfo }

func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi}, nil
}

func (s stamp) same(o stamp) bool {
	if s.fi == nil || o.fi == nil {
		return false
	}
	return os.SameFile(s.fi, o.fi) && s.fi.ModTime().Equal(o.fi.ModTime()) && s.fi.Size() == o.fi.Size()
}
