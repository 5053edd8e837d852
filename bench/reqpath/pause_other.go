//go:build !linux

package main

import (
	"context"
	"io"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/tensor"
)

// pause blocks for about d (pause_linux.go).
func pause(d time.Duration) { time.Sleep(d) }

func syscallBetween() {}

// pinnedCaller runs c's runs on its caller (no CPU pinning here).
func pinnedCaller(c, _ *kiln.Context, in map[string]*tensor.Tensor, hop bool) (caller, func(), error) {
	return func(ctx context.Context) error { _, err := c.Run(ctx, in); return err }, func() {}, nil
}

type runDiag struct{ d time.Duration }

func diagRun(lastCPU *int, run func()) runDiag {
	t := time.Now()
	run()
	return runDiag{d: time.Since(t)}
}

func diagReport(w io.Writer, runs []runDiag) {}
