package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/pullgate/pullgate/verify/attest"
)

const attestUsage = `usage:
  pullgate attest create --type prompt|corpus|eval|route|slo|mbom --config <file.yaml> [--subject sha256:<hex>]... [--time RFC3339] [-o statement.json]
  pullgate attest sign --key key.pem [--password-env VAR] [--id-token-file F --fulcio URL [--rekor URL] [--tsa URL]] [--in statement.json] [-o bundle.json]
  pullgate attest push <image-ref> <bundle.json>... [--plain-http]

create writes a deterministic in-toto Statement v1 (time from --time, the config's created, or
SOURCE_DATE_EPOCH); sign wraps it in a DSSE envelope inside a Sigstore bundle v0.3; push attaches
bundles to an OCI artifact as referrers in cosign v3's layout. See docs/attestations.md.
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
	idTokenFile := fs.String("id-token-file", "", "OIDC identity token for keyless signing")
	fulcio := fs.String("fulcio", "", "Fulcio URL (keyless)")
	rekor := fs.String("rekor", "", "Rekor URL to record the signature in")
	tsa := fs.String("tsa", "", "RFC 3161 timestamp authority URL")
	in := fs.String("in", "-", "statement file (- for stdin)")
	out := fs.String("o", "-", "bundle output file (- for stdout)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || (*key == "") == (*idTokenFile == "") {
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
	opts := attest.SignOptions{KeyPath: *key, RekorURL: *rekor, TSAURL: *tsa, FulcioURL: *fulcio}
	if pw := os.Getenv(*pwEnv); pw != "" {
		opts.Password = []byte(pw)
	}
	if *idTokenFile != "" {
		tok, err := os.ReadFile(*idTokenFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pullgate attest sign: %v\n", err)
			return 2
		}
		opts.IDToken = strings.TrimSpace(string(tok))
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
