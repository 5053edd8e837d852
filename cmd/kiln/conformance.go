package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/kilnai/kiln/conformance"
)

func conformanceCmd(args []string) int {
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	verbose := fs.Bool("v", false, "also print passed and skipped tests")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) == 0 {
		return usageError(fs, "want at least one test folder")
	}
	dirs, err := conformance.Find(pos...)
	if err != nil {
		return fail("%v", err)
	}
	skips := conformance.Skips()
	var sum conformance.Summary
	for _, d := range dirs {
		r := conformance.Run(context.Background(), d, skips)
		sum.Add(r)
		switch {
		case r.Status == conformance.Failed:
			fmt.Printf("FAIL %s: %s\n", r.Name, oneLine(r.Reason))
		case *verbose && r.Status == conformance.Skipped:
			fmt.Printf("SKIP %s: %s\n", r.Name, r.Reason)
		case *verbose:
			fmt.Printf("ok   %s\n", r.Name)
		}
	}
	fmt.Println(sum)
	if sum.Failed > 0 {
		return exitMismatch
	}
	return exitOK
}

func oneLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
