//go:build !linux

package main

import (
	"context"
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
