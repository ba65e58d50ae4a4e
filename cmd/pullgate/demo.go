package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/pullgate/pullgate/cmd/pullgate/internal/demo"
)

func cmdDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "keep the demo's config, policy, store and audit log here (default: a temp dir)")
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	if err := demo.Run(context.Background(), demo.Options{Dir: *dir, Out: os.Stdout}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
