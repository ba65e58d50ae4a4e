package config

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/pullgate/pullgate/verify/signals"
)

// Signal is one external signal provider (docs/signals.md): a service
// (url) or a local program (exec) pullgate asks about a digest. Only the
// operator configures providers; policies refer to them by name.
type Signal struct {
	// Name is how policies refer to it (signals.<name>): [a-z][a-z0-9_]*.
	Name string `yaml:"name"`
	// URL is the https:// endpoint the request is POSTed to.
	URL string `yaml:"url,omitempty"`
	// Exec is a program (absolute, or relative to the config file's
	// directory) run with Args: the request on stdin, the answer on stdout.
	Exec string   `yaml:"exec,omitempty"`
	Args []string `yaml:"args,omitempty"`
	// CA is a PEM bundle, the only roots trusted for URL when set.
	CA string `yaml:"ca,omitempty"`
	// ClientCert and ClientKey authenticate pullgate (mTLS).
	ClientCert string `yaml:"clientCert,omitempty"`
	ClientKey  string `yaml:"clientKey,omitempty"`
	// TokenFile holds a bearer token, re-read on every call.
	TokenFile string `yaml:"tokenFile,omitempty"`
	// Timeout bounds one ask, retries included (default 2s).
	Timeout Duration `yaml:"timeout,omitempty"`
	// CacheTTL bounds how long a done answer is reused (default 1h).
	CacheTTL Duration `yaml:"cacheTTL,omitempty"`
	// OnError and OnPending: deny (default) or ignore.
	OnError   string `yaml:"onError,omitempty"`
	OnPending string `yaml:"onPending,omitempty"`
	// MaxConcurrent caps calls in flight (default 8).
	MaxConcurrent int `yaml:"maxConcurrent,omitempty"`
	// Retries after a network error, 429 or 5xx, within Timeout (default 1;
	// 0 for none).
	Retries *int `yaml:"retries,omitempty"`
}

func (s *Signal) defaults() {
	if s.Timeout == 0 {
		s.Timeout = Duration(2 * time.Second)
	}
	if s.CacheTTL == 0 {
		s.CacheTTL = Duration(time.Hour)
	}
	if s.OnError == "" {
		s.OnError = signals.OnDeny
	}
	if s.OnPending == "" {
		s.OnPending = signals.OnDeny
	}
	if s.MaxConcurrent == 0 {
		s.MaxConcurrent = signals.DefaultMaxConcurrent
	}
	if s.Retries == nil {
		r := signals.DefaultRetries
		s.Retries = &r
	}
}

func (c *Config) validateSignals() []error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range c.SignalProviders() {
		at := fmt.Sprintf("signals[%d] (%s)", i, p.Name)
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate signal provider name", at))
		}
		seen[p.Name] = true
		if r := c.Signals[i].Retries; r != nil && *r < 0 {
			errs = append(errs, fmt.Errorf("%s.retries %d: must not be negative", at, *r))
		}
		err := p.Validate()
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				errs = append(errs, fmt.Errorf("%s: %w", at, e))
			}
		} else if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
	}
	return errs
}

// SignalProviders returns the configured signal providers with their
// paths resolved (relative to the config file's directory, or the working
// directory for a config from Parse), ready for signals.NewService.
func (c *Config) SignalProviders() []signals.Provider {
	abs := func(p string) string {
		if p == "" {
			return ""
		}
		p = c.Resolve(p)
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	out := make([]signals.Provider, 0, len(c.Signals))
	for _, s := range c.Signals {
		retries := signals.DefaultRetries
		if s.Retries != nil {
			retries = *s.Retries
			if retries == 0 {
				retries = -1 // signals.Provider: negative is none, 0 the default
			}
		}
		out = append(out, signals.Provider{
			Name: s.Name, URL: s.URL, Exec: abs(s.Exec), Args: append([]string(nil), s.Args...),
			CA: abs(s.CA), ClientCert: abs(s.ClientCert), ClientKey: abs(s.ClientKey), TokenFile: abs(s.TokenFile),
			Timeout: s.Timeout.D(), CacheTTL: s.CacheTTL.D(), OnError: s.OnError, OnPending: s.OnPending,
			MaxConcurrent: s.MaxConcurrent, Retries: retries,
		})
	}
	return out
}
