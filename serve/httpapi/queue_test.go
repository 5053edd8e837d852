package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// gated holds every run until the gate opens.
type gated struct {
	r       scheduler.Runner
	gate    chan struct{}
	started chan struct{}
}

func (g *gated) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	g.started <- struct{}{}
	<-g.gate
	return g.r.Run(ctx, in)
}

// TestQueueFullAndDisconnect: with the only instance busy and a queue of
// one, a third request gets 429; a client that goes away (an HTTP client
// disconnecting, a WebSocket stream closing) leaves the queue.
func TestQueueFullAndDisconnect(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tiny", "1"), 0o755)
	os.WriteFile(filepath.Join(dir, "tiny", "1", "model.onnx"), examples.TinyCNNModel, 0o644)
	os.WriteFile(filepath.Join(dir, "tiny", "config.pbtxt"), []byte(`max_batch_size: 1
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { default_queue_policy { max_queue_size: 1 } }`), 0o644)
	g := &gated{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	s := serve.New(serve.Options{Repository: dir, WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner { g.r = r; return g }})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(s, Options{}))
	defer ts.Close()
	defer s.Shutdown(context.Background())
	var once sync.Once
	open := func() { once.Do(func() { close(g.gate) }) }
	defer open()

	body := jsonRequest(examples.TinyCNNInput(1), false)
	codes := make(chan int, 2)
	post := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v2/models/tiny/infer", bytesReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			codes <- 0
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go post(context.Background()) // occupies the instance
	<-g.started
	ctx, cancel := context.WithCancel(context.Background())
	go post(ctx) // waits in the queue
	pending := func() int { return s.Pending()[[2]string{"tiny", "1"}] }
	for pending() != 1 {
		time.Sleep(time.Millisecond)
	}
	if resp, b := do(t, "POST", ts.URL+"/v2/models/tiny/infer", nil, body); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("full queue: %d %s, want 429", resp.StatusCode, b)
	}
	cancel() // the client goes away
	if c := <-codes; c != 0 {
		t.Errorf("cancelled client got %d", c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the disconnected request stayed in the queue")
		}
		time.Sleep(time.Millisecond)
	}

	for _, closeNow := range []bool{false, true} {
		st, err := api.DialWebSocket(context.Background(), ts.URL, "tiny", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(context.Background(), "queued", map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)}); err != nil {
			t.Fatal(err)
		}
		for pending() != 1 {
			time.Sleep(time.Millisecond)
		}
		if closeNow {
			st.CloseNow() // the connection drops
		} else {
			st.Close() // a clean close
		}
		deadline = time.Now().Add(5 * time.Second)
		for pending() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the request of a closed stream (abrupt %v) stayed in the queue", closeNow)
			}
			time.Sleep(time.Millisecond)
		}
	}
	open()
	if c := <-codes; c != 200 {
		t.Errorf("first request: %d", c)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
