package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/config"
)

const auditUsage = `usage: pullgate audit [summary] [--file audit.jsonl | --config pullgate.yaml]
                      [--since 1h] [--until TIME] [--decision allow|deny|waived|wouldDeny]
                      [--repo 'glob'] [--rule NAME] [--kind manifest|blob|referrers|tags]
                      [--limit N] [-f] [-o table|json]

Reads the audit log (the current file and its rotated files, oldest first) and
prints the decisions the filters select; "pullgate audit summary" counts them by
decision, rule, kind, repository and denial reason instead. With -f (--follow)
it prints the last matching decisions (--limit, default 10), then every new
one as pullgate writes it, across rotations, until interrupted; the table is
then one decision per line.

  --file     audit log (default: audit.path of --config)
  --config   pullgate configuration whose audit.path to read (default: the
             first that exists of ./pullgate.yaml, as "pullgate serve" reads,
             /etc/pullgate/pullgate.yaml, as the container image runs it, and
             /etc/pullgate/config/pullgate.yaml, as the Kubernetes manifests
             mount it; with none of them, ./audit.jsonl)
  --since    a duration back from now (30m, 1h, 7d, 2w) or a time (2026-11-25T10:00:00Z, 2026-11-25)
  --until    same forms; events before it
  --repo     repository glob on <upstream>/<repository>, policy syntax (docker.io/library/**)
  --limit    only the last N matching decisions
  --top      summary table: rows per table (default 25, 0 for all)
  -o         table (default) or json (JSON lines for decisions, one object for summary)

Exit codes: 0 ok, 1 the log cannot be read, 2 usage or configuration error.
`

// defaultConfigPaths are where "pullgate audit" looks for the server's
// configuration when neither --file nor --config is given: the default of
// "pullgate serve --config", the container image's CMD, and the path the
// Kubernetes manifests mount.
var defaultConfigPaths = []string{"pullgate.yaml", "/etc/pullgate/pullgate.yaml", "/etc/pullgate/config/pullgate.yaml"}

// findConfig returns the first of paths that exists, or "".
func findConfig(paths []string) string {
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

func cmdAudit(args []string) int {
	summary := false
	if len(args) > 0 && args[0] == "summary" {
		summary, args = true, args[1:]
	}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("file", "", "audit log file")
	cfgPath := fs.String("config", "", "pullgate configuration (for audit.path)")
	since := fs.String("since", "", "duration or time")
	until := fs.String("until", "", "duration or time")
	decision := fs.String("decision", "", "allow, deny, waived or wouldDeny")
	repo := fs.String("repo", "", "repository glob")
	rule := fs.String("rule", "", "rule name")
	kind := fs.String("kind", "", "manifest, blob, referrers or tags")
	limit := fs.Int("limit", 0, "last N matching decisions")
	top := fs.Int("top", 25, "summary rows per table")
	follow := fs.Bool("f", false, "follow the log")
	fs.BoolVar(follow, "follow", false, "follow the log")
	out := fs.String("o", "table", "table or json")
	fs.StringVar(out, "output", "table", "table or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(auditUsage)
			return 0
		}
		fmt.Fprintf(os.Stderr, "pullgate audit: %v\n\n%s", err, auditUsage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "pullgate audit: unexpected argument %q\n\n%s", fs.Arg(0), auditUsage)
		return 2
	}
	if *out != "table" && *out != "json" {
		fmt.Fprintf(os.Stderr, "pullgate audit: -o %q: use table or json\n", *out)
		return 2
	}
	path := *file
	if path == "" && *cfgPath == "" {
		*cfgPath = findConfig(defaultConfigPaths)
	}
	switch {
	case path != "" && *cfgPath != "":
		fmt.Fprintln(os.Stderr, "pullgate audit: use --file or --config, not both")
		return 2
	case *cfgPath != "":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pullgate audit: config: %v\n", err)
			return 2
		}
		path = cfg.Resolve(cfg.Audit.Path)
		if path == "" {
			fmt.Fprintf(os.Stderr, "pullgate audit: %s has no audit log (audit.path is not set); set audit.path, or use --file\n", *cfgPath)
			return 2
		}
		if audit.IsStdout(path) {
			fmt.Fprintf(os.Stderr, "pullgate audit: %s writes the audit log to standard output (audit.path %q): query it where the logs are collected, or use --file\n", *cfgPath, cfg.Audit.Path)
			return 2
		}
	case path == "":
		path = "audit.jsonl"
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "pullgate audit: no audit log: none of %v exists, and no ./audit.jsonl; use --config or --file\n", defaultConfigPaths)
			return 2
		}
	}
	now := time.Now()
	q := audit.Query{Decision: *decision, Repo: *repo, Rule: *rule, Kind: *kind, Limit: *limit}
	var err error
	if q.Since, err = audit.ParseSince(*since, now); err != nil {
		fmt.Fprintf(os.Stderr, "pullgate audit: %v\n", err)
		return 2
	}
	if q.Until, err = audit.ParseSince(*until, now); err != nil {
		fmt.Fprintf(os.Stderr, "pullgate audit: until: %v\n", err)
		return 2
	}
	if _, err := q.Compile(); err != nil {
		fmt.Fprintf(os.Stderr, "pullgate audit: %v\n", err)
		return 2
	}

	if *follow {
		if summary || *until != "" {
			fmt.Fprintln(os.Stderr, "pullgate audit: --follow prints decisions as they come: not with summary or --until")
			return 2
		}
		n := *limit
		if n == 0 {
			n = 10
		}
		q.Limit = 0
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		emit := audit.WriteLines(os.Stdout)
		if *out == "json" {
			emit = audit.WriteJSONLines(os.Stdout)
		}
		if err := audit.Tail(ctx, path, q, n, 250*time.Millisecond, emit); err != nil {
			fmt.Fprintf(os.Stderr, "pullgate audit: %v\n", err)
			return 1
		}
		return 0
	}

	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	var malformed int
	if summary {
		var s audit.Summary
		s, malformed, err = audit.Summarize(path, q)
		if err == nil {
			if *out == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				err = enc.Encode(s)
			} else {
				err = audit.WriteSummaryTable(w, s, *top)
			}
		}
	} else {
		emit := audit.WriteJSONLines(w)
		var tw *audit.TableWriter
		if *out == "table" {
			tw = audit.NewTableWriter(w)
			emit = tw.Write
		}
		n := 0
		malformed, err = audit.Scan(path, q, func(e audit.Event) error { n++; return emit(e) })
		if tw != nil {
			if ferr := tw.Flush(); err == nil {
				err = ferr
			}
			if err == nil && n == 0 {
				fmt.Fprintln(os.Stderr, "no matching decisions")
			}
		}
	}
	if malformed > 0 {
		fmt.Fprintf(os.Stderr, "pullgate audit: skipped %d malformed line(s) in %s\n", malformed, path)
	}
	if err != nil {
		w.Flush()
		fmt.Fprintf(os.Stderr, "pullgate audit: %v\n", err)
		return 1
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "pullgate audit: %v\n", err)
		return 1
	}
	return 0
}
