package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

func TestWebSocketStream(t *testing.T) {
	s := serve.New(serve.Options{})
	rm, err := repository.FromBytes(modelName, examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer ts.Close()
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := api.DialWebSocket(ctx, ts.URL, modelName, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 6
	go func() {
		for i := range n {
			in := map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1 + i%2)}
			if i == 3 {
				in = map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 1, 3)}
			}
			if err := st.Send(ctx, fmt.Sprint(i), in); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range n {
		id, out, err := st.Recv(ctx)
		if id != fmt.Sprint(i) {
			t.Fatalf("answer %d has id %q", i, id)
		}
		if i == 3 {
			if !errors.Is(err, api.ErrStream) {
				t.Errorf("bad request: err = %v, want ErrStream", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		want, err := m.Run(ctx, map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1 + i%2)})
		if err != nil {
			t.Fatal(err)
		}
		g, w := out["probabilities"], want["probabilities"]
		if g == nil || fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) {
			t.Fatalf("answer %d: %v, want shape %v", i, g, w.Shape)
		}
		for j, v := range w.Float32s() {
			if d := g.Float32s()[j] - v; d > 1e-6 || d < -1e-6 {
				t.Fatalf("answer %d: output[%d] = %v, want %v", i, j, g.Float32s()[j], v)
			}
		}
	}
}

func TestDialWebSocketErrors(t *testing.T) {
	s := serve.New(serve.Options{})
	defer s.Shutdown(context.Background())
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	defer ts.Close()
	tests := []struct {
		name, base, want string
		sentinel         error
	}{
		{"unknown model", ts.URL, "HTTP 404", nil},
		{"bad scheme", "ftp://x", "want http(s)", nil},
		{"nobody there", "ws://127.0.0.1:1", "", api.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := api.DialWebSocket(context.Background(), tt.base, "nope", nil, 0)
			if err == nil || tt.want != "" && !strings.Contains(err.Error(), tt.want) || tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("err = %v, want %q %v", err, tt.want, tt.sentinel)
			}
		})
	}
}
