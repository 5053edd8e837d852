package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/serve/repository"
)

// buildRepository builds every model of a model repository into a plan
// cache exactly as kiln serve --model-repository repo --plan-cache cache
// would build it (the options each model's config.pbtxt gives: device,
// batch range, precision), so that a server started afterwards on the same
// machine loads cached plans instead of building: what a Kubernetes
// initContainer runs before the server container starts. It builds every
// model, reports each failure and exits 1 when any failed. The other build
// flags do not apply (each model's config gives its options) and are refused.
func buildRepository(fs *flag.FlagSet, repo, cache string) int {
	var other []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "model-repository" && f.Name != "plan-cache" {
			other = append(other, "--"+f.Name)
		}
	})
	if len(other) > 0 {
		return usageError(fs, "with --model-repository each model's config.pbtxt gives the build options: %s does not apply", strings.Join(other, ", "))
	}
	names, err := repository.Names(repo)
	if err != nil {
		return fail("build --model-repository: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	load := planLoader(ctx, &kiln.PlanCache{Dir: cache}, log)
	failed := 0
	for _, name := range names {
		start := time.Now()
		m, err := repository.LoadContext(ctx, repo, name, load)
		if err != nil {
			failed++
			fmt.Fprintf(errOut, "kiln: build %s: %v\n", name, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		m.Close()
		fmt.Printf("%s: %d version(s) in %s (%s)\n", name, len(m.Versions), cache, time.Since(start).Round(time.Millisecond))
	}
	if failed > 0 {
		return fail("build --model-repository: %d of %d models failed", failed, len(names))
	}
	return exitOK
}
