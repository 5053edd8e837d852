package serve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestPollReloadsUnderLoad(t *testing.T) {
	s := tinyServer(t, "max_batch_size: 4\n")
	dir := s.opts.Repository
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// the repository's state is taken before StartPoll returns: a change
	// made at once is seen however late the poller's goroutine runs
	s.StartPoll(ctx, 5*time.Millisecond)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Infer(context.Background(), &InferRequest{Model: "tiny", Inputs: image(1)}); err != nil {
					t.Errorf("request failed during hot reload: %v", err)
					return
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		// generous: under -race on a loaded 2-core machine a reload (a build
		// with tactic timing) competes with three request loops
		deadline := time.Now().Add(45 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(20 * time.Millisecond) // requests in flight
	os.WriteFile(filepath.Join(dir, "tiny", "config.pbtxt"), []byte("max_batch_size: 2\n"), 0o644)
	waitFor("the changed config", func() bool {
		cfg, _, err := s.ModelConfig("tiny", "")
		return err == nil && cfg.MaxBatchSize == 2
	})
	close(stop)
	wg.Wait()

	// a new model appears, then goes away
	os.MkdirAll(filepath.Join(dir, "tiny2", "1"), 0o755)
	b, _ := os.ReadFile(filepath.Join(dir, "tiny", "1", "model.onnx"))
	os.WriteFile(filepath.Join(dir, "tiny2", "1", "model.onnx"), b, 0o644)
	waitFor("the new model", func() bool { ok, _ := s.ModelReady("tiny2", ""); return ok })
	os.RemoveAll(filepath.Join(dir, "tiny2"))
	waitFor("the removed model", func() bool { _, err := s.ModelReady("tiny2", ""); return errors.Is(err, ErrNotFound) })
}
