package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
)

// tinyJSONBody is a tinycnn request as clients write it: 3,072 FP32
// numbers in their shortest decimal form.
func tinyJSONBody() []byte {
	var b bytes.Buffer
	b.WriteString(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","data":[`)
	for i, v := range examples.TinyCNNInput(1).Float32s() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(strconv.AppendFloat(nil, float64(v), 'g', -1, 32))
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}

// BenchmarkHandlerJSON serves one tinycnn JSON request through the handler
// (no network): decoding, the scheduler, the engine, the response. Its
// allocations are the request path's; bench/reqpath measures it over
// loopback against bare servers.
func BenchmarkHandlerJSON(b *testing.B) {
	s := serve.New(serve.Options{})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	h := New(s, Options{})
	body := tinyJSONBody()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v2/models/tinycnn/infer", bytes.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkDecodeTinyJSON decodes one tinycnn JSON request against its
// schema, as the handler does.
func BenchmarkDecodeTinyJSON(b *testing.B) {
	body := tinyJSONBody()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	r := bytes.NewReader(body)
	for b.Loop() {
		r.Reset(body)
		if _, err := ReadRequest(r, int64(len(body)), -1, 64<<20, tinySchema); err != nil {
			b.Fatal(err)
		}
	}
}
