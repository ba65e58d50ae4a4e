package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pullgate/pullgate/policy/glob"
)

// Auth configures client authentication and authorization on the registry
// API (the auth: section). Without it the registry API is open to anyone who
// can reach the listener.
type Auth struct {
	// Realm is the realm of Basic challenges (default "pullgate").
	Realm string `yaml:"realm,omitempty"`
	// Anonymous lists repository globs ("<upstream>/<repo>", policy glob
	// syntax) that may be pulled without credentials. None by default.
	Anonymous []string `yaml:"anonymous,omitempty"`
	// Htpasswd is an htpasswd file of bcrypt entries ("user:$2y$..."),
	// reloaded when it changes.
	Htpasswd string `yaml:"htpasswd,omitempty"`
	// Token enables pullgate's own Docker token endpoint (GET /token) and
	// Bearer challenges on the registry API.
	Token *AuthToken `yaml:"token,omitempty"`
	// MTLS accepts client certificates issued by ClientCA as identities.
	MTLS *AuthMTLS `yaml:"mtls,omitempty"`
	// Groups name sets of principals ("alice", "cn:node-*", "ou:gpu").
	Groups map[string][]string `yaml:"groups,omitempty"`
	// Access rules: the first rule whose repositories match decides who may
	// pull; a repository no rule matches can be pulled by nobody (except
	// anonymously when Anonymous matches it).
	Access []AccessRule `yaml:"access,omitempty"`
	// RateLimit bounds failed logins per client IP and per user name.
	RateLimit AuthRateLimit `yaml:"rateLimit,omitempty"`
}

// AuthToken configures the token endpoint and the tokens it signs.
type AuthToken struct {
	// Issuer is the iss claim (default "pullgate").
	Issuer string `yaml:"issuer,omitempty"`
	// Service is the service (and audience) clients ask for (default "pullgate").
	Service string `yaml:"service,omitempty"`
	// Key is a PEM private key (ECDSA P-256/P-384/P-521, RSA >= 2048 bits or
	// Ed25519) that signs tokens. Empty: an ephemeral key is generated at
	// start (tokens do not survive a restart and are not shared by replicas).
	Key string `yaml:"key,omitempty"`
	// TTL is the token lifetime (default 5m, from 1m to 24h).
	TTL Duration `yaml:"ttl,omitempty"`
	// Realm is the absolute URL of the token endpoint announced in Bearer
	// challenges. Default: scheme://host/token of the request, which is
	// wrong behind a TLS-terminating proxy; set it there.
	Realm string `yaml:"realm,omitempty"`
}

// AuthMTLS configures client certificate authentication.
type AuthMTLS struct {
	// ClientCA is a PEM bundle of the CAs that issue client certificates.
	// Certificate subjects become identities "cn:<CommonName>" and
	// "ou:<OrganizationalUnit>".
	ClientCA string `yaml:"clientCA"`
}

// AccessRule grants pull access to repositories.
type AccessRule struct {
	// Repositories are globs on "<upstream>/<repo>".
	Repositories []string `yaml:"repositories"`
	// Allow lists principals: user names, "group:<name>", "cn:<glob>",
	// "ou:<glob>" (names may be globs, e.g. "cn:node-*").
	Allow []string `yaml:"allow"`
}

// AuthRateLimit bounds failed logins (token bucket per IP and per user).
type AuthRateLimit struct {
	// FailuresPerMinute is the refill rate of the bucket (default 10).
	FailuresPerMinute int `yaml:"failuresPerMinute,omitempty"`
	// Burst is how many failures are tolerated at once (default 5).
	Burst int `yaml:"burst,omitempty"`
}

// Defaults of the auth section.
const (
	DefaultAuthRealm         = "pullgate"
	DefaultTokenIssuer       = "pullgate"
	DefaultTokenService      = "pullgate"
	DefaultTokenTTL          = 5 * time.Minute
	MinTokenTTL              = time.Minute
	MaxTokenTTL              = 24 * time.Hour
	DefaultFailuresPerMinute = 10
	DefaultFailureBurst      = 5
)

var groupNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// quoteSafe: values that are written into WWW-Authenticate parameters.
func quoteSafe(s string) bool {
	for _, r := range s {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}

// Validate checks the auth section on its own (Config.Validate also checks
// it against the rest of the configuration).
func (a *Auth) Validate() error { return errors.Join(a.validate(nil)...) }

// validate reports every problem in the auth section. c is the whole
// configuration (mTLS needs the registry listener's TLS).
func (a *Auth) validate(c *Config) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("auth."+format, args...)) }
	if !quoteSafe(a.Realm) {
		add("realm %q: printable ASCII without quotes or backslashes", a.Realm)
	}
	for i, p := range a.Anonymous {
		if _, err := glob.Compile(p); err != nil {
			add("anonymous[%d]: %v", i, err)
		}
	}
	if t := a.Token; t != nil {
		if !quoteSafe(t.Issuer) || !quoteSafe(t.Service) {
			add("token: issuer and service are printable ASCII without quotes or backslashes")
		}
		// The Docker token spec: never less than 60s (docker takes a
		// shorter token for a 60s one and would reuse it expired).
		if t.TTL < 0 || t.TTL.D() > MaxTokenTTL || t.TTL != 0 && t.TTL.D() < MinTokenTTL {
			add("token.ttl %s: must be between %s and %s", t.TTL.D(), MinTokenTTL, MaxTokenTTL)
		}
		if t.Realm != "" {
			u, err := url.Parse(t.Realm)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || !quoteSafe(t.Realm) {
				add("token.realm %q: must be an absolute http(s) URL of the token endpoint, e.g. https://pullgate.example.com/token", t.Realm)
			}
		}
	}
	if a.MTLS != nil {
		if a.MTLS.ClientCA == "" {
			add("mtls.clientCA: the PEM bundle of client certificate CAs is required")
		}
		if c != nil && c.TLS == nil {
			add("mtls: client certificates need TLS on the registry listener (set tls.cert and tls.key)")
		}
	}
	groups := make([]string, 0, len(a.Groups))
	for g := range a.Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		if !groupNameRE.MatchString(g) {
			add("groups.%s: group names are letters, digits, '.', '_', '-'", g)
		}
		for i, m := range a.Groups[g] {
			if strings.HasPrefix(m, "group:") {
				add("groups.%s[%d] %q: groups cannot contain groups", g, i, m)
				continue
			}
			if err := validPrincipal(m); err != nil {
				add("groups.%s[%d]: %v", g, i, err)
			}
		}
	}
	for i, r := range a.Access {
		if len(r.Repositories) == 0 {
			add("access[%d].repositories: at least one repository glob is required", i)
		}
		for j, p := range r.Repositories {
			if _, err := glob.Compile(p); err != nil {
				add("access[%d].repositories[%d]: %v", i, j, err)
			}
		}
		if len(r.Allow) == 0 {
			add("access[%d].allow: list the users, groups or certificate subjects that may pull", i)
		}
		for j, p := range r.Allow {
			if name, ok := strings.CutPrefix(p, "group:"); ok {
				if _, def := a.Groups[name]; !def {
					add("access[%d].allow[%d] %q: no such group in auth.groups", i, j, p)
				}
				continue
			}
			if err := validPrincipal(p); err != nil {
				add("access[%d].allow[%d]: %v", i, j, err)
			}
		}
	}
	if len(a.Access) == 0 && len(a.Anonymous) == 0 {
		add("access: no access rules and no anonymous repositories: nobody could pull anything")
	}
	if len(a.Access) > 0 && a.Htpasswd == "" && a.MTLS == nil {
		add("access: rules need a way to log in (htpasswd or mtls)")
	}
	if a.RateLimit.FailuresPerMinute < 0 || a.RateLimit.Burst < 0 {
		add("rateLimit: failuresPerMinute and burst must not be negative")
	}
	return errs
}

// validPrincipal checks a user name or "cn:"/"ou:" pattern.
func validPrincipal(p string) error {
	kind, name, hasKind := strings.Cut(p, ":")
	if !hasKind {
		name = p
	} else if kind != "cn" && kind != "ou" {
		return fmt.Errorf("%q: principals are user names, group:<name>, cn:<pattern> or ou:<pattern>", p)
	}
	if name == "" {
		return fmt.Errorf("%q: empty name", p)
	}
	if _, err := glob.Compile(name); err != nil {
		return fmt.Errorf("%q: %v", p, err)
	}
	return nil
}
