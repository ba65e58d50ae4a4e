package signals

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Failure policies (OnError, OnPending).
const (
	OnDeny   = "deny"
	OnIgnore = "ignore"
)

// Defaults of a Provider's zero fields.
const (
	DefaultTimeout       = 2 * time.Second
	DefaultMaxConcurrent = 8
	DefaultRetries       = 1
)

// Provider is one signal provider the operator configured (never one named
// by an artifact or a policy file). Exactly one of URL and Exec is set.
// Paths are absolute.
type Provider struct {
	// Name is how policies refer to it (signals.<name>): [a-z][a-z0-9_]*.
	Name string
	// URL is an https:// endpoint the Request is POSTed to.
	URL string
	// Exec is a program run with Args, the Request on stdin, the Answer
	// on stdout.
	Exec string
	Args []string
	// CA is a PEM bundle: when set, the only roots trusted for URL.
	CA string
	// ClientCert and ClientKey are a PEM certificate and key for mTLS.
	ClientCert, ClientKey string
	// TokenFile holds a bearer token, re-read on every call (rotation).
	TokenFile string
	// Timeout bounds one ask, retries and the wait for a free slot
	// included (0: DefaultTimeout).
	Timeout time.Duration
	// CacheTTL bounds how long a done answer is reused (0: not cached).
	CacheTTL time.Duration
	// OnError and OnPending say what a failure or a pending answer means
	// to the policy: OnDeny (the default, "") or OnIgnore. The Service
	// only validates them; the engine applies them.
	OnError, OnPending string
	// MaxConcurrent caps calls in flight (0: DefaultMaxConcurrent).
	MaxConcurrent int
	// Retries is how many more attempts follow a network error, a 429 or
	// a 5xx, within Timeout (0: DefaultRetries; negative: none).
	Retries int
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// ValidName reports whether s can name a provider (it becomes a CEL field
// name: signals.<name>).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// CheckURL checks a provider URL: https, a host, no credentials or fragment.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("%q: scheme must be https", s)
	case u.Host == "":
		return fmt.Errorf("%q: no host", s)
	case u.User != nil:
		return fmt.Errorf("%q: credentials in the URL are refused (use tokenFile or a client certificate)", s)
	case u.Fragment != "":
		return fmt.Errorf("%q: no fragment", s)
	}
	return nil
}

// withDefaults fills zero fields and checks everything but files.
func (p Provider) withDefaults() (Provider, error) {
	if p.Timeout == 0 {
		p.Timeout = DefaultTimeout
	}
	if p.MaxConcurrent == 0 {
		p.MaxConcurrent = DefaultMaxConcurrent
	}
	switch {
	case p.Retries == 0:
		p.Retries = DefaultRetries
	case p.Retries < 0:
		p.Retries = 0
	}
	if p.OnError == "" {
		p.OnError = OnDeny
	}
	if p.OnPending == "" {
		p.OnPending = OnDeny
	}
	var errs []error
	if !ValidName(p.Name) {
		errs = append(errs, fmt.Errorf("name %q: must match [a-z][a-z0-9_]* (it is the CEL field signals.<name>)", p.Name))
	}
	switch {
	case (p.URL == "") == (p.Exec == ""):
		errs = append(errs, errors.New("set exactly one of url and exec"))
	case p.URL != "":
		if err := CheckURL(p.URL); err != nil {
			errs = append(errs, fmt.Errorf("url %v", err))
		}
		if len(p.Args) > 0 {
			errs = append(errs, errors.New("args go with exec, not url"))
		}
	default:
		if !filepath.IsAbs(p.Exec) {
			errs = append(errs, fmt.Errorf("exec %q: must be an absolute path", p.Exec))
		}
		if p.CA != "" || p.ClientCert != "" || p.ClientKey != "" || p.TokenFile != "" {
			errs = append(errs, errors.New("ca, clientCert, clientKey and tokenFile go with url, not exec"))
		}
	}
	if (p.ClientCert == "") != (p.ClientKey == "") {
		errs = append(errs, errors.New("clientCert and clientKey go together"))
	}
	for _, f := range []struct{ k, v string }{{"ca", p.CA}, {"clientCert", p.ClientCert}, {"clientKey", p.ClientKey}, {"tokenFile", p.TokenFile}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			errs = append(errs, fmt.Errorf("%s %q: must be an absolute path", f.k, f.v))
		}
	}
	if p.Timeout < 0 || p.CacheTTL < 0 {
		errs = append(errs, errors.New("timeout and cacheTTL must not be negative"))
	}
	if p.MaxConcurrent < 0 {
		errs = append(errs, errors.New("maxConcurrent must not be negative"))
	}
	for _, f := range []struct{ k, v string }{{"onError", p.OnError}, {"onPending", p.OnPending}} {
		if f.v != OnDeny && f.v != OnIgnore {
			errs = append(errs, fmt.Errorf("%s %q: use deny or ignore (a signal can keep or cause a denial, never allow)", f.k, f.v))
		}
	}
	return p, errors.Join(errs...)
}

// Validate reports every problem of the provider's fields (files are
// read only by NewService).
func (p Provider) Validate() error {
	_, err := p.withDefaults()
	return err
}

// httpClient builds the provider's client once: its roots, its client
// certificate, no proxy from the environment, no redirects.
func (p Provider) httpClient() (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.CA != "" {
		b, err := os.ReadFile(p.CA)
		if err != nil {
			return nil, fmt.Errorf("signal provider %q: ca: %w", p.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("signal provider %q: ca %s: no PEM certificate in it", p.Name, p.CA)
		}
		tc.RootCAs = pool
	}
	if p.ClientCert != "" {
		c, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("signal provider %q: clientCert/clientKey: %w", p.Name, err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	if p.TokenFile != "" {
		if _, err := readToken(p.TokenFile); err != nil {
			return nil, fmt.Errorf("signal provider %q: %w", p.Name, err)
		}
	}
	tr := &http.Transport{
		Proxy:               nil, // never HTTPS_PROXY: the operator named this host
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: p.MaxConcurrent,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: p.Timeout,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is a status error
		},
	}, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("tokenFile: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" || strings.ContainsAny(t, "\r\n") {
		return "", fmt.Errorf("tokenFile %s: must hold one non-empty line", path)
	}
	return t, nil
}

// AnswerTTL is how long a done answer stands from when it was received:
// the provider's cacheTTL, or the answer's own ttl when shorter.
func (p Provider) AnswerTTL(a *Answer) time.Duration {
	ttl := p.CacheTTL
	if a.TTL > 0 && a.TTL.D() < ttl {
		ttl = a.TTL.D()
	}
	return ttl
}
