// Command kiln builds, runs and serves ONNX models. Run "kiln help" for the
// list of subcommands and "kiln help COMMAND" (or "kiln COMMAND -h") for a
// subcommand's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kilnai/kiln"
)

// exit codes shared by the subcommands
const (
	exitOK       = 0
	exitMismatch = 1
	exitError    = 2
)

// command is one subcommand: its name, its arguments after the flags as
// the usage line shows them, a one-line summary for "kiln help" and a
// paragraph for "kiln COMMAND -h".
type command struct {
	name, args, summary, about string
	run                        func(args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"build", "[flags] MODEL.onnx [-o FILE.plan] | --model-repository DIR --plan-cache DIR",
			"build an engine plan from an ONNX model: fusion, FP16/INT8, profiles, tactics",
			"Builds an engine plan for a device: optimization, precision, profiles, tactic timing.\n" +
				"Without -o the plan goes to the current folder, named after the model: NAME.plan for\n" +
				"NAME.onnx, or FOLDER.plan for FOLDER/model.onnx (a Triton version folder such as 1/ is\n" +
				"skipped: repo/resnet/1/model.onnx gives resnet.plan). The -o folder must exist.\n" +
				"With --model-repository, every model of a repository is built into --plan-cache with its\n" +
				"config.pbtxt's options, as kiln serve would build it (kiln serve then starts from the cache).",
			buildCmd},
		{"run", "[flags] MODEL.onnx|MODEL.plan|example",
			"run an ONNX model or a plan on given or random inputs, compare, time",
			"Runs a plan, or builds an ONNX model in memory (the build flags apply) and runs it,\n" +
				"on the inputs of --data (comparing with its outputs) or on random inputs.\n" +
				"Exit status: 0 when all outputs match, 1 on a mismatch, 2 on any error.",
			runCmd},
		{"inspect", "[--json] MODEL.plan",
			"show a plan's device, precision, profiles, layers, tactics and memory",
			"Shows a plan: device, precision, profiles, layers with their fusions, precision and tactic, memory.",
			inspectCmd},
		{"serve", "[flags]",
			"serve a model repository over KServe v2 HTTP and gRPC with dynamic batching and metrics",
			"Serves a model repository (Triton layout), or the bundled example as \"tinycnn\", over\n" +
				"KServe v2 HTTP, gRPC and WebSocket streaming, with dynamic batching and Prometheus metrics.\n" +
				"SIGTERM drains in-flight requests within --exit-timeout and exits 0.",
			serveCmd},
		{"gateway", "[flags] --backend SPEC... | --backends-file FILE | --dns NAME | --k8s-service NS/NAME",
			"a model-aware KServe v2 gateway in front of kiln serve backends: routing, balancing, retries, admission",
			"Proxies KServe v2 HTTP (JSON and binary), gRPC and WebSocket streams to the backends where the\n" +
				"request's model is ready (from their repository index), balanced by load, with health checks,\n" +
				"ejection, retries, admission and its own metrics. SIGTERM drains within --exit-timeout and exits 0.",
			gatewayCmd},
		{"conformance", "[-v] DIR...",
			"run ONNX backend test folders, print N passed, N failed, N skipped",
			"Runs ONNX backend test folders (model.onnx + test_data_set_N/) and prints one line per\n" +
				"failure, then \"N passed, N failed, N skipped\". Exit status 1 if any test failed\n" +
				"(the ONNX 1.12 node suite has 4 known failures: see README.md).",
			conformanceCmd},
		{"client", "[flags] live|ready [MODEL]|metadata [MODEL]|infer MODEL",
			"a KServe v2 gRPC client: server and model readiness, metadata, an inference",
			"Calls a kiln (or Triton) server over KServe v2 gRPC with kiln's Go client (api.Client):\n" +
				"live, ready [MODEL], metadata [MODEL] (as JSON), infer MODEL (random inputs from the\n" +
				"model's metadata, or --data DIR). Exit status: 0, 1 when not live or not ready, 2 on any error.",
			clientCmd},
		{"perf", "-m MODEL [-u HOST:PORT] [-i http|grpc|ws] [flags]",
			"load generator: concurrency and request-rate modes, latency percentiles, server breakdown, plots",
			"Measures a served model under load, as Triton's perf_analyzer does: at each concurrency (or\n" +
				"request rate), measurement windows repeat until throughput and p95 latency of 3 windows agree\n" +
				"within --stability-percentage, then it prints throughput, p50/p90/p95/p99 latency, errors by\n" +
				"kind and the server's own time per request (queue, compute input, infer, output) from its\n" +
				"statistics endpoint. Reports: a table on stdout, -f CSV, --json, --plot SVG or PNG.",
			perfCmd},
		{"version", "", "print kiln's version (also kiln --version)", "Prints kiln's version.", versionCmd},
	}
}

// errOut is where help, usage and error messages go (tests replace it).
var errOut io.Writer = os.Stderr

// helpShown is set by parseArgs when a command's flags asked for its help
// (-h, --help): runCommand then exits 0 whatever the command returned.
var helpShown bool

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "kiln %s: ONNX inference engine\n\nusage: kiln <command> [flags] [args]\n\ncommands:\n", kiln.Version)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"kiln help <command>\" or \"kiln <command> -h\" for a command's flags; \"kiln --version\" prints the version.\n")
}

func main() {
	os.Exit(runCommand(os.Args[1:]))
}

// runCommand is kiln's command line without the program name: it returns
// the exit status. -h, --help and "help [COMMAND]" exit 0, anywhere.
func runCommand(args []string) int {
	if len(args) == 0 {
		usage(errOut)
		return exitError
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		usage(errOut)
		return exitOK
	case "-version", "--version":
		return versionCmd(args[1:])
	case "help":
		switch len(args) {
		case 1:
			usage(errOut)
			return exitOK
		case 2:
			if lookup(args[1]) == nil {
				fmt.Fprintf(errOut, "kiln help: unknown command %q (see kiln -h)\n", args[1])
				return exitError
			}
			return runCommand([]string{args[1], "-h"})
		}
		fmt.Fprintf(errOut, "kiln help: want at most one command, got %q (see kiln -h)\n", args[1:])
		return exitError
	}
	c := lookup(name)
	if c == nil {
		if strings.HasPrefix(name, "-") {
			fmt.Fprintf(errOut, "kiln: unknown flag %s: flags follow the command (see kiln -h)\n", name)
		} else {
			fmt.Fprintf(errOut, "kiln: unknown command %q (see kiln -h)\n", name)
		}
		return exitError
	}
	helpShown = false
	code := c.run(args[1:])
	if helpShown {
		helpShown = false
		return exitOK
	}
	return code
}

func versionCmd(args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected arguments %q", pos)
	}
	fmt.Println("kiln", kiln.Version)
	return exitOK
}

func fail(format string, args ...any) int {
	msg := strings.TrimPrefix(fmt.Sprintf(format, args...), "kiln: ")
	fmt.Fprintf(errOut, "kiln: %s\n", msg)
	return exitError
}

// usageError reports a wrong use of a command's arguments in one line that
// points to its help, and returns exitError.
func usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(errOut, "kiln %s: %s (see kiln %s -h)\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return exitError
}

// parseArgs parses flags that may come before or after the positional
// arguments ("kiln run model.onnx --data dir") and returns the positionals.
// Every command parses through it, so that all share one help format: on
// -h or --help it prints the command's help (and runCommand exits 0), on a
// bad flag one line naming it, pointing to -h. It sets fs.Usage to the
// command's help.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // the flag package calls it on errors: reported below instead
	defer func() { fs.Usage = func() { commandHelp(errOut, fs) } }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				helpShown = true
				commandHelp(errOut, fs)
			} else {
				fmt.Fprintf(errOut, "kiln %s: %v (see kiln %s -h)\n", fs.Name(), err, fs.Name())
			}
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

// commandHelp prints a command's help: usage line, description, flags.
func commandHelp(w io.Writer, fs *flag.FlagSet) {
	name := fs.Name()
	c := lookup(name)
	if c == nil {
		c = &command{name: name, args: "[flags]"}
	}
	fmt.Fprintf(w, "usage: kiln %s", name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintln(w)
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", c.about)
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "\nflags:\n")
	printFlags(w, fs)
}

// printFlags prints a flag set's flags as "  --name TYPE", then the flag's
// text indented on the next line with its default, unless the default is
// the zero value or the text gives its default itself ("(default ...").
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, text := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		line := "  " + dash + f.Name
		if typ != "" {
			line += " " + typ
		}
		text = strings.ReplaceAll(text, "\n", "\n        ")
		if !zeroDefault(f.DefValue) && !strings.Contains(text, "(default") {
			if typ == "string" {
				text += fmt.Sprintf(" (default %q)", f.DefValue)
			} else {
				text += fmt.Sprintf(" (default %s)", f.DefValue)
			}
		}
		fmt.Fprintf(w, "%s\n        %s\n", line, text)
	})
}

func zeroDefault(v string) bool {
	switch v {
	case "", "0", "false", "0s", "[]", "map[]":
		return true
	}
	return false
}
