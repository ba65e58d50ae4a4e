// Package config loads pullgate's server configuration (pullgate.yaml). Every
// key is documented in README.md; unknown keys are an error.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/proxy/audit"
)

// Config is the whole server configuration.
type Config struct {
	// Listen is the registry API address (plain HTTP unless TLS is set).
	Listen string `yaml:"listen"`
	TLS    *TLS   `yaml:"tls,omitempty"`
	// Admin is the admin listener (metrics, health, /ui); empty disables it.
	Admin string `yaml:"admin,omitempty"`
	// AdminTLS serves the admin listener over TLS (reloaded on change).
	AdminTLS *TLS `yaml:"adminTLS,omitempty"`
	// DefaultUpstream receives requests whose first path segment is not a
	// configured upstream (Docker's registry-mirrors send Docker Hub paths
	// with no prefix). Empty: such requests are refused.
	DefaultUpstream string      `yaml:"defaultUpstream,omitempty"`
	Storage         Storage     `yaml:"storage"`
	Upstreams       []Upstream  `yaml:"upstreams"`
	Policy          string      `yaml:"policy"`
	Audit           Audit       `yaml:"audit"`
	Cache           VerdictOpts `yaml:"cache"`
	Limits          Limits      `yaml:"limits"`
	Log             Log         `yaml:"log"`
	// Auth is client authentication and authorization (see auth.go).
	Auth *Auth `yaml:"auth,omitempty"`
	// Signals are external signal providers (see signals.go).
	Signals []Signal `yaml:"signals,omitempty"`
	// VSA signs verification summaries of allowed artifacts (see vsa.go).
	VSA *VSA `yaml:"vsa,omitempty"`

	// dir is the directory of the config file; relative paths resolve to it.
	dir string
}

// TLS is a certificate and key for a listener.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Storage configures the content store.
type Storage struct {
	// Path is the local directory of the filesystem store (default ./data).
	Path string `yaml:"path"`
	// MaxSize bounds the store; least recently used content is evicted past it.
	MaxSize ByteSize `yaml:"maxSize"`
	// Driver selects another distribution storage driver ("s3", ...) with its
	// parameters; empty means the filesystem store at Path.
	Driver     string         `yaml:"driver,omitempty"`
	Parameters map[string]any `yaml:"parameters,omitempty"`
	// SpoolDir holds in-flight blob downloads (default <path>/_spool or the
	// OS temp dir when the store is not local).
	SpoolDir string `yaml:"spoolDir,omitempty"`
}

// Upstream is one registry pullgate proxies.
type Upstream struct {
	// Name is the first path segment clients use (<proxy>/<name>/<repo>) and
	// the ns= value containerd sends.
	Name string `yaml:"name"`
	// URL of the registry: https://host[:port], or http:// for plain HTTP.
	URL string `yaml:"url"`
	// Username/Password for basic or token auth; or DockerConfig names a
	// Docker config.json to read credentials for this registry from.
	Username     string `yaml:"username,omitempty"`
	Password     string `yaml:"password,omitempty"`
	PasswordFile string `yaml:"passwordFile,omitempty"`
	DockerConfig string `yaml:"dockerConfig,omitempty"`
	// CA is a PEM bundle of extra roots to trust for this upstream.
	CA string `yaml:"ca,omitempty"`
	// TagTTL is how long a tag→digest resolution is reused (default 30s).
	TagTTL Duration `yaml:"tagTTL,omitempty"`
	// OfflineGrace is how long the last resolution of a tag is served when
	// the upstream is unreachable (default 24h; 0 keeps the default, negative disables).
	OfflineGrace Duration `yaml:"offlineGrace,omitempty"`
	// Timeout bounds one upstream request's headers (default 30s).
	Timeout Duration `yaml:"timeout,omitempty"`
}

// Audit configures the decision log.
type Audit struct {
	// Path of the JSONL file; "-" or "stdout" writes to standard output.
	Path string `yaml:"path"`
	// MaxSize rotates the file before a write would pass it (0: never).
	MaxSize ByteSize `yaml:"maxSize,omitempty"`
	// MaxFiles is how many rotated files are kept (default 5).
	MaxFiles int `yaml:"maxFiles,omitempty"`
}

// VerdictOpts bounds the verdict cache.
type VerdictOpts struct {
	Size     int      `yaml:"size"`     // entries (default 10000)
	AllowTTL Duration `yaml:"allowTTL"` // default 10m
	DenyTTL  Duration `yaml:"denyTTL"`  // default 30s
}

// Limits bound what upstreams may send.
type Limits struct {
	MaxManifestSize ByteSize `yaml:"maxManifestSize"` // default 4MiB
	MaxEvidenceSize ByteSize `yaml:"maxEvidenceSize"` // default 16MiB, per signature/attestation blob
}

// Log configures structured logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error (default info)
	Format string `yaml:"format"` // json or text (default json)
}

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	c.dir = abs
	return c, nil
}

// Parse decodes and validates config bytes (relative paths resolve against
// the working directory).
func Parse(b []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, errEOF()) {
		return nil, err
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func errEOF() error { return ioEOF }

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:5000"
	}
	if c.Storage.Path == "" && c.Storage.Driver == "" {
		c.Storage.Path = "./data"
	}
	if c.Cache.Size == 0 {
		c.Cache.Size = 10000
	}
	if c.Cache.AllowTTL == 0 {
		c.Cache.AllowTTL = Duration(10 * time.Minute)
	}
	if c.Cache.DenyTTL == 0 {
		c.Cache.DenyTTL = Duration(30 * time.Second)
	}
	if c.Limits.MaxManifestSize == 0 {
		c.Limits.MaxManifestSize = 4 << 20
	}
	if c.Limits.MaxEvidenceSize == 0 {
		c.Limits.MaxEvidenceSize = 16 << 20
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.TagTTL == 0 {
			u.TagTTL = Duration(30 * time.Second)
		}
		if u.OfflineGrace == 0 {
			u.OfflineGrace = Duration(24 * time.Hour)
		}
		if u.Timeout == 0 {
			u.Timeout = Duration(30 * time.Second)
		}
	}
	for i := range c.Signals {
		c.Signals[i].defaults()
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
}

// Validate reports every problem in the configuration.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Upstreams) == 0 {
		errs = append(errs, errors.New("upstreams: at least one upstream is required"))
	}
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		at := fmt.Sprintf("upstreams[%d]", i)
		if !validUpstreamName(u.Name) {
			errs = append(errs, fmt.Errorf("%s.name %q: must be a registry host name such as docker.io or upstream.local (lowercase letters, digits, '.', '-', ':' port)", at, u.Name))
		}
		if seen[u.Name] {
			errs = append(errs, fmt.Errorf("%s.name %q: duplicate upstream name", at, u.Name))
		}
		seen[u.Name] = true
		pu, err := url.Parse(u.URL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s.url: %v", at, err))
		case pu.Scheme != "http" && pu.Scheme != "https":
			errs = append(errs, fmt.Errorf("%s.url %q: scheme must be https (or http for a plain-HTTP upstream)", at, u.URL))
		case pu.Host == "" || (pu.Path != "" && pu.Path != "/") || pu.RawQuery != "" || pu.User != nil:
			errs = append(errs, fmt.Errorf("%s.url %q: must be scheme://host[:port] with no path, query or credentials (use username/password)", at, u.URL))
		}
		if u.Password != "" && u.PasswordFile != "" {
			errs = append(errs, fmt.Errorf("%s: set password or passwordFile, not both", at))
		}
		if (u.Username != "") != (u.Password != "" || u.PasswordFile != "") {
			errs = append(errs, fmt.Errorf("%s: username and password (or passwordFile) go together", at))
		}
		if u.DockerConfig != "" && u.Username != "" {
			errs = append(errs, fmt.Errorf("%s: set dockerConfig or username/password, not both", at))
		}
	}
	if c.Policy == "" {
		errs = append(errs, errors.New("policy: the path of the policy file is required"))
	}
	if c.TLS != nil && (c.TLS.Cert == "" || c.TLS.Key == "") {
		errs = append(errs, errors.New("tls: both cert and key are required"))
	}
	if c.AdminTLS != nil && (c.AdminTLS.Cert == "" || c.AdminTLS.Key == "") {
		errs = append(errs, errors.New("adminTLS: both cert and key are required"))
	}
	if c.AdminTLS != nil && c.Admin == "" {
		errs = append(errs, errors.New("adminTLS: set admin (the admin listener address) too"))
	}
	if c.DefaultUpstream != "" {
		if _, ok := c.Upstream(c.DefaultUpstream); !ok {
			errs = append(errs, fmt.Errorf("defaultUpstream %q: not a configured upstream name", c.DefaultUpstream))
		}
	}
	if err := (audit.Options{Path: c.Audit.Path, MaxSize: int64(c.Audit.MaxSize), MaxFiles: c.Audit.MaxFiles}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("audit: %w", err))
	}
	if c.Cache.Size < 0 || c.Cache.AllowTTL < 0 || c.Cache.DenyTTL < 0 {
		errs = append(errs, errors.New("cache: size and TTLs must not be negative"))
	}
	if c.Auth != nil {
		errs = append(errs, c.Auth.validate(c)...)
	}
	errs = append(errs, c.validateSignals()...)
	if c.VSA != nil {
		errs = append(errs, c.VSA.validate()...)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: use debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: use json or text", c.Log.Format))
	}
	return errors.Join(errs...)
}

func validUpstreamName(s string) bool {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == ':') {
			return false
		}
	}
	return true
}

// Resolve makes a path from the config relative to the config file's directory.
// A leading "~/" is the user's home directory.
func (c *Config) Resolve(p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	if p == "" || p == "-" || p == "stdout" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Upstream returns the upstream with the given name.
func (c *Config) Upstream(name string) (*Upstream, bool) {
	for i := range c.Upstreams {
		if c.Upstreams[i].Name == name {
			return &c.Upstreams[i], true
		}
	}
	return nil, false
}
