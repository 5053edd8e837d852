package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkOverhead compares one TinyCNN request through the HTTP server
// (binary tensors, loopback) with a direct Model.Run: the difference is the
// server's own cost per request.
func BenchmarkOverhead(b *testing.B) {
	in := examples.TinyCNNInput(1)
	b.Run("direct", func(b *testing.B) {
		m, err := kiln.LoadBytes(examples.TinyCNNModel)
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": in}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		// no dynamic batching: a batcher would hold each request for its delay
		s := serve.New(serve.Options{})
		rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Add(rm); err != nil {
			b.Fatal(err)
		}
		defer s.Shutdown(context.Background())
		ts := httptest.NewServer(New(s, Options{}))
		defer ts.Close()
		body, n := binaryRequest(in, true)
		url := ts.URL + "/v2/models/tinycnn/infer"
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
			req.Header.Set(HeaderLength, strconv.Itoa(n))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
