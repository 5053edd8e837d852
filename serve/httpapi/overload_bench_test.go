package httpapi

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkRejectFullQueue measures what refusing a request costs when the
// model's queue is full: a TinyCNN batch of 8 as JSON (about 260 kB) is
// answered 429. Refusing must cost far less than serving, or goodput falls
// under overload.
func BenchmarkRejectFullQueue(b *testing.B) {
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		b.Fatal(err)
	}
	rm.Config.MaxBatchSize = 8
	rm.Config.DynamicBatching = &repository.DynamicBatching{DefaultQueuePolicy: repository.QueuePolicy{MaxQueueSize: 1}}
	g := &gated{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	s := serve.New(serve.Options{WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner { g.r = r; return g }})
	if err := s.Add(rm); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	defer close(g.gate)
	infer := func() {
		s.Infer(context.Background(), &serve.InferRequest{Model: "tinycnn", Inputs: map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)}})
	}
	go infer() // runs
	<-g.started
	go infer() // fills the queue
	for s.Pending()[[2]string{"tinycnn", "1"}] != 1 {
		time.Sleep(time.Millisecond)
	}
	h := New(s, Options{})
	body := jsonRequest(examples.TinyCNNInput(8), false)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v2/models/tinycnn/infer", bytes.NewReader(body)))
		if rec.Code != 429 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
