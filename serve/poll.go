package serve

import (
	"context"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/kilnai/kiln/serve/repository"
)

// fingerprint sums the names, sizes and modification times of the files of
// a model folder, to notice a changed model or config.
func fingerprint(dir string) uint64 {
	h := fnv.New64a()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(h, "%s:error;", p)
			return nil
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			fmt.Fprintf(h, "%s:%d:%d;", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return h.Sum64()
}

// Poll watches the repository (Triton's --model-control-mode=poll) every
// interval until ctx ends: a new or changed model folder is (re)loaded beside
// the version being served, which keeps serving until the new one is ready;
// a removed folder is unloaded once its queued requests finish. Changes are
// seen against the repository as it was when Poll was called: run it as
// StartPoll does, or a change made before the goroutine runs is missed.
func (s *Server) Poll(ctx context.Context, interval time.Duration) {
	s.pollLoop(ctx, interval, s.pollSnapshot())
}

// StartPoll takes the repository's state now and then polls it as Poll does
// in a goroutine of its own, so that a change made after StartPoll returns is
// always seen.
func (s *Server) StartPoll(ctx context.Context, interval time.Duration) {
	seen := s.pollSnapshot()
	go s.pollLoop(ctx, interval, seen)
}

// pollSnapshot fingerprints each model folder of the repository.
func (s *Server) pollSnapshot() map[string]uint64 {
	seen := map[string]uint64{}
	if s.opts.Repository == "" {
		return seen
	}
	if names, err := repository.Names(s.opts.Repository); err == nil {
		for _, n := range names {
			seen[n] = fingerprint(filepath.Join(s.opts.Repository, n))
		}
	}
	return seen
}

func (s *Server) pollLoop(ctx context.Context, interval time.Duration, seen map[string]uint64) {
	if s.opts.Repository == "" {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.pollOnce(ctx, seen)
	}
}

func (s *Server) pollOnce(ctx context.Context, seen map[string]uint64) {
	names, err := repository.Names(s.opts.Repository)
	if err != nil {
		s.log.Error("repository poll", "err", err)
		return
	}
	now := map[string]bool{}
	for _, n := range names {
		now[n] = true
		fp := fingerprint(filepath.Join(s.opts.Repository, n))
		if old, ok := seen[n]; ok && old == fp {
			continue
		}
		seen[n] = fp
		s.log.Info("repository change", "model", n)
		s.load(ctx, n, LoadRequest{}) // errors are logged and shown in the index
	}
	for n := range seen {
		if !now[n] {
			delete(seen, n)
			s.log.Info("model removed from the repository", "model", n)
			s.Unload(ctx, n)
		}
	}
}
