package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kilnai/kiln/engine/plan"
)

func inspectCmd(args []string) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the plan header as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) != 1 {
		return usageError(fs, "want one MODEL.plan, got %d arguments", len(pos))
	}
	p, err := plan.Open(pos[0])
	if err != nil {
		return fail("%v", err)
	}
	defer p.Close()
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p.Header); err != nil {
			return fail("%v", err)
		}
		return exitOK
	}
	printPlan(os.Stdout, p)
	if err := p.CheckDeviceIn(deviceSet, ""); err != nil {
		fmt.Printf("\nnote: this plan cannot run here: %v\n", err)
	}
	return exitOK
}

func printPlan(w io.Writer, p *plan.Plan) {
	h := &p.Header
	fmt.Fprintf(w, "plan       %s (%s), kiln %s, format %d, built %s\n", h.Model.Name, bytesStr(p.Size()), h.KilnVersion, plan.FormatVersion, h.Created.Format(time.RFC3339))
	fmt.Fprintf(w, "model      sha256 %s\n", h.Model.SHA256)
	fmt.Fprintf(w, "device     %s [%s]\n", h.Device, h.Fingerprint)
	fmt.Fprintf(w, "precision  %s, optimization level %d\n", h.Precision, h.OptLevel)
	fmt.Fprintf(w, "nodes      %d before optimization, %d after\n", h.Stats.NodesBefore, h.Stats.NodesAfter)
	onDevice, fallbacks := 0, 0
	for _, l := range h.Layers {
		switch l.Device {
		case "":
		case "cpu":
			fallbacks++
		default:
			onDevice++
		}
	}
	// a plan for a device that runs graphs itself (cuda): its layers say
	// where they run, and the device reported its memory
	perDevice := onDevice+fallbacks > 0 || h.Stats.DeviceMemory != nil
	if perDevice {
		printDeviceMemory(w, h)
	} else {
		fmt.Fprintf(w, "memory     weights %s; activation arena %s for intermediates totalling %s", bytesStr(h.Stats.WeightBytes), bytesStr(h.Stats.ArenaBytes), bytesStr(h.Stats.IntermediateBytes))
		if h.Stats.IntermediateBytes > 0 && h.Stats.ArenaBytes > 0 {
			fmt.Fprintf(w, " (%.0f%%)", 100*float64(h.Stats.ArenaBytes)/float64(h.Stats.IntermediateBytes))
		}
		fmt.Fprintln(w)
	}
	if len(h.Profiles) == 0 {
		fmt.Fprintln(w, "profiles   none (static shapes)")
	}
	for _, pr := range h.Profiles {
		fmt.Fprintf(w, "profile    %s: %s\n", pr.Name, pr.String())
	}
	tactics := map[string]plan.Tactic{}
	if len(h.Tactics) > 0 {
		for _, t := range h.Tactics[0] {
			tactics[t.Layer] = t
		}
	}
	fmt.Fprintf(w, "\nlayers (%d", len(h.Layers))
	if perDevice {
		fmt.Fprintf(w, ": %d on %s, %d on the CPU", onDevice, h.Device, fallbacks)
	}
	fmt.Fprintln(w, "):")
	if perDevice {
		printDeviceLayers(w, h, tactics)
	} else {
		fmt.Fprintf(w, "  %-4s %-28s %-24s %-6s %-18s %10s\n", "#", "name", "op", "prec", "tactic", "time")
		for i, l := range h.Layers {
			t := tactics[l.Name]
			tac := t.Tactic
			if tac == "" && l.Kernel != "" && l.Kernel != "reference" {
				tac = l.Kernel // a fast kernel of the CPU registry
			}
			if tac == "" {
				tac = "-"
			}
			fmt.Fprintf(w, "  %-4d %-28s %-24s %-6s %-18s %10s\n", i, clip(l.Name, 28), clip(l.Op, 24), l.Precision, clip(tac, 18), msStr(t.Time))
			printLayerDetail(w, l)
		}
	}
	if len(h.Notes) > 0 {
		fmt.Fprintln(w, "\nbuild log:")
		for _, n := range h.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
}

// printDeviceMemory prints the memory of a plan for a device that runs
// graphs itself: the weights in the plan file, and what the device
// reported (weights on it, and per execution context the activation arena
// and the libraries' workspace).
func printDeviceMemory(w io.Writer, h *plan.Header) {
	fmt.Fprintf(w, "memory     weights %s in the plan\n", bytesStr(h.Stats.WeightBytes))
	m := h.Stats.DeviceMemory
	if m == nil {
		fmt.Fprintf(w, "on %-7s memory not recorded in this plan (built by an older kiln, or the device does not report it)\n", h.Device)
		return
	}
	at := "the max shapes of its largest profile"
	if len(h.Profiles) == 0 {
		at = "the model's shapes"
	}
	fmt.Fprintf(w, "on %-7s weights %s; per execution context, activation arena %s and library workspace %s (at %s)\n",
		h.Device, bytesStr(m.WeightBytes), bytesStr(m.ArenaBytes), bytesStr(m.WorkspaceBytes), at)
}

// printDeviceLayers prints the layer table of a plan for a device that
// runs graphs itself: where each layer runs, its precision, the time
// measured while tuning, and the tactic in full (the library algorithm or
// the kernels), with its workspace; CPU layers say why they fell back.
func printDeviceLayers(w io.Writer, h *plan.Header, tactics map[string]plan.Tactic) {
	fmt.Fprintf(w, "  %-4s %-28s %-24s %-6s %-6s %11s  %s\n", "#", "name", "op", "device", "prec", "time", "tactic")
	var total time.Duration
	timed, cached := 0, false
	for i, l := range h.Layers {
		t := tactics[l.Name]
		tac := t.Tactic
		if tac == "" {
			tac = "-"
		}
		if t.Workspace > 0 {
			tac += ", workspace " + bytesStr(t.Workspace)
		}
		tm := msStr(t.Time)
		if t.Time > 0 {
			total += t.Time
			timed++
			if t.Cached {
				tm += "*"
				cached = true
			}
		}
		fmt.Fprintf(w, "  %-4d %-28s %-24s %-6s %-6s %11s  %s\n", i, clip(l.Name, 28), clip(l.Op, 24), clip(l.Device, 6), l.Precision, tm, tac)
		printLayerDetail(w, l)
	}
	if timed > 0 {
		at := "the first profile's opt shapes"
		if len(h.Profiles) == 0 {
			at = "the model's shapes"
		}
		fmt.Fprintf(w, "  %d layers timed at %s, %s in all (each layer timed alone)\n", timed, at, msStr(total))
	}
	if timed == 0 && len(tactics) > 0 {
		fmt.Fprintln(w, "  not timed (built with --no-timing): the libraries' first choices at the max shapes")
	}
	if cached {
		fmt.Fprintln(w, "  * read from the timing cache")
	}
	if len(h.Tactics) > 1 {
		fmt.Fprintf(w, "  (the tactics and times of all %d profiles, each at its opt shapes: kiln inspect --json, \"tactics\")\n", len(h.Tactics))
	}
}

// printLayerDetail prints a layer's fallback reason, why it computes in
// its precision (INT8 builds), inputs, outputs and fusions.
func printLayerDetail(w io.Writer, l plan.Layer) {
	if l.Fallback != "" {
		fmt.Fprintf(w, "       on the CPU: %s\n", l.Fallback)
	}
	if l.Reason != "" {
		fmt.Fprintf(w, "       precision: %s\n", l.Reason)
	}
	fmt.Fprintf(w, "       in: %s  out: %s\n", strings.Join(l.Inputs, ", "), strings.Join(l.Outputs, ", "))
	for _, f := range l.Fused {
		fmt.Fprintf(w, "       fused: %s\n", f)
	}
}

// msStr spells a layer time in milliseconds, "" for none.
func msStr(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf("%.3f ms", float64(d.Nanoseconds())/1e6)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "~"
}
