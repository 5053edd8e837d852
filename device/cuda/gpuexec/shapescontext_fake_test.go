package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// openContexts counts the Contexts open on the engines s holds.
func openContexts(s *Shapes) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, se := range s.engines {
		<-se.ready
		if se.e != nil {
			se.e.mu.Lock()
			n += len(se.e.contexts)
			se.e.mu.Unlock()
		}
	}
	return n
}

// TestShapesContextFake runs ShapesContexts against the fake libraries:
// each keeps one Context per input shape it runs (never the pool's), its
// ArenaBytes says what they hold, an engine closed to make room takes the
// contexts' Contexts with it (and a later run of that shape makes a new
// one), Close releases them, and Shapes.Close after all that, or with
// contexts still open, closes every engine without an error.
func TestShapesContextFake(t *testing.T) {
	dir := fakeLibs(t)
	path := modelPath(t, "resnet_mini")
	s := NewShapes(FileGraphs(path, 2), Options{LibDir: dir}, 2)
	run := func(sc *ShapesContext, batch int) {
		t.Helper()
		out, err := sc.Run(context.Background(), randomImages(t, "resnet_mini", batch, uint64(batch)))
		if err != nil || out["output"] == nil || out["output"].Shape[0] != batch {
			t.Fatalf("batch %d: %v, %v", batch, out, err)
		}
	}
	a, b := s.NewContext(), s.NewContext()
	if a.ArenaBytes() != 0 || openContexts(s) != 0 {
		t.Fatalf("a new context holds %d bytes (%d contexts open)", a.ArenaBytes(), openContexts(s))
	}
	for range 3 {
		run(a, 1)
	}
	if n := openContexts(s); n != 1 {
		t.Errorf("three runs of one shape in one context: %d contexts, want 1", n)
	}
	one := a.ArenaBytes()
	if one <= 0 {
		t.Errorf("after a run: %d arena bytes", one)
	}
	run(a, 2)
	run(b, 1)
	if n := openContexts(s); n != 3 {
		t.Errorf("a: batches 1 and 2, b: batch 1: %d contexts, want 3", n)
	}
	if a.ArenaBytes() <= one {
		t.Errorf("two shapes hold %d bytes, one %d", a.ArenaBytes(), one)
	}

	// Concurrent contexts, beside Shapes.Run's pool.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := s.NewContext()
			defer func() { errs <- sc.Close() }()
			for i := range 3 {
				batch := 1 + (w+i)%2
				out, err := sc.Run(context.Background(), randomImages(t, "resnet_mini", batch, uint64(w)))
				if err == nil && out["output"].Shape[0] != batch {
					err = fmt.Errorf("batch %d: output %v", batch, out["output"].Shape)
				}
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := openContexts(s); n != 3 {
		t.Errorf("after the concurrent contexts closed: %d contexts open, want a's 2 and b's 1", n)
	}

	// Batch 3 at the limit of 2 engines closes the least recently used
	// (batch 2's or batch 1's), with a's or b's Contexts of it.
	run(b, 3)
	run(a, 1)
	run(a, 3)
	if s.Evicted() < 1 {
		t.Fatalf("no engine evicted")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.ArenaBytes() != 0 {
		t.Errorf("closed context holds %d bytes", a.ArenaBytes())
	}
	if _, err := a.Run(context.Background(), randomImages(t, "resnet_mini", 1, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("run after Close: %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// b stays open: Shapes.Close closes its Contexts with the engines.
	if err := s.Close(); err != nil {
		t.Fatalf("Shapes.Close with a context open: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("context Close after Shapes.Close: %v", err)
	}
}
