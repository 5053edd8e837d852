package grpcapi

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// runLog records every run of a model served by kiln serve's gRPC path:
// where it ran (on the RPC's own goroutine, "handler": the scheduler's
// fast path; or on an instance goroutine, "instance") and its batch size.
// While gate is not nil, runs wait for it to close, each first saying so
// on started; pause, when > 0, is added to every run (to keep the
// instance busy while requests arrive).
type runLog struct {
	mu      sync.Mutex
	runs    []loggedRun
	gate    chan struct{}
	started chan struct{}
	pause   time.Duration
}

type loggedRun struct {
	where string
	batch int
}

// where says whether the calling goroutine is a gRPC handler's.
func where() string {
	buf := make([]byte, 32<<10)
	if strings.Contains(string(buf[:runtime.Stack(buf, false)]), "grpcapi.(*Service).ModelInfer") {
		return "handler"
	}
	return "instance"
}

func (l *runLog) record(in map[string]*tensor.Tensor) {
	batch := 0
	if t := in["image"]; t != nil && len(t.Shape) > 0 {
		batch = t.Shape[0]
	}
	l.mu.Lock()
	l.runs = append(l.runs, loggedRun{where(), batch})
	gate, started, pause := l.gate, l.started, l.pause
	l.mu.Unlock()
	if gate != nil {
		started <- struct{}{}
		<-gate
	}
	if pause > 0 {
		time.Sleep(pause)
	}
}

// take returns the runs logged since the last take.
func (l *runLog) take() []loggedRun {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.runs
	l.runs = nil
	return r
}

// loggedRunner wraps a model's runner, keeping its instances (each its
// own execution context, as kiln serve runs them).
type loggedRunner struct {
	r   scheduler.Runner
	log *runLog
}

func (w loggedRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	w.log.record(in)
	return w.r.Run(ctx, in)
}

func (w loggedRunner) NewInstance() scheduler.Runner {
	if in, ok := w.r.(scheduler.Instancer); ok {
		return loggedRunner{in.NewInstance(), w.log}
	}
	return w
}

// TestRequestPathFastAndQueued: tinycnn served over gRPC on loopback as
// kiln serve serves it (PathOptions, the metrics observer), its engine
// real. A lone request that finds the instance idle runs on its RPC's
// goroutine (no hand-off), unless the batcher must wait (a queue delay);
// requests that arrive while the instance is busy queue and run on the
// instance's goroutine, batched when dynamic batching is on; under 16
// concurrent clients every answer is still its own input's, and batches
// form. The statistics (ModelStatistics) count every request and run.
func TestRequestPathFastAndQueued(t *testing.T) {
	const oneInstance = "instance_group { count: 1 kind: KIND_CPU }\n"
	cases := []struct {
		name   string
		config string
		// lone is where a lone request runs
		lone string
		// queuedRuns are the batch sizes of the runs of the six requests
		// queued behind a busy instance
		queuedRuns []int
		batches    bool
	}{
		{"dynamic batching", "max_batch_size: 8\ndynamic_batching { }\n" + oneInstance, "handler", []int{6}, true},
		{"no dynamic batching", noBatchingConfig + oneInstance, "handler", []int{1, 1, 1, 1, 1, 1}, false},
		{"dynamic batching with a queue delay", "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 500 }\n" + oneInstance, "instance", []int{6}, true},
	}
	const images = 16
	imgs := examples.TinyCNNInput(images)
	one := func(i int) *tensor.Tensor {
		t := tensor.New(tensor.Float32, 1, 3, 32, 32)
		copy(t.Data, imgs.Data[i*len(t.Data):(i+1)*len(t.Data)])
		return t
	}
	// each image's answer from the engine alone
	ref, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want := make([][]float32, images)
	reqs := make([]*inference.ModelInferRequest, images)
	for i := range images {
		out, err := ref.Run(context.Background(), map[string]*tensor.Tensor{"image": one(i)})
		if err != nil {
			t.Fatal(err)
		}
		want[i] = out["probabilities"].Float32s()
		if reqs[i], err = api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": one(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log := &runLog{}
			client, s := pathServer(t, pathOptions{config: c.config, engine: true,
				wrap: func(_ string, r scheduler.Runner) scheduler.Runner { return loggedRunner{r, log} }})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			infer := func(i int) error {
				resp, err := client.ModelInfer(ctx, reqs[i])
				if err != nil {
					return err
				}
				out, err := api.ResponseTensors(resp)
				if err != nil {
					return err
				}
				got := out["probabilities"]
				if got == nil || !slices.Equal(got.Shape, []int{1, 10}) {
					return fmt.Errorf("image %d: answer %v", i, out)
				}
				for j, g := range got.Float32s() {
					if d := g - want[i][j]; d > 1e-5 || d < -1e-5 {
						return fmt.Errorf("image %d: probability %d = %v, the engine alone says %v", i, j, g, want[i][j])
					}
				}
				return nil
			}
			stats := func() (inferences, executions uint64, batches map[uint64]uint64) {
				t.Helper()
				st, err := client.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: "tinycnn"})
				if err != nil || len(st.GetModelStats()) != 1 {
					t.Fatalf("statistics: %v %v", st, err)
				}
				ms := st.GetModelStats()[0]
				batches = map[uint64]uint64{}
				for _, b := range ms.GetBatchStats() {
					batches[b.GetBatchSize()] = b.GetComputeInfer().GetCount()
				}
				return ms.GetInferenceCount(), ms.GetExecutionCount(), batches
			}
			wantRuns := func(phase string, got []loggedRun, where []string, sizes []int) {
				t.Helper()
				var gw []string
				var gs []int
				for _, r := range got {
					gw, gs = append(gw, r.where), append(gs, r.batch)
				}
				if !slices.Equal(gw, where) || !slices.Equal(gs, sizes) {
					t.Errorf("%s: runs on %v of batch sizes %v, want on %v of %v", phase, gw, gs, where, sizes)
				}
			}
			// (any load-time runs are not requests)
			log.take()
			i0, e0, _ := stats()

			// lone requests, one after the other
			for i := range 4 {
				if err := infer(i); err != nil {
					t.Fatal(err)
				}
			}
			wantRuns("lone requests", log.take(), slices.Repeat([]string{c.lone}, 4), []int{1, 1, 1, 1})
			if in, ex, _ := stats(); in-i0 != 4 || ex-e0 != 4 {
				t.Errorf("after 4 lone requests: %d inferences, %d executions, want 4 and 4", in-i0, ex-e0)
			}

			// the instance held by a request; six more queue behind it
			log.mu.Lock()
			log.gate, log.started = make(chan struct{}), make(chan struct{}, images)
			log.mu.Unlock()
			errs := make(chan error, images)
			go func() { errs <- infer(4) }()
			<-log.started
			for i := 5; i < 11; i++ {
				go func() { errs <- infer(i) }()
			}
			deadline := time.Now().Add(30 * time.Second)
			for s.Pending()[[2]string{"tinycnn", "1"}] != 6 {
				if time.Now().After(deadline) {
					t.Fatalf("%d requests queued, want 6", s.Pending()[[2]string{"tinycnn", "1"}])
				}
				time.Sleep(time.Millisecond)
			}
			log.mu.Lock()
			close(log.gate)
			log.gate = nil
			log.mu.Unlock()
			for range 7 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			wantRuns("queued behind a busy instance", log.take(),
				append([]string{c.lone}, slices.Repeat([]string{"instance"}, len(c.queuedRuns))...), append([]int{1}, c.queuedRuns...))
			in, ex, batches := stats()
			if in-i0 != 11 || ex-e0 != uint64(5+len(c.queuedRuns)) {
				t.Errorf("after the queue: %d inferences, %d executions, want 11 and %d", in-i0, ex-e0, 5+len(c.queuedRuns))
			}
			if c.batches && batches[6] != 1 {
				t.Errorf("batch_stats %v: want one run of 6", batches)
			}

			// 16 clients, 20 requests each, while every run takes 1 ms more
			log.mu.Lock()
			log.pause = time.Millisecond
			log.mu.Unlock()
			var wg sync.WaitGroup
			for k := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range 20 {
						if err := infer((k + j) % images); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			runs := log.take()
			total, most := 0, 0
			for _, r := range runs {
				total += r.batch
				most = max(most, r.batch)
			}
			if total != 320 {
				t.Errorf("16 clients: %d images run, want 320", total)
			}
			if c.batches && most < 2 {
				t.Errorf("16 clients: %d runs, none batched", len(runs))
			}
			if !c.batches && most != 1 {
				t.Errorf("16 clients without dynamic batching: a run of %d", most)
			}
			if in, ex, _ := stats(); in-i0 != 331 || ex-e0 != uint64(5+len(c.queuedRuns)+len(runs)) {
				t.Errorf("after 16 clients: %d inferences, %d executions, want 331 and %d", in-i0, ex-e0, 5+len(c.queuedRuns)+len(runs))
			}
		})
	}
}
