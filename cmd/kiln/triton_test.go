package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// classifierDir is tinycnn as an image classifier (config.pbtxt with
// format and label_filename, labels.txt), as the README serves it.
const classifierDir = "../../serve/repository/testdata/classifier"

// wantClasses is the classification extension's answer for out (rows of
// 10 values): per row the top k "value:index:label" strings.
func wantClasses(out []float32, k int, labels []string) []string {
	var want []string
	for r := 0; r < len(out)/10; r++ {
		row := out[r*10 : r*10+10]
		idx := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case row[a] > row[b]:
				return -1
			case row[a] < row[b]:
				return 1
			}
			return 0
		})
		for _, i := range idx[:k] {
			want = append(want, fmt.Sprintf("%s:%d:%s", strconv.FormatFloat(float64(row[i]), 'f', 6, 64), i, labels[i]))
		}
	}
	return want
}

// TestTritonClientParity (issue 14, item 5) runs kiln serve as a Triton
// user would, over HTTP and gRPC: the model config shows format,
// label_filename, preserve_ordering and parameters as written, the same
// over both protocols; classification answers "value:index:label" strings
// of the top classes; gzip-compressed requests and responses work; and
// gRPC ModelReady of a model that is not loaded is false, not an error.
func TestTritonClientParity(t *testing.T) {
	repo := t.TempDir()
	mdir := filepath.Join(repo, "classifier")
	os.MkdirAll(filepath.Join(mdir, "1"), 0o755)
	os.WriteFile(filepath.Join(mdir, "1", "model.onnx"), examples.TinyCNNModel, 0o644)
	var labels []string
	for _, f := range []string{"config.pbtxt", "labels.txt"} {
		b, err := os.ReadFile(filepath.Join(classifierDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(mdir, f), b, 0o644)
		if f == "labels.txt" {
			labels = strings.Fields(string(b))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, grpcAddr, _ := chaosServe(t, ctx, "--model-repository", repo)
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	gc := inference.NewGRPCInferenceServiceClient(cc)

	in := examples.TinyCNNInput(2)
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref, err := m.Run(ctx, map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	want := wantClasses(ref["probabilities"].Float32s(), 3, labels)

	post := func(t *testing.T, body []byte, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", base+"/v2/models/classifier/infer", bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	t.Run("config", func(t *testing.T) {
		resp, err := http.Get(base + "/v2/models/classifier/config")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, s := range []string{`"format":"FORMAT_NCHW"`, `"label_filename":"labels.txt"`, `"preserve_ordering":true`,
			`"parameters":{"source":{"string_value":"examples/tinycnn"}}`, `"default_model_filename":"model.onnx"`,
			`"dims":[3,32,32]`, `"version_policy":{"latest":{"num_versions":1}}`} {
			if !strings.Contains(string(b), s) {
				t.Errorf("HTTP config has no %s:\n%s", s, b)
			}
		}
		fromHTTP := &inference.ModelConfig{}
		if err := protojson.Unmarshal(b, fromHTTP); err != nil {
			t.Fatal(err)
		}
		g, err := gc.ModelConfig(ctx, &inference.ModelConfigRequest{Name: "classifier"})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(fromHTTP, g.GetConfig()) {
			t.Errorf("HTTP config\n%v\ngRPC config\n%v", fromHTTP, g.GetConfig())
		}
	})

	t.Run("classification HTTP", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{
			"inputs":  []any{map[string]any{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}},
			"outputs": []any{map[string]any{"name": "probabilities", "parameters": map[string]any{"classification": 3}}},
		})
		resp, b := post(t, body, nil)
		var out struct {
			Outputs []struct {
				Datatype string   `json:"datatype"`
				Shape    []int    `json:"shape"`
				Data     []string `json:"data"`
			} `json:"outputs"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || len(out.Outputs) != 1 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		o := out.Outputs[0]
		if o.Datatype != "BYTES" || fmt.Sprint(o.Shape) != "[2 3]" || !sameClasses(o.Data, want) {
			t.Errorf("got %s %v %q, want BYTES [2 3] %q", o.Datatype, o.Shape, o.Data, want)
		}
	})

	t.Run("classification gRPC, gzip", func(t *testing.T) {
		req, err := api.NewInferRequest("classifier", map[string]*tensor.Tensor{"image": in})
		if err != nil {
			t.Fatal(err)
		}
		req.Outputs = []*inference.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities",
			Parameters: map[string]*inference.InferParameter{"classification": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 3}}}}}
		resp, err := gc.ModelInfer(ctx, req, grpc.UseCompressor(grpcgzip.Name))
		if err != nil {
			t.Fatal(err)
		}
		outs, err := api.ResponseTensors(resp)
		if err != nil {
			t.Fatal(err)
		}
		got := outs["probabilities"]
		if got == nil || got.DType != tensor.String || fmt.Sprint(got.Shape) != "[2 3]" || !sameClasses(got.Strings, want) {
			t.Errorf("got %v, want %q", got, want)
		}
	})

	t.Run("gzip HTTP", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{
			"inputs": []any{map[string]any{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
		var zbuf bytes.Buffer
		zw := gzip.NewWriter(&zbuf)
		zw.Write(body)
		zw.Close()
		resp, b := post(t, zbuf.Bytes(), map[string]string{"Content-Encoding": "gzip", "Accept-Encoding": "gzip, deflate"})
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(zr)
		}
		if !strings.Contains(string(b), `"probabilities"`) {
			t.Errorf("response %s", b)
		}
	})

	t.Run("ModelReady", func(t *testing.T) {
		for name, ready := range map[string]bool{"classifier": true, "nope": false} {
			r, err := gc.ModelReady(ctx, &inference.ModelReadyRequest{Name: name})
			if err != nil || r.GetReady() != ready {
				t.Errorf("ModelReady(%s) = %v, %v; want %v", name, r, err, ready)
			}
		}
	})
}

// sameClasses compares classification strings "value:index:label": the
// index and label exactly, the value within 1e-5 (the server's batch and
// the test's reference run may round the last digit apart).
func sameClasses(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		gv, grest, ok1 := strings.Cut(got[i], ":")
		wv, wrest, ok2 := strings.Cut(want[i], ":")
		if !ok1 || !ok2 || grest != wrest {
			return false
		}
		g, err1 := strconv.ParseFloat(gv, 64)
		w, err2 := strconv.ParseFloat(wv, 64)
		if err1 != nil || err2 != nil || math.Abs(g-w) > 1e-5 {
			return false
		}
	}
	return true
}
