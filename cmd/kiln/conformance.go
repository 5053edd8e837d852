package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/kilnai/kiln/conformance"
	"github.com/kilnai/kiln/device"
)

func conformanceCmd(args []string) int {
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	verbose := fs.Bool("v", false, "also print passed and skipped tests")
	dev := fs.String("device", "cpu", "build each test for this device (cuda, cuda:N) as kiln build does, layers it lacks on the CPU, and count the tests that ran entirely on it")
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
	if *dev != "cpu" {
		d, ord, err := deviceSet.Lookup(*dev)
		if err != nil {
			return fail("%v", err)
		}
		if _, err := device.FingerprintAt(d, ord); err != nil {
			return fail("conformance: %s is not usable here: %v", *dev, err)
		}
	}
	skips := conformance.Skips()
	sum := conformance.Summary{Device: *dev}
	o := conformance.Options{Device: *dev, Devices: deviceSet}
	for _, d := range dirs {
		r := conformance.RunWith(context.Background(), d, skips, o)
		sum.Add(r)
		switch {
		case r.Status == conformance.Failed:
			fmt.Printf("FAIL %s: %s\n", r.Name, oneLine(r.Reason))
		case *verbose && r.Status == conformance.Skipped:
			fmt.Printf("SKIP %s: %s\n", r.Name, r.Reason)
		case *verbose && r.Layers > r.OnDevice:
			fmt.Printf("ok   %s (%d of %d layers on %s)\n", r.Name, r.OnDevice, r.Layers, *dev)
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
