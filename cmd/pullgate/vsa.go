package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/vsa"
)

const vsaUsage = `usage:
  pullgate vsa check <image-ref> --key vsa.pub [--key old.pub] [--verifier-id URI] [--max-age 24h] [--plain-http] [-o text|json]
  pullgate vsa check <image-ref> (--certificate-identity SAN | --certificate-identity-regexp RE)
      (--certificate-oidc-issuer URL | --certificate-oidc-issuer-regexp RE) --trusted-root trusted_root.json [...]
  pullgate vsa containerd-verifier -name <image-ref> -digest sha256:<hex> -stdin-media-type <type> [-config FILE]

check resolves the image's digest on its registry (credentials from the Docker config) and passes
(exit 0) only when a pullgate Verification Summary Attestation (predicate type
https://slsa.dev/verification_summary/v1) attached to that digest is signed by one of the keys
(or keyless: by a Fulcio certificate for exactly that identity and OIDC issuer, chaining to the
trusted root, with a verified timestamp or Rekor entry; keys and the identity may be combined: any
one counts), names exactly that digest, says PASSED, comes from --verifier-id (when given) and is not older
than --max-age (when given). Exit codes as pullgate verify: 10 no VSA found, 11 signature invalid
or signer untrusted, 12 a VSA for another digest, 13 requirements not met (FAILED, too old,
another verifier), 14 malformed, 2 usage, 1 other (registry unreachable).

containerd-verifier is the same check as a containerd 2.x image-verifier ("bindir" plugin)
executable: containerd runs it with -name, -digest and -stdin-media-type and the image's
descriptor on stdin; exit 0 allows the pull, stdout says why. Put a symlink named
pullgate-vsa-verifier to the pullgate binary in containerd's bin_dir; its configuration is read
from $PULLGATE_VSA_VERIFIER_CONFIG, else /etc/pullgate/vsa-verifier.yaml (containerd passes no
other arguments). See docs/vsa.md.
`

// verifierName is the executable name (a symlink to pullgate) under which
// pullgate acts as containerd's image verifier.
const verifierName = "pullgate-vsa-verifier"

// Where the containerd verifier reads its configuration.
const (
	verifierConfigEnv     = "PULLGATE_VSA_VERIFIER_CONFIG"
	defaultVerifierConfig = "/etc/pullgate/vsa-verifier.yaml"
)

func cmdVSA(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, vsaUsage)
		return 2
	}
	switch args[0] {
	case "check":
		return vsaCheck(args[1:])
	case "containerd-verifier":
		return vsaContainerdVerifier(args[1:])
	case "-h", "-help", "--help":
		fmt.Print(vsaUsage)
		return 0
	}
	fmt.Fprint(os.Stderr, vsaUsage)
	return 2
}

// vsaResult is `pullgate vsa check -o json`.
type vsaResult struct {
	Image    string         `json:"image"`
	Digest   digest.Digest  `json:"digest,omitempty"`
	Passed   bool           `json:"passed"`
	ExitCode int            `json:"exitCode"`
	Summary  *vsa.Summary   `json:"summary,omitempty"`
	Refusal  *vsaRefusal    `json:"refusal,omitempty"`
	Evidence *verify.Result `json:"evidence,omitempty"`
	Error    string         `json:"error,omitempty"`
}

type vsaRefusal struct {
	Kind    vsa.RefusalKind `json:"kind"`
	Reasons []string        `json:"reasons"`
}

func vsaCheck(args []string) int {
	fs := flag.NewFlagSet("vsa check", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, vsaUsage) }
	var keys multiFlag
	fs.Var(&keys, "key", "public key (PEM) the VSA must be signed with (repeatable: any one)")
	var signers vsaSigners
	fs.StringVar(&signers.Identity, "certificate-identity", "", "keyless: the signer's certificate identity (SAN), exactly")
	fs.StringVar(&signers.IdentityRE, "certificate-identity-regexp", "", "keyless: a regular expression (RE2, unanchored: use ^…$) the signer's identity must match, instead of --certificate-identity")
	fs.StringVar(&signers.Issuer, "certificate-oidc-issuer", "", "keyless: the signer's OIDC issuer, exactly")
	fs.StringVar(&signers.IssuerRE, "certificate-oidc-issuer-regexp", "", "keyless: a regular expression (RE2, unanchored) the OIDC issuer must match, instead of --certificate-oidc-issuer")
	fs.StringVar(&signers.TrustedRoot, "trusted-root", "", "keyless: Sigstore trusted_root.json (Fulcio CA, TSA chain, Rekor key)")
	verifierID := fs.String("verifier-id", "", "required verifier.id of the VSA")
	maxAge := fs.Duration("max-age", defaultVSAMaxAge, "refuse a VSA whose timeVerified is older (0: no limit)")
	anyRepo := fs.Bool("any-repository", false, "accept a VSA whose resourceUri names another repository (the same digest elsewhere)")
	policyDigest := fs.String("policy-digest", "", "required policy.digest (the policy revision, sha256:<hex>)")
	policyURI := fs.String("policy-uri", "", "required policy.uri")
	var levels multiFlag
	fs.Var(&levels, "require-level", "a check the VSA must list in verifiedLevels, e.g. PULLGATE_SIGNATURES (repeatable)")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound of the whole check")
	plain := fs.Bool("plain-http", false, "talk plain HTTP to the registry")
	out := fs.String("o", "text", "output: text or json")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err)
	}
	if len(pos) != 1 || (*out != "text" && *out != "json") || *maxAge < 0 || *timeout <= 0 {
		fs.Usage()
		return 2
	}
	var pd digest.Digest
	if *policyDigest != "" {
		if pd, err = digest.Parse(*policyDigest); err != nil {
			fmt.Fprintf(os.Stderr, "pullgate vsa check: --policy-digest: %v\n", err)
			return 2
		}
	}
	signers.Keys = keys
	trust, err := signers.trust()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate vsa check: %v\n", err)
		return 2
	}
	reg := vsa.Registry{Keychain: authn.DefaultKeychain, Insecure: *plain}
	opts := vsa.CheckOptions{VerifierID: *verifierID, MaxAge: *maxAge, PolicyDigest: pd, PolicyURI: *policyURI, Levels: levels}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r := vsaResult{Image: pos[0]}
	repo, d, err := vsa.Resolve(ctx, pos[0], reg)
	if err != nil {
		r.ExitCode, r.Error = policy.ExitOther, err.Error()
	} else {
		r.Digest = d
		if !*anyRepo {
			opts.Repository = repo.RepositoryStr()
		}
		s, res, err := vsa.CheckRegistry(ctx, repo, d, trust, opts, reg)
		r.fill(s, err)
		r.Evidence = &res
	}
	if *out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return r.ExitCode
	}
	printVSAResult(os.Stdout, r)
	return r.ExitCode
}

func (r *vsaResult) fill(s *vsa.Summary, err error) {
	var ref *vsa.Refusal
	switch {
	case err == nil:
		r.Passed, r.Summary, r.ExitCode = true, s, policy.ExitAllowed
	case errors.As(err, &ref):
		r.Refusal = &vsaRefusal{Kind: ref.Kind, Reasons: ref.Reasons}
		r.ExitCode = ref.ExitCode()
	default:
		r.ExitCode, r.Error = policy.ExitOther, err.Error()
	}
}

func printVSAResult(w io.Writer, r vsaResult) {
	switch {
	case r.Passed:
		s := r.Summary
		fmt.Fprintf(w, "PASSED %s\n  digest:   %s\n  verifier: %s", r.Image, r.Digest, s.Verifier.ID)
		if v := s.Verifier.Version[vsa.VersionComponent]; v != "" {
			fmt.Fprintf(w, " (pullgate %s)", v)
		}
		fmt.Fprintf(w, "\n  verified: %s\n  resource: %s\n  policy:   %s %s\n", s.TimeVerified.UTC().Format(time.RFC3339), s.ResourceURI, s.Policy.URI, vsa.Digest(s.Policy.Digest))
		if len(s.VerifiedLevels) > 0 {
			fmt.Fprintf(w, "  checks:   %s\n", strings.Join(s.VerifiedLevels, " "))
		}
	case r.Refusal != nil:
		fmt.Fprintf(w, "REFUSED %s\n  digest: %s\n  kind:   %s\n", r.Image, r.Digest, r.Refusal.Kind)
		for _, s := range r.Refusal.Reasons {
			fmt.Fprintf(w, "  reason: %s\n", s)
		}
	default:
		fmt.Fprintf(w, "ERROR %s: %s\n", r.Image, r.Error)
	}
}

// vsaSigners are whom a VSA check accepts as signer: public keys (PEM
// files) and/or one keyless identity (certificate SAN and OIDC issuer,
// each exact or a regular expression, under a Sigstore trusted root); any
// one counts.
type vsaSigners struct {
	Keys                          []string
	Identity, Issuer, TrustedRoot string
	IdentityRE, IssuerRE          string
}

func (v vsaSigners) trust() (*verify.Trust, error) {
	keyless := v.Identity != "" || v.Issuer != "" || v.TrustedRoot != "" || v.IdentityRE != "" || v.IssuerRE != ""
	const together = "a keyless signer needs an identity, an OIDC issuer and a trusted root together (--certificate-identity or --certificate-identity-regexp, --certificate-oidc-issuer or --certificate-oidc-issuer-regexp, --trusted-root; in the verifier's configuration certificateIdentity or certificateIdentityRegExp, certificateOidcIssuer or certificateOidcIssuerRegExp, trustedRoot)"
	switch {
	case len(v.Keys) == 0 && !keyless:
		return nil, errors.New("give the VSA signer: --key, or --certificate-identity, --certificate-oidc-issuer and --trusted-root")
	case keyless && ((v.Identity == "") == (v.IdentityRE == "") || (v.Issuer == "") == (v.IssuerRE == "") || v.TrustedRoot == ""):
		return nil, errors.New(together + "; each of identity and issuer exact or a regexp, not both")
	}
	var spec verify.TrustSpec
	for _, k := range v.Keys {
		pem, err := os.ReadFile(k)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		spec.Keys = append(spec.Keys, verify.KeySpec{Name: k, PEM: pem})
	}
	if keyless {
		var err error
		if spec.TrustedRootJSON, err = os.ReadFile(v.TrustedRoot); err != nil {
			return nil, fmt.Errorf("trusted root: %w", err)
		}
		spec.Identities = []verify.IdentitySpec{{Name: v.Identity + v.IdentityRE, Issuer: v.Issuer, IssuerRegExp: v.IssuerRE, Subject: v.Identity, SubjectRegExp: v.IdentityRE}}
	}
	return verify.NewTrust(spec)
}

// verifierConfig is the containerd verifier's configuration file.
type verifierConfig struct {
	// Keys are the VSA public keys (PEM files; any one must have signed).
	Keys []string `yaml:"keys"`
	// CertificateIdentity and CertificateOIDCIssuer name a keyless VSA
	// signer (certificate SAN and OIDC issuer, exactly), under the Sigstore
	// TrustedRoot file (all three together; with keys, any one counts).
	CertificateIdentity   string `yaml:"certificateIdentity"`
	CertificateOIDCIssuer string `yaml:"certificateOidcIssuer"`
	TrustedRoot           string `yaml:"trustedRoot"`
	// CertificateIdentityRegExp and CertificateOIDCIssuerRegExp are RE2
	// regular expressions (unanchored) instead of the exact values.
	CertificateIdentityRegExp   string `yaml:"certificateIdentityRegExp"`
	CertificateOIDCIssuerRegExp string `yaml:"certificateOidcIssuerRegExp"`
	// VerifierID, when set, is the required verifier.id.
	VerifierID string `yaml:"verifierId"`
	// MaxAge is the oldest timeVerified accepted (Go duration; default
	// 168h, "0" for no limit).
	MaxAge string `yaml:"maxAge"`
	// AnyRepository accepts a VSA whose resourceUri names another
	// repository than the image's (default false: the same bytes let
	// through elsewhere do not count).
	AnyRepository bool `yaml:"anyRepository"`
	// PolicyDigest and PolicyURI, when set, are required of the VSA's
	// policy; RequireLevels must all be in its verifiedLevels.
	PolicyDigest  string   `yaml:"policyDigest"`
	PolicyURI     string   `yaml:"policyUri"`
	RequireLevels []string `yaml:"requireLevels"`
	// Timeout bounds one check (default 10s; keep it below containerd's
	// per_verifier_timeout).
	Timeout string `yaml:"timeout"`
	// Registries maps the registry host in an image name to where its VSAs
	// are looked up: a base URL with an optional repository prefix, e.g.
	// http://pullgate.internal:5000/registry.example (pullgate's path
	// form). Unlisted hosts are asked over HTTPS.
	Registries map[string]string `yaml:"registries"`
}

func loadVerifierConfig(path string) (*verifierConfig, *verify.Trust, vsa.CheckOptions, time.Duration, error) {
	var c verifierConfig
	var opts vsa.CheckOptions
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, opts, 0, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, nil, opts, 0, fmt.Errorf("%s: %w", path, err)
	}
	if len(c.Keys) == 0 && c.CertificateIdentity == "" && c.CertificateIdentityRegExp == "" {
		return nil, nil, opts, 0, fmt.Errorf("%s: keys: at least one VSA public key (or a keyless certificateIdentity) is required", path)
	}
	for i, k := range c.Keys {
		if !filepath.IsAbs(k) {
			c.Keys[i] = filepath.Join(filepath.Dir(path), k)
		}
	}
	if c.TrustedRoot != "" && !filepath.IsAbs(c.TrustedRoot) {
		c.TrustedRoot = filepath.Join(filepath.Dir(path), c.TrustedRoot)
	}
	trust, err := vsaSigners{Keys: c.Keys, Identity: c.CertificateIdentity, Issuer: c.CertificateOIDCIssuer, TrustedRoot: c.TrustedRoot,
		IdentityRE: c.CertificateIdentityRegExp, IssuerRE: c.CertificateOIDCIssuerRegExp}.trust()
	if err != nil {
		return nil, nil, opts, 0, fmt.Errorf("%s: %w", path, err)
	}
	if c.VerifierID == "" {
		return nil, nil, opts, 0, fmt.Errorf("%s: verifierId is required (the verifier.id of the pullgate instance whose VSAs count)", path)
	}
	opts.VerifierID, opts.PolicyURI, opts.Levels = c.VerifierID, c.PolicyURI, c.RequireLevels
	if c.PolicyDigest != "" {
		if opts.PolicyDigest, err = digest.Parse(c.PolicyDigest); err != nil {
			return nil, nil, opts, 0, fmt.Errorf("%s: policyDigest: %w", path, err)
		}
	}
	opts.MaxAge = defaultVSAMaxAge
	if c.MaxAge != "" {
		if opts.MaxAge, err = time.ParseDuration(c.MaxAge); err != nil || opts.MaxAge < 0 {
			return nil, nil, opts, 0, fmt.Errorf("%s: maxAge %q: want a Go duration such as 24h (0: no limit)", path, c.MaxAge)
		}
	}
	timeout := 10 * time.Second
	if c.Timeout != "" {
		if timeout, err = time.ParseDuration(c.Timeout); err != nil || timeout <= 0 {
			return nil, nil, opts, 0, fmt.Errorf("%s: timeout %q: want a positive Go duration such as 10s", path, c.Timeout)
		}
	}
	for host, base := range c.Registries {
		if _, _, err := registryBase(base); err != nil {
			return nil, nil, opts, 0, fmt.Errorf("%s: registries: %s: %w", path, host, err)
		}
	}
	return &c, trust, opts, timeout, nil
}

// registryBase splits a registries entry into a registry (with its
// scheme) and a repository prefix.
func registryBase(base string) (name.Registry, string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return name.Registry{}, "", fmt.Errorf("%q is not an http(s)://host[:port][/prefix] URL", base)
	}
	var nopts []name.Option
	if u.Scheme == "http" {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, nopts...)
	return reg, strings.Trim(u.Path, "/"), err
}

// verifierRepository is the repository the VSAs of an image named
// imageName (as containerd names it: host/repo[:tag][@digest]) are read
// from, after the registries mapping.
func verifierRepository(imageName string, c *verifierConfig) (name.Repository, bool, error) {
	n, ref, err := parseImageName(imageName)
	if err != nil {
		return name.Repository{}, false, err
	}
	repo := ref.Context()
	written, _, _ := strings.Cut(n, "/")
	for _, host := range []string{written, repo.RegistryStr()} {
		base, ok := c.Registries[host]
		if !ok {
			continue
		}
		reg, prefix, err := registryBase(base)
		if err != nil {
			return name.Repository{}, false, err
		}
		path := repo.RepositoryStr()
		if prefix != "" {
			path = prefix + "/" + path
		}
		var nopts []name.Option
		if reg.Scheme() == "http" {
			nopts = append(nopts, name.Insecure)
		}
		r, err := name.NewRepository(reg.RegistryStr()+"/"+path, nopts...)
		return r, reg.Scheme() == "http", err
	}
	return repo, false, nil
}

// vsaContainerdVerifier implements containerd's image-verifier binary API
// (containerd docs/image-verification.md): flags -name, -digest,
// -stdin-media-type (and -operation with verify_on_run), the descriptor on
// stdin, a reason on stdout, exit 0 to allow. Anything else (no VSA,
// refused, unreadable configuration, registry down) exits non-zero:
// containerd blocks the pull.
func vsaContainerdVerifier(args []string) int {
	fs := flag.NewFlagSet(verifierName, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, vsaUsage) }
	imageName := fs.String("name", "", "image reference containerd is pulling")
	dg := fs.String("digest", "", "resolved digest of the image")
	mediaType := fs.String("stdin-media-type", "", "media type of the JSON on stdin")
	_ = fs.String("operation", "", "pull or run (containerd's verify_on_run)")
	cfgPath := fs.String("config", "", "configuration file (default $"+verifierConfigEnv+", else "+defaultVerifierConfig+")")
	if err := fs.Parse(args); err != nil {
		// Never 0 (allow) on anything but a PASSED check: -h included.
		fmt.Printf("pullgate VSA: refused: %v\n", err)
		return policy.ExitConfig
	}
	say := func(code int, format string, a ...any) int {
		fmt.Printf("pullgate VSA: "+format+"\n", a...)
		return code
	}
	if fs.NArg() != 0 || *imageName == "" || *dg == "" {
		return say(policy.ExitConfig, "refused: called without -name and -digest")
	}
	subject, err := digest.Parse(*dg)
	if err != nil {
		return say(policy.ExitConfig, "refused: -digest %q: %v", *dg, err)
	}
	// The descriptor on stdin must be about the same digest.
	in, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil {
		return say(policy.ExitOther, "refused: reading stdin: %v", err)
	}
	if *mediaType == ocispec.MediaTypeDescriptor {
		var desc ocispec.Descriptor
		if err := json.Unmarshal(in, &desc); err != nil {
			return say(policy.ExitMalformed, "refused: descriptor on stdin: %v", err)
		}
		if desc.Digest != subject {
			return say(policy.ExitMismatch, "refused: descriptor on stdin names %s, -digest %s", desc.Digest, subject)
		}
	}
	path := *cfgPath
	if path == "" {
		path = os.Getenv(verifierConfigEnv)
	}
	if path == "" {
		path = defaultVerifierConfig
	}
	cfg, trust, opts, timeout, err := loadVerifierConfig(path)
	if err != nil {
		return say(policy.ExitConfig, "refused: configuration: %v", err)
	}
	repo, insecure, err := verifierRepository(*imageName, cfg)
	if err != nil {
		return say(policy.ExitConfig, "refused: %v", err)
	}
	if !cfg.AnyRepository {
		// The image's own repository path, whatever registry serves the VSAs.
		opts.Repository, err = imageRepository(*imageName)
		if err != nil {
			return say(policy.ExitConfig, "refused: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, _, err := vsa.CheckRegistry(ctx, repo, subject, trust, opts, vsa.Registry{Keychain: authn.DefaultKeychain, Insecure: insecure})
	var r vsaResult
	r.fill(s, err)
	switch {
	case r.Passed:
		return say(0, "%s@%s PASSED, verified by %s at %s", *imageName, subject, s.Verifier.ID, s.TimeVerified.UTC().Format(time.RFC3339))
	case r.Refusal != nil:
		return say(r.ExitCode, "%s@%s refused (%s, looked up in %s): %s", *imageName, subject, r.Refusal.Kind, repo, strings.Join(r.Refusal.Reasons, "; "))
	}
	return say(r.ExitCode, "%s@%s refused: %s", *imageName, subject, r.Error)
}

// defaultVSAMaxAge is how old a VSA may be unless told otherwise: a
// verification a week old says little about today's policy and keys.
const defaultVSAMaxAge = 7 * 24 * time.Hour

// imageRepository is the repository path of an image name as containerd
// gives it (host/repo[:tag][@digest]), without its registry.
func imageRepository(imageName string) (string, error) {
	_, ref, err := parseImageName(imageName)
	if err != nil {
		return "", err
	}
	return ref.Context().RepositoryStr(), nil
}

// parseImageName reads an image name as containerd gives it
// (host/repo[:tag][@digest]): the name without its digest, as a tag.
func parseImageName(imageName string) (string, name.Tag, error) {
	n, _, _ := strings.Cut(imageName, "@")
	ref, err := name.NewTag(n)
	if err != nil {
		return "", name.Tag{}, fmt.Errorf("image name %q: %w", imageName, err)
	}
	return n, ref, nil
}
