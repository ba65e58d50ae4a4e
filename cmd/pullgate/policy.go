package main

import (
	"fmt"
	"os"

	"github.com/pullgate/pullgate/policy"
)

func cmdPolicy(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: pullgate policy lint <policy.yaml>")
		return 2
	}
	switch args[0] {
	case "lint":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: pullgate policy lint <policy.yaml>")
			return 2
		}
		diags := policy.Lint(args[1])
		for _, d := range diags {
			fmt.Println(d.String())
		}
		if len(diags) > 0 {
			fmt.Fprintf(os.Stderr, "%d problem(s) in %s\n", len(diags), args[1])
			return 1
		}
		fmt.Printf("%s: ok\n", args[1])
		return 0
	}
	fmt.Fprintf(os.Stderr, "pullgate policy: unknown subcommand %q\n", args[0])
	return 2
}
