package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/engine"
)

const verifyUsage = `usage: pullgate verify <image-ref> --policy policy.yaml [--config pullgate.yaml] [-o text|json] [--plain-http]

<image-ref> is <upstream-name>/<repo>:<tag> or @<digest> with --config (an upstream from the
config file, with its credentials), or <registry-host>/<repo>:<tag> without it.

Exit codes: 0 allowed, 10 no evidence found, 11 signature invalid or signer untrusted,
12 digest or subject mismatch (tamper), 13 requirements not met, 14 malformed evidence,
2 usage or configuration error, 1 any other failure.
`

func cmdVerify(args []string) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, verifyUsage) }
	policyPath := fs.String("policy", "", "policy file (required)")
	cfgPath := fs.String("config", "", "pullgate configuration (for upstream names and credentials)")
	out := fs.String("o", "text", "output: text or json")
	plain := fs.Bool("plain-http", false, "without --config: talk plain HTTP to the registry")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err)
	}
	if len(pos) != 1 || *policyPath == "" || (*out != "text" && *out != "json") {
		fmt.Fprint(os.Stderr, verifyUsage)
		return 2
	}
	ref := pos[0]
	if ref == "" {
		fmt.Fprint(os.Stderr, verifyUsage)
		return 2
	}
	upName, repo, tag, err := splitImageRef(ref)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate verify: %v\n", err)
		return 2
	}
	eng, closeEng, code := decisionEngine("verify", *cfgPath, *policyPath, upName, *plain)
	if code != 0 {
		return code
	}
	defer closeEng()
	ctx := context.Background()
	sub, err := eng.NewSubject(upName, repo, tag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate verify: %s: %v\n", ref, err)
		return 2
	}
	d, err := eng.Decide(ctx, sub)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate verify: %s: %v\n", ref, err)
		return policy.ExitOther
	}
	if *out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(d)
	} else {
		printDecision(os.Stdout, d)
	}
	if d.Allowed && !d.WouldDeny {
		return policy.ExitAllowed
	}
	if d.ExitCode == 0 {
		return policy.ExitOther
	}
	return d.ExitCode
}

// decisionEngine opens the proxy's engine over a temporary store to decide
// (and, for promote, fetch through) images of upstream upName: with a
// configuration file, its upstreams and credentials; without, upName as a
// registry host (HTTPS, or HTTP with plain). code is non-zero (the exit
// code, after a message on stderr naming cmd) when it cannot. closeEng
// closes the engine and removes the store.
func decisionEngine(cmd, cfgPath, policyPath, upName string, plain bool) (eng *engine.Engine, closeEng func(), code int) {
	tmp, err := os.MkdirTemp("", "pullgate-"+cmd+"-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return nil, nil, 1
	}
	fail := func(code int, format string, a ...any) (*engine.Engine, func(), int) {
		fmt.Fprintf(os.Stderr, "pullgate "+cmd+": "+format+"\n", a...)
		os.RemoveAll(tmp)
		return nil, nil, code
	}
	var cfg *config.Config
	if cfgPath != "" {
		cfg, err = config.Load(cfgPath)
		if err != nil {
			return fail(2, "config: %v", err)
		}
	} else {
		scheme := "https"
		if plain {
			scheme = "http"
		}
		cfg, err = config.Parse([]byte(fmt.Sprintf("upstreams: [{name: %q, url: %q}]\npolicy: %q\n", upName, scheme+"://"+upName, policyPath)))
		if err != nil {
			return fail(2, "%v", err)
		}
	}
	abs, _ := filepath.Abs(policyPath)
	cfg.Policy = abs
	cfg.Storage = config.Storage{Path: filepath.Join(tmp, "store")}
	cfg.Audit.Path = ""
	if _, ok := cfg.Upstream(upName); !ok {
		return fail(2, "upstream %q is not in the configuration", upName)
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	st, err := store.OpenFilesystem(ctx, cfg.Storage.Path, store.Options{Log: log})
	if err != nil {
		return fail(2, "storage: %v", err)
	}
	eng, err = engine.New(ctx, cfg, st, log, engine.Options{})
	if err != nil {
		st.Close()
		return fail(2, "%v", err)
	}
	return eng, func() {
		eng.Close()
		st.Close()
		os.RemoveAll(tmp)
	}, 0
}

// splitImageRef splits "<host>/<repo>[:tag|@digest]".
func splitImageRef(ref string) (host, repo, tag string, err error) {
	host, rest, ok := strings.Cut(ref, "/")
	if !ok || rest == "" {
		return "", "", "", fmt.Errorf("image reference %q: want <upstream-or-registry>/<repository>:<tag> or @<digest>", ref)
	}
	if i := strings.Index(rest, "@"); i >= 0 {
		return host, rest[:i], rest[i+1:], nil
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i:], "/") {
		return host, rest[:i], rest[i+1:], nil
	}
	return host, rest, "latest", nil
}

func printDecision(w io.Writer, d engine.Decision) {
	verdict := "DENIED"
	switch {
	case d.Allowed && d.WouldDeny:
		verdict = "ALLOWED (audit mode: would deny)"
	case d.Allowed && len(d.Waivers) > 0:
		verdict = "WAIVED (by exception " + strings.Join(d.Waivers, ", ") + ", until " + d.WaivedUntil.UTC().Format(time.RFC3339) + ")"
	case d.Allowed:
		verdict = "ALLOWED"
	}
	fmt.Fprintf(w, "%s %s@%s\n", verdict, d.Repository, d.Reference)
	if d.Digest != "" {
		fmt.Fprintf(w, "  digest:   %s\n", d.Digest)
	}
	fmt.Fprintf(w, "  rule:     %s\n  revision: %s\n", orNone(d.Rule), d.Revision)
	for _, c := range d.Checks {
		mark := "FAIL"
		if c.Passed {
			mark = "ok  "
		}
		fmt.Fprintf(w, "  [%s] %s: %s\n", mark, c.Name, c.Detail)
		for _, e := range c.Evidence {
			fmt.Fprintf(w, "         evidence %s\n", e)
		}
	}
	for _, s := range d.Signals {
		fmt.Fprintf(w, "  signal:   %s\n", signalLine(s))
	}
	for _, r := range d.Reasons {
		fmt.Fprintf(w, "  reason: %s\n", r)
	}
}

// signalLine says what one provider answered: "vuln: done, verdict clean,
// 0 findings (pullgate-signal-vuln 1.0, database 2026-12-01), 12.3 ms".
func signalLine(s audit.Signal) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", s.Provider, s.Status)
	if s.Error != "" {
		fmt.Fprintf(&b, " (%s)", s.Error)
	}
	if s.Verdict != "" {
		fmt.Fprintf(&b, ", verdict %s", s.Verdict)
	}
	if s.Status == "done" {
		fmt.Fprintf(&b, ", %d findings", s.Findings)
	}
	if s.Version != "" {
		fmt.Fprintf(&b, " (version %s", s.Version)
		if s.DBVersion != "" {
			fmt.Fprintf(&b, ", database %s", s.DBVersion)
		}
		b.WriteString(")")
	}
	if s.Signed > 0 {
		fmt.Fprintf(&b, ", %d signed statements verified", s.Signed)
	}
	if s.Cached {
		b.WriteString(", cached")
	} else {
		fmt.Fprintf(&b, ", %.1f ms", s.LatencyMS)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
