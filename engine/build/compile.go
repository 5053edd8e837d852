package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/quant"
)

// compile builds for a device that runs graphs itself (package device's
// Executor): the optimized FP32 graph is compiled for every profile (the
// device computes in the requested precision) through package partition,
// which gives the layers the device does not support to the CPU (each
// logged with its reason, and a summary; refused with StrictDevice); the
// first program is checked against the CPU's FP32 engine on the
// calibration or random batches (the accuracy report), and the device's
// compiled sections go into the plan (each segment's under its prefix when
// there are several).
func (b *builder) compile(ctx context.Context) error {
	if b.o.Precision == INT8 {
		return fmt.Errorf("%w: INT8 is not available on %s yet (use --fp16)", ErrOptions, b.o.Device)
	}
	if len(b.o.LayerPrecision) > 0 {
		return fmt.Errorf("%w: --layer-precision is not available on %s yet", ErrOptions, b.o.Device)
	}
	h := &b.res.Header
	ref, err := cloneGraph(b.g)
	if err != nil {
		return err
	}
	refEngine, err := engine.New(ref)
	if err != nil {
		return err
	}
	profiles := h.Profiles
	if len(profiles) == 0 {
		profiles = []engine.Profile{{}}
	}
	var first device.Program
	defer func() {
		if first != nil {
			first.Close()
		}
	}()
	blobs := map[string][]byte{}
	for i, p := range profiles {
		g, err := cloneGraph(b.g)
		if err != nil {
			return err
		}
		if _, err := ops.InferGraph(g); err != nil {
			return err
		}
		o := device.ExecOptions{Ordinal: b.ordinal, Precision: b.o.Precision, MemoryLimit: b.o.Workspace,
			Tune: !b.o.NoTiming, TimingCache: b.o.TimingCache, OptLevel: b.o.OptLevel}
		if len(p.Inputs) > 0 {
			o.MaxShapes, o.OptShapes = p.Shapes(2), p.Shapes(1)
		}
		prog, rep, err := partition.Compile(g, b.exec, o, partition.Options{Strict: b.o.StrictDevice})
		if i == 0 && rep != nil && (err == nil || !errors.Is(err, partition.ErrFallback)) {
			for _, line := range rep.Lines() {
				b.logf("%s", line)
			}
			b.logf("%s", rep.Summary())
		}
		if err != nil {
			return fmt.Errorf("profile %d: %w", i, err)
		}
		for _, f := range reportFallbacks(rep) {
			if b.fallback == nil {
				b.fallback = map[string]string{}
			}
			if _, seen := b.fallback[f.Node]; !seen {
				b.fallback[f.Node] = f.Reason.Error()
			}
		}
		if bp, ok := prog.(device.BlobProgram); ok {
			for name, data := range bp.Blobs() {
				// profile 0's sections, and a later profile's own where
				// they differ (tactics tuned at its shapes)
				if i == 0 {
					blobs[name] = data
				} else if !bytes.Equal(blobs[name], data) {
					blobs[plan.ProfileBlobPrefix(i)+name] = data
				}
			}
		}
		if i == 0 {
			first = prog
		} else {
			prog.Close()
		}
	}
	names := make([]string, 0, len(blobs))
	for name := range blobs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b.res.Blobs = append(b.res.Blobs, plan.Blob{Name: name, Data: blobs[name]})
	}
	b.logf("compiled for %s (%s) in %d profile(s); %d device sections", b.o.Device, b.o.Precision, len(profiles), len(names))
	batches, err := b.batches(modelInputs(b.g))
	if err != nil {
		if b.reportSkipped(err) {
			return nil
		}
		return err
	}
	acc, err := quant.Compare(ctx, refEngine, first, batches)
	if err != nil {
		if b.reportSkipped(err) {
			return nil
		}
		return fmt.Errorf("accuracy report: %w", err)
	}
	b.logf("accuracy of %s %s against the CPU's fp32 on %d batches:", b.o.Device, b.o.Precision, acc.Batches)
	for _, line := range strings.Split(strings.TrimSpace(acc.String()), "\n") {
		b.logf("  %s", line)
	}
	js, err := acc.JSON()
	if err != nil {
		return err
	}
	h.Accuracy = js
	return nil
}

// reportFallbacks is the fallback list of a partition report (nil: none).
func reportFallbacks(r *partition.Report) []partition.Fallback {
	if r == nil {
		return nil
	}
	return r.Fallbacks
}
