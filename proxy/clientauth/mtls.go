package clientauth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// caPool is the client certificate CA bundle, reloaded when the file
// changes. A bundle that fails to load refuses every certificate until it is
// fixed.
type caPool struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	stamp fileStamp
	pool  *x509.CertPool
	err   error
}

func openCAPool(path string, log *slog.Logger) (*caPool, error) {
	p := &caPool{path: path, log: log}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refreshLocked()
	if p.err != nil {
		return nil, p.err
	}
	return p, nil
}

func (p *caPool) refreshLocked() {
	st, err := stampOf(p.path)
	if err == nil && p.pool != nil && st.same(p.stamp) {
		return
	}
	var pool *x509.CertPool
	if err == nil {
		pool, err = loadCAFile(p.path)
	}
	if err != nil {
		if p.err == nil {
			p.log.Error("client CA bundle unusable: refusing client certificates until it is fixed", "file", p.path, "error", err)
		}
		p.pool, p.err, p.stamp = nil, fmt.Errorf("auth.mtls.clientCA: %w", err), st
		return
	}
	p.pool, p.err, p.stamp = pool, nil, st
	p.log.Info("client CA bundle loaded", "file", p.path)
}

// loadCAFile reads a PEM bundle of CA certificates.
func loadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

// identify verifies a presented chain (leaf first) against the CA bundle
// for client authentication and returns its identity.
func (p *caPool) identify(chain []*x509.Certificate, now time.Time) (Identity, error) {
	p.mu.Lock()
	p.refreshLocked()
	pool, loadErr := p.pool, p.err
	p.mu.Unlock()
	if loadErr != nil {
		return Identity{}, errors.New("client CA bundle unavailable")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return Identity{}, errors.New("certificate not issued by a trusted client CA (or expired, or not for client authentication)")
	}
	id := Identity{Method: MethodMTLS}
	if cn := leaf.Subject.CommonName; cn != "" {
		id.Principals = append(id.Principals, "cn:"+cn)
	}
	for _, ou := range leaf.Subject.OrganizationalUnit {
		if ou != "" {
			id.Principals = append(id.Principals, "ou:"+ou)
		}
	}
	if len(id.Principals) == 0 {
		return Identity{}, errors.New("certificate subject has no CN or OU")
	}
	id.Subject = id.Principals[0]
	return id, nil
}
