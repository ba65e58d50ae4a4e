// Command pullgate is an OCI registry pull-through proxy that serves only
// what it verified. Subcommands: serve, demo, verify, policy, inspect,
// attest, audit, node, vsa, promote, version.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `pullgate: an OCI pull-through proxy that serves only what it verified

Usage:
  pullgate serve   --config pullgate.yaml [flags]   run the proxy
  pullgate demo                                     offline demo: upstream, proxy, allowed and denied pulls
  pullgate verify  <image-ref> --policy policy.yaml [--config pullgate.yaml] [-o json]
                                                    decide one image with the proxy's engine
  pullgate inspect <file-or-image-ref> [--policy p.yaml --rule NAME]
                                                    run the content validators on a file or an image's layers
  pullgate attest  create|sign|push ...             LLM release attestations (see docs/attestations.md)
  pullgate audit   [summary] [--since 1h] [--decision deny] [--repo GLOB] [--rule R] [-o json|table]
                                                    query the decision log
  pullgate node    check --pullgate HOST[:PORT] (--registry NAME... | --config pullgate.yaml) [--root DIR] [-o json]
                                                    report the routes by which a node's pulls go around pullgate
  pullgate vsa     check <image-ref> --key vsa.pub [--verifier-id URI] [--max-age 24h] [-o json]
                                                    require a pullgate verification summary (VSA) for an image
  pullgate promote <src-ref> <dst-ref> --policy policy.yaml --key signing.key [--copy-evidence] [-o json]
                                                    copy an image the gate allows to another registry, signed, with a VSA
  pullgate policy  lint <policy.yaml>               check a policy file
  pullgate policy  test <dir>                       run offline policy tests (fixtures with expected decisions)
  pullgate version                                  print the version

Run "pullgate <command> -h" for a command's flags.
`

func main() {
	// Run as containerd's image verifier through a symlink of that name
	// (containerd passes only its own flags).
	if filepath.Base(os.Args[0]) == verifierName {
		os.Exit(vsaContainerdVerifier(os.Args[1:]))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(rest)
	case "demo":
		return cmdDemo(rest)
	case "policy":
		return cmdPolicy(rest)
	case "verify":
		return cmdVerify(rest)
	case "inspect":
		return cmdInspect(rest)
	case "attest":
		return cmdAttest(rest)
	case "audit":
		return cmdAudit(rest)
	case "node":
		return cmdNode(rest)
	case "vsa":
		return cmdVSA(rest)
	case "promote":
		return cmdPromote(rest)
	case "version", "--version":
		fmt.Println("pullgate", version)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "pullgate: unknown command %q\n\n%s", cmd, usage)
	return 2
}
