package main

import (
	"fmt"
	"os"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/policy/policytest"
)

func cmdPolicy(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: pullgate policy lint <policy.yaml> | pullgate policy test <dir>")
		return 2
	}
	switch args[0] {
	case "test":
		if isHelp(args[1:]) {
			fmt.Println("usage: pullgate policy test <dir-or-file>\n\nRuns policy test cases (YAML) against the policy they name; exit 0 when all pass, 1 when any fails, 2 on an error. See docs/policy.md.")
			return 0
		}
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: pullgate policy test <dir-or-file>")
			return 2
		}
		failed, err := policytest.Run(args[1], os.Stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pullgate policy test: %v\n", err)
			return 2
		}
		if failed > 0 {
			return 1
		}
		return 0
	case "lint":
		if isHelp(args[1:]) {
			fmt.Println("usage: pullgate policy lint <policy.yaml>\n\nChecks a policy file and prints each problem as file:line:col with a fix; exit 0 when clean (warnings only), 1 with problems.")
			return 0
		}
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: pullgate policy lint <policy.yaml>")
			return 2
		}
		diags := policy.Lint(args[1])
		for _, d := range diags {
			fmt.Println(d.String())
		}
		if policy.HasErrors(diags) {
			fmt.Fprintf(os.Stderr, "%d problem(s) in %s\n", len(diags), args[1])
			return 1
		}
		fmt.Printf("%s: ok\n", args[1])
		return 0
	}
	fmt.Fprintf(os.Stderr, "pullgate policy: unknown subcommand %q\n", args[0])
	return 2
}
