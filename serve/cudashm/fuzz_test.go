package cudashm_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/cudashm"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/repository"
)

// FuzzCudaShm: CUDA register requests and inference requests naming CUDA
// regions, with any bodies, offsets and sizes, are answered 200 or 400
// (never 500, a panic or a copy outside a region), with the fake libcuda.
func FuzzCudaShm(f *testing.F) {
	lib := fakeLib(f)
	h, _ := fakeHandle(f, "fuzz", 1<<15)
	s := serve.New(serve.Options{CudaShm: cudashm.New(cuda.Options{LibDir: lib})})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Shutdown(context.Background()) })
	if err := s.RegisterCudaShm("r", h, 0, 1<<15); err != nil {
		f.Fatal(err)
	}
	hd := httpapi.New(s, httpapi.Options{})
	for _, seed := range []string{
		"register " + register(h, 0, 1<<15),
		"register " + register(h, 0, 1<<15+1),
		"register " + register(h[:63], 0, 16),
		`register {"raw_handle":{"b64":"%%%"},"device_id":0,"byte_size":16}`,
		`register {"raw_handle":{"b64":""},"device_id":-9223372036854775808,"byte_size":18446744073709551615}`,
		`infer {"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_byte_size":12288}}]}`,
		`infer {"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_offset":20480,"shared_memory_byte_size":12288}}],"outputs":[{"name":"probabilities","parameters":{"shared_memory_region":"r","shared_memory_offset":32760,"shared_memory_byte_size":8}}]}`,
		`infer {"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_offset":32767,"shared_memory_byte_size":12288}}]}`,
		`infer {"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"r","shared_memory_byte_size":12288}}],"outputs":[{"name":"probabilities","parameters":{"shared_memory_region":"r","shared_memory_offset":32728,"shared_memory_byte_size":40}}]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, req string) {
		kind, body, _ := strings.Cut(req, " ")
		path := "/v2/models/tinycnn/infer"
		if kind == "register" {
			path = "/v2/cudasharedmemory/region/f/register"
		}
		rec := httptest.NewRecorder()
		hd.ServeHTTP(rec, httptest.NewRequest("POST", path, strings.NewReader(body)))
		if c := rec.Code; c != 200 && c != 400 {
			t.Fatalf("%s %q: %d %s", path, body, c, rec.Body)
		}
		if err := s.UnregisterCudaShm("f"); err != nil {
			t.Fatal(fmt.Errorf("unregister: %w", err))
		}
	})
}
