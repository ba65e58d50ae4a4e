package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pullgate/pullgate/cmd/pullgate/nodecheck"
	"github.com/pullgate/pullgate/proxy/config"
)

const nodeUsage = `usage: pullgate node check --pullgate HOST[:PORT] (--registry NAME ... | --config pullgate.yaml)
                          [--root DIR] [-o text|json]

Reads this node's registry configuration (or a copy of it under --root) and
reports every route by which a pull reaches a registry without pullgate, each
with its file, line and the line to write instead:

  containerd  /etc/containerd/config.toml (config_path, legacy registry.mirrors)
              and certs.d/<registry>/hosts.toml, certs.d/_default/hosts.toml
  CRI-O, podman, skopeo
              /etc/containers/registries.conf, registries.conf.d/*.conf (with the
              short-name [aliases]), /var/cache/containers/short-name-aliases.conf,
              /etc/containers/policy.json
  Docker      /etc/docker/daemon.json (registry-mirrors)

  --pullgate    pullgate's address as the node uses it (10.96.100.50:5000)
  --registry    a registry that must go through pullgate (repeatable)
  --config      take the registries from the upstreams of this pullgate config
  --root        prefix for every path read (default /)
  --containerd-config, --certs-d, --registries-conf, --registries-d,
  --short-name-cache, --policy-json, --daemon-json
                read this file or directory instead of the default ("none" skips it)
  -o            text (default) or json

Exit codes: 0 no finding, 1 a route around pullgate, 2 usage error,
3 an input cannot be read, 4 warnings only (for example two decisions per pull).
`

// Exit codes of "pullgate node check".
const (
	nodeExitFindings   = 1
	nodeExitUsage      = 2
	nodeExitUnreadable = 3
	nodeExitWarnings   = 4
)

func cmdNode(args []string) int {
	if len(args) == 0 || args[0] != "check" {
		if isHelp(args) {
			fmt.Print(nodeUsage)
			return 0
		}
		fmt.Fprint(os.Stderr, nodeUsage)
		return nodeExitUsage
	}
	return cmdNodeCheck(args[1:], os.Stdout, os.Stderr)
}

func cmdNodeCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("node check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var regs multiFlag
	pg := fs.String("pullgate", "", "pullgate HOST[:PORT]")
	fs.Var(&regs, "registry", "registry that must go through pullgate")
	cfgPath := fs.String("config", "", "pullgate configuration")
	root := fs.String("root", "/", "prefix of every path")
	out := fs.String("o", "text", "text or json")
	fs.StringVar(out, "output", "text", "text or json")
	paths := nodecheck.NodePaths()
	overrides := map[string]*string{
		"containerd-config": &paths.ContainerdConfig,
		"certs-d":           &paths.CertsDir,
		"registries-conf":   &paths.RegistriesConf,
		"registries-d":      &paths.RegistriesConfDir,
		"short-name-cache":  &paths.ShortNameCache,
		"policy-json":       &paths.PolicyJSON,
		"daemon-json":       &paths.DaemonJSON,
	}
	for name, p := range overrides {
		fs.StringVar(p, name, *p, "path")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, nodeUsage)
			return 0
		}
		fmt.Fprintf(stderr, "pullgate node check: %v\n\n%s", err, nodeUsage)
		return nodeExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pullgate node check: unexpected argument %q\n\n%s", fs.Arg(0), nodeUsage)
		return nodeExitUsage
	}
	if *out != "text" && *out != "json" {
		fmt.Fprintf(stderr, "pullgate node check: -o %q: use text or json\n", *out)
		return nodeExitUsage
	}
	if *pg == "" {
		fmt.Fprintf(stderr, "pullgate node check: --pullgate is required\n\n%s", nodeUsage)
		return nodeExitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, p := range overrides {
		switch {
		case *p == "none":
			*p = ""
		case set[name] && (*root == "/" || *root == "") && !filepath.IsAbs(*p):
			// a relative path on the command line is relative to the working directory
			abs, err := filepath.Abs(*p)
			if err != nil {
				fmt.Fprintf(stderr, "pullgate node check: --%s: %v\n", name, err)
				return nodeExitUsage
			}
			*p = abs
		}
	}
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "pullgate node check: %v\n", err)
			return nodeExitUnreadable
		}
		for _, u := range cfg.Upstreams {
			regs = append(regs, u.Name)
		}
	}
	if len(regs) == 0 {
		fmt.Fprintf(stderr, "pullgate node check: give --registry or --config\n\n%s", nodeUsage)
		return nodeExitUsage
	}
	rep, err := nodecheck.Check(nodecheck.Options{Root: *root, Pullgate: *pg, Registries: dedup(regs), Paths: paths})
	if err != nil {
		fmt.Fprintf(stderr, "pullgate node check: %v\n", err)
		return nodeExitUnreadable
	}
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printNodeReport(stdout, rep)
	}
	switch {
	case rep.Errors() > 0:
		return nodeExitFindings
	case len(rep.Findings) > 0:
		return nodeExitWarnings
	}
	return 0
}

func dedup(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func printNodeReport(w io.Writer, rep *nodecheck.Report) {
	for _, f := range rep.Findings {
		loc := f.File
		if f.Line > 0 {
			loc = fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		fmt.Fprintf(w, "%s %s [%s]\n  %s\n  fix: %s\n", strings.ToUpper(f.Severity), loc, f.Client, f.Route, f.Fix)
	}
	fmt.Fprintf(w, "checked %d paths for %s through %s: ", len(rep.Checked), strings.Join(rep.Registries, ", "), rep.Pullgate)
	if n := rep.Errors(); n > 0 {
		fmt.Fprintf(w, "FAIL, %d routes around pullgate, %d warnings\n", n, len(rep.Findings)-n)
	} else if len(rep.Findings) > 0 {
		fmt.Fprintf(w, "%d warnings\n", len(rep.Findings))
	} else {
		fmt.Fprintln(w, "PASS")
	}
}
