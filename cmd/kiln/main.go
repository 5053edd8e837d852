// Command kiln builds, runs and serves ONNX models. Run "kiln help" for the
// list of subcommands.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/kilnai/kiln"
	_ "github.com/kilnai/kiln/device/cuda/gpuexec" // --device cuda: the GPU executor
)

// exit codes shared by the subcommands
const (
	exitOK       = 0
	exitMismatch = 1
	exitError    = 2
)

type command struct {
	name, summary string
	run           func(args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"build", "build an engine plan from an ONNX model: fusion, FP16/INT8, profiles, tactics", buildCmd},
		{"run", "run an ONNX model or a plan on given or random inputs, compare, time", runCmd},
		{"inspect", "show a plan's device, precision, profiles, layers, tactics and memory", inspectCmd},
		{"serve", "serve a model repository over KServe v2 HTTP with dynamic batching and metrics", serveCmd},
		{"conformance", "run ONNX backend test folders, print N passed, N failed, N skipped", conformanceCmd},
		{"version", "print kiln's version", func([]string) int { fmt.Println("kiln", kiln.Version); return exitOK }},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "kiln %s: ONNX inference engine\n\nusage: kiln <command> [flags] [args]\n\ncommands:\n", kiln.Version)
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun \"kiln <command> -h\" for a command's flags.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(exitError)
	}
	name := os.Args[1]
	if name == "help" || name == "-h" || name == "--help" {
		usage()
		os.Exit(exitOK)
	}
	for _, c := range commands {
		if c.name == name {
			os.Exit(c.run(os.Args[2:]))
		}
	}
	fmt.Fprintf(os.Stderr, "kiln: unknown command %q\n\n", name)
	usage()
	os.Exit(exitError)
}

func fail(format string, args ...any) int {
	msg := strings.TrimPrefix(fmt.Sprintf(format, args...), "kiln: ")
	fmt.Fprintf(os.Stderr, "kiln: %s\n", msg)
	return exitError
}

// parseArgs parses flags that may come before or after the positional
// arguments ("kiln run model.onnx --data dir") and returns the positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
