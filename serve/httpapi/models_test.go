package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// TestSharedModels serves every model of ../shared/models from one
// repository and checks that HTTP inference (binary tensors both ways) and
// WebSocket stream inference return each model's reference outputs.
func TestSharedModels(t *testing.T) {
	src, err := filepath.Abs("../../../shared/models")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Skipf("needs the reference models in ../shared/models: %v", err)
	}
	repo := t.TempDir()
	var names []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(src, e.Name(), "test_data_set_0")); err != nil {
			continue
		}
		os.MkdirAll(filepath.Join(repo, e.Name(), "1"), 0o755)
		if err := os.Symlink(filepath.Join(src, e.Name(), "model.onnx"), filepath.Join(repo, e.Name(), "1", "model.onnx")); err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		t.Skip("needs the reference models in ../shared/models")
	}
	s := serve.New(serve.Options{Repository: repo})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	ts := httptest.NewServer(New(s, Options{}))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data := filepath.Join(src, name, "test_data_set_0")
			cfg, _, err := s.ModelConfig(name, "")
			if err != nil {
				t.Fatal(err)
			}
			var inputs []any
			var raw []byte
			named := map[string]*tensor.Tensor{}
			for i := 0; ; i++ {
				x, in, err := kiln.ReadTensorFile(filepath.Join(data, fmt.Sprintf("input_%d.pb", i)))
				if err != nil {
					break
				}
				if in == "" && i < len(cfg.Inputs) {
					in = cfg.Inputs[i].Name // the file does not name it: inputs in model order
				}
				named[in] = x
				b := binaryData(x)
				inputs = append(inputs, map[string]any{"name": in, "shape": x.Shape, "datatype": DataTypeName(x.DType),
					"parameters": map[string]any{"binary_data_size": len(b)}})
				raw = append(raw, b...)
			}
			hdr, _ := json.Marshal(map[string]any{"inputs": inputs, "parameters": map[string]any{"binary_data_output": true}})
			resp, body := do(t, "POST", ts.URL+"/v2/models/"+name+"/infer", map[string]string{HeaderLength: strconv.Itoa(len(hdr))}, append(hdr, raw...))
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			hl, _ := strconv.Atoi(resp.Header.Get(HeaderLength))
			var rh struct {
				Outputs []struct {
					Name       string         `json:"name"`
					Datatype   string         `json:"datatype"`
					Shape      []int          `json:"shape"`
					Parameters map[string]int `json:"parameters"`
				} `json:"outputs"`
			}
			if err := json.Unmarshal(body[:hl], &rh); err != nil {
				t.Fatal(err)
			}
			got := map[string]*tensor.Tensor{}
			rest := body[hl:]
			for _, o := range rh.Outputs {
				n := o.Parameters["binary_data_size"]
				x, err := fromBinary(dtypeNames[o.Datatype], o.Shape, rest[:n])
				if err != nil {
					t.Fatal(err)
				}
				got[o.Name], rest = x, rest[n:]
			}
			checkReference(t, data, cfg.Outputs, got)

			// the same request over the WebSocket stream, twice in flight
			st, err := api.DialWebSocket(ctx, ts.URL, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			for i := range 2 {
				if err := st.Send(ctx, fmt.Sprint(i), named); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 2 {
				id, got, err := st.Recv(ctx)
				if err != nil || id != fmt.Sprint(i) {
					t.Fatalf("stream answer %d: id %q, %v", i, id, err)
				}
				checkReference(t, data, cfg.Outputs, got)
			}
		})
	}
}

// checkReference compares got with the output_N.pb files of data.
func checkReference(t *testing.T, data string, outs []repository.IO, got map[string]*tensor.Tensor) {
	t.Helper()
	for i := 0; ; i++ {
		want, on, err := kiln.ReadTensorFile(filepath.Join(data, fmt.Sprintf("output_%d.pb", i)))
		if err != nil {
			if i == 0 {
				t.Fatal(err)
			}
			break
		}
		if on == "" && i < len(outs) {
			on = outs[i].Name
		}
		g, ok := got[on]
		if !ok {
			t.Fatalf("no output %q in the response", on)
		}
		gf, wf := g.ToFloat32(), want.ToFloat32()
		if len(gf) != len(wf) {
			t.Fatalf("output %s: %d values, want %d", on, len(gf), len(wf))
		}
		for j := range wf {
			if d := math.Abs(float64(gf[j] - wf[j])); d > 1e-4+1e-3*math.Abs(float64(wf[j])) {
				t.Fatalf("output %s[%d] = %v, want %v", on, j, gf[j], wf[j])
			}
		}
	}
}
