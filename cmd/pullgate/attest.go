package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/release"
)

const attestUsage = `usage:
  pullgate attest create --type prompt|corpus|eval|route|slo|mbom --config <file.yaml> [--subject sha256:<hex>]... [--time RFC3339] [-o statement.json]
  pullgate attest sign --key key.pem [--password-env VAR] [--id-token-file F --fulcio URL [--rekor URL] [--tsa URL]] [--in statement.json] [-o bundle.json]
  pullgate attest push <image-ref> <bundle.json>... [--plain-http]
  pullgate attest check-files --bundle bundle.json --subject sha256:<hex> (--key key.pub | --identity-issuer URL --identity SUBJECT --trusted-root trusted_root.json) [--dir .] [-o text|json]

create writes a deterministic in-toto Statement v1 (time from --time, the config's created, or
SOURCE_DATE_EPOCH); sign wraps it in a DSSE envelope inside a Sigstore bundle v0.3; push attaches
bundles to an OCI artifact as referrers in cosign v3's layout; check-files verifies a bundle against
the given trust and re-hashes, under --dir, every file its statement recorded (an MBOM's files are
relative to the model directory): exit 0 when all are unchanged, 12 when a file was edited, is
missing or the statement names another subject, 11 when no trusted signer signed it, 14 when it is
malformed, 10 when it holds no attestation. See docs/attestations.md.
`

func cmdAttest(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, attestUsage)
		return 2
	}
	switch args[0] {
	case "create":
		return attestCreate(args[1:])
	case "sign":
		return attestSign(args[1:])
	case "push":
		return attestPush(args[1:])
	case "check-files":
		return attestCheckFiles(args[1:])
	}
	fmt.Fprint(os.Stderr, attestUsage)
	return 2
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func attestCreate(args []string) int {
	fs := flag.NewFlagSet("attest create", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, attestUsage) }
	kind := fs.String("type", "", "attestation kind")
	cfg := fs.String("config", "", "config file naming the files to attest")
	out := fs.String("o", "-", "output file (- for stdout)")
	at := fs.String("time", "", "creation time, RFC 3339 (overrides the config and SOURCE_DATE_EPOCH)")
	var subjects multiFlag
	fs.Var(&subjects, "subject", "OCI artifact digest the statement binds to (repeatable)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *kind == "" || *cfg == "" {
		if err != nil {
			return parseExit(err)
		}
		fs.Usage()
		return 2
	}
	k, err := attest.ParseKind(*kind)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate attest create: %v\n", err)
		return 2
	}
	opts := attest.CreateOptions{Subjects: subjects}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pullgate attest create: --time: %v\n", err)
			return 2
		}
		opts.Time = t
	}
	stmt, err := attest.Create(k, *cfg, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate attest create: %v\n", err)
		return 1
	}
	return writeOut(*out, stmt)
}

func attestSign(args []string) int {
	fs := flag.NewFlagSet("attest sign", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, attestUsage) }
	key := fs.String("key", "", "PEM private key (PKCS#8, SEC 1, PKCS#1, or cosign's encrypted key)")
	pwEnv := fs.String("password-env", "COSIGN_PASSWORD", "environment variable holding the key's password")
	var keyless keylessFlags
	addKeylessFlags(fs, &keyless)
	in := fs.String("in", "-", "statement file (- for stdin)")
	out := fs.String("o", "-", "bundle output file (- for stdout)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || (*key == "") == (keyless.idTokenFile == "") {
		if err != nil {
			return parseExit(err)
		}
		fs.Usage()
		return 2
	}
	stmt, err := readIn(*in)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate attest sign: %v\n", err)
		return 2
	}
	opts := attest.SignOptions{KeyPath: *key}
	if pw := os.Getenv(*pwEnv); pw != "" {
		opts.Password = []byte(pw)
	}
	if err := keyless.apply(&opts); err != nil {
		fmt.Fprintf(os.Stderr, "pullgate attest sign: %v\n", err)
		return 2
	}
	b, err := attest.Sign(context.Background(), stmt, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate attest sign: %v\n", err)
		return 1
	}
	return writeOut(*out, b)
}

func attestPush(args []string) int {
	fs := flag.NewFlagSet("attest push", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, attestUsage) }
	plain := fs.Bool("plain-http", false, "talk plain HTTP to the registry")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err)
	}
	if len(pos) < 2 {
		fs.Usage()
		return 2
	}
	var bundles [][]byte
	for _, p := range pos[1:] {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pullgate attest push: %v\n", err)
			return 2
		}
		bundles = append(bundles, b)
	}
	pushed, err := attest.Push(context.Background(), pos[0], bundles, attest.PushOptions{Keychain: authn.DefaultKeychain, Insecure: *plain})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate attest push: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(pushed)
	return 0
}

func attestCheckFiles(args []string) int {
	fs := flag.NewFlagSet("attest check-files", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, attestUsage) }
	bundlePath := fs.String("bundle", "", "Sigstore bundle (DSSE) to verify")
	subject := fs.String("subject", "", "digest the statement must bind to (sha256:<hex>)")
	key := fs.String("key", "", "trusted signer's public key (PEM)")
	issuer := fs.String("identity-issuer", "", "keyless: OIDC issuer of the trusted signer")
	identity := fs.String("identity", "", "keyless: certificate identity (subject) of the trusted signer")
	root := fs.String("trusted-root", "", "keyless: Sigstore trusted_root.json")
	dir := fs.String("dir", ".", "directory the recorded paths are relative to")
	out := fs.String("o", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	keyless := *issuer != "" || *identity != "" || *root != ""
	if fs.NArg() != 0 || *bundlePath == "" || *subject == "" || (*key == "") == !keyless ||
		keyless && (*issuer == "" || *identity == "" || *root == "") || *out != "text" && *out != "json" {
		fs.Usage()
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "pullgate attest check-files: "+format+"\n", a...)
		return 2
	}
	b, err := os.ReadFile(*bundlePath)
	if err != nil {
		return fail("%v", err)
	}
	var spec verify.TrustSpec
	if *key != "" {
		pem, err := os.ReadFile(*key)
		if err != nil {
			return fail("--key: %v", err)
		}
		spec.Keys = []verify.KeySpec{{Name: filepath.Base(*key), PEM: pem}}
	} else {
		if spec.TrustedRootJSON, err = os.ReadFile(*root); err != nil {
			return fail("--trusted-root: %v", err)
		}
		spec.Identities = []verify.IdentitySpec{{Name: *identity, Issuer: *issuer, Subject: *identity}}
	}
	trust, err := verify.NewTrust(spec)
	if err != nil {
		return fail("%v", err)
	}
	res := verify.VerifyBundle(context.Background(), b, digest.Digest(*subject), trust, verify.CollectOptions{})
	all := release.Report{Name: "files", OK: len(res.Attestations) > 0}
	for _, a := range res.Attestations {
		r := release.CheckFiles(a, os.DirFS(*dir))
		all.OK = all.OK && r.OK
		all.Checks = append(all.Checks, r.Checks...)
	}
	code := policy.ReleaseExitCode(all)
	if len(res.Attestations) == 0 {
		code = policy.EvidenceExitCode(res.Failures)
	}
	if *out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"verification": res, "files": all, "exitCode": code})
		return code
	}
	for _, f := range res.Failures {
		fmt.Printf("FAIL  bundle: %s (%s)\n", f.Reason, f.Kind)
	}
	for _, a := range res.Attestations {
		fmt.Printf("ok    bundle: %s statement %s signed by %s\n", a.PredicateType, a.Statement, a.Signer)
	}
	for _, c := range all.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Printf("%s  %s\n", mark, c.Reason)
	}
	if len(res.Attestations) == 0 && len(res.Failures) == 0 {
		fmt.Println("FAIL  bundle: no attestation in it")
	}
	return code
}

func readIn(p string) ([]byte, error) {
	if p == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
	}
	return os.ReadFile(p)
}

func writeOut(p string, b []byte) int {
	if p == "-" {
		os.Stdout.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			os.Stdout.Write([]byte("\n"))
		}
		return 0
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
