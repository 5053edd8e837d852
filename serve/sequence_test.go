package serve_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/grpcapi"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/metrics"
	"github.com/kilnai/kiln/tensor"
)

// accumulatorModel is state_out = y = state_in + x, x and state_in
// [batch, 1] FP32.
func accumulatorModel(t *testing.T) []byte {
	t.Helper()
	b := ir.NewBuilder("acc", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(1))
	s := b.Input("state_in", tensor.Float32, ir.S("batch"), ir.D(1))
	b.Output(b.Op("Add", []*ir.Value{s, x}), "y")
	b.Output(b.Op("Add", []*ir.Value{x, s}), "state_out")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// controlModel is y = x*READY + 1000*START + 100*END, all [batch, 1] FP32,
// and corr = CORRID as FP32.
func controlModel(t *testing.T) []byte {
	t.Helper()
	b := ir.NewBuilder("ctl", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(1))
	start := b.Input("START", tensor.Float32, ir.S("batch"), ir.D(1))
	end := b.Input("END", tensor.Float32, ir.S("batch"), ir.D(1))
	ready := b.Input("READY", tensor.Float32, ir.S("batch"), ir.D(1))
	corr := b.Input("CORRID", tensor.Int64, ir.S("batch"), ir.D(1))
	y := b.Op("Mul", []*ir.Value{x, ready})
	y = b.Op("Add", []*ir.Value{y, b.Op("Mul", []*ir.Value{start, b.Const("k1000", tensor.FromFloat32([]float32{1000}, 1))})})
	y = b.Op("Add", []*ir.Value{y, b.Op("Mul", []*ir.Value{end, b.Const("k100", tensor.FromFloat32([]float32{100}, 1))})})
	b.Output(y, "y")
	b.Output(b.Op("Cast", []*ir.Value{corr}, ir.IntAttr("to", 1)), "corr")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// control2Model is y = x*float(READY) + 1000*float(START), START INT32,
// READY BOOL, and corr = float(CORRID), CORRID UINT32.
func control2Model(t *testing.T) []byte {
	t.Helper()
	b := ir.NewBuilder("ctl2", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(1))
	start := b.Input("START", tensor.Int32, ir.S("batch"), ir.D(1))
	ready := b.Input("READY", tensor.Bool, ir.S("batch"), ir.D(1))
	corr := b.Input("CORRID", tensor.Uint32, ir.S("batch"), ir.D(1))
	f := func(v *ir.Value) *ir.Value { return b.Op("Cast", []*ir.Value{v}, ir.IntAttr("to", 1)) }
	y := b.Op("Mul", []*ir.Value{x, f(ready)})
	y = b.Op("Add", []*ir.Value{y, b.Op("Mul", []*ir.Value{f(start), b.Const("k1000", tensor.FromFloat32([]float32{1000}, 1))})})
	b.Output(y, "y")
	b.Output(f(corr), "corr")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

const ctl2Config = `name: "ctl2"
max_batch_size: 2
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "corr" data_type: TYPE_FP32 dims: [ 1 ] } ]
sequence_batching {
  direct { minimum_slot_utilization: 0.5 max_queue_delay_microseconds: 100 }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT32 } ] }
  ]
}
`

// accConfig is the accumulator with implicit state under name.
func accConfig(name string, maxBatch int, extra string) string {
	return fmt.Sprintf(`name: %q
max_batch_size: %d
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
sequence_batching {
  %s
  state [ { input_name: "state_in" output_name: "state_out" data_type: TYPE_FP32 dims: [ 1 ] } ]
}
`, name, maxBatch, extra)
}

const ctlConfig = `name: "ctl"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "corr" data_type: TYPE_FP32 dims: [ 1 ] } ]
sequence_batching {
  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 1000 }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY fp32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_INT64 } ] }
  ]
}
`

// sequenceRepo writes a repository of the given configs; models named
// acc* run the accumulator, ctl the control model.
func sequenceRepo(t *testing.T, configs map[string]string) string {
	t.Helper()
	repo := t.TempDir()
	acc, ctl := accumulatorModel(t), controlModel(t)
	for name, cfg := range configs {
		v := filepath.Join(repo, name, "1")
		if err := os.MkdirAll(v, 0o755); err != nil {
			t.Fatal(err)
		}
		model := acc
		switch name {
		case "ctl":
			model = ctl
		case "ctl2":
			model = control2Model(t)
		}
		if err := os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, "model.onnx"), model, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return repo
}

// seqServer loads repo and serves it over HTTP and gRPC on loopback.
func seqServer(t *testing.T, repo string) (*serve.Server, string, inference.GRPCInferenceServiceClient) {
	t.Helper()
	s := serve.New(serve.Options{Repository: repo})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	grpcapi.Register(g, s, false)
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop(); ts.Close(); s.Shutdown(context.Background()) })
	return s, ts.URL, inference.NewGRPCInferenceServiceClient(cc)
}

// httpSeq posts one request of x (shape [1,1]) with the sequence
// parameters params; it returns the status, the outputs by name and the
// error text.
func httpSeq(t *testing.T, url, model string, x float32, params map[string]any) (int, map[string]float32, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"parameters": params,
		"inputs": []any{map[string]any{"name": "x", "datatype": "FP32", "shape": []int{1, 1}, "data": []float32{x}}}})
	resp, err := http.Post(url+"/v2/models/"+model+"/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Error   string
		Outputs []struct {
			Name string
			Data []float32
		}
	}
	json.NewDecoder(resp.Body).Decode(&out)
	m := map[string]float32{}
	for _, o := range out.Outputs {
		if len(o.Data) == 1 {
			m[o.Name] = o.Data[0]
		}
	}
	return resp.StatusCode, m, out.Error
}

// grpcSeq sends one request of x with a sequence id (uint64 or string).
func grpcSeq(ctx context.Context, c inference.GRPCInferenceServiceClient, model string, id any, start, end bool, x float32) (float32, error) {
	p := map[string]*inference.InferParameter{
		"sequence_start": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: start}},
		"sequence_end":   {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: end}},
	}
	switch id := id.(type) {
	case uint64:
		p["sequence_id"] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_Uint64Param{Uint64Param: id}}
	case string:
		p["sequence_id"] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: id}}
	}
	resp, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: model, Parameters: p,
		Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 1},
			Contents: &inference.InferTensorContents{Fp32Contents: []float32{x}}}}})
	if err != nil {
		return 0, err
	}
	if len(resp.GetOutputs()) == 0 {
		return 0, fmt.Errorf("no outputs")
	}
	if c := resp.GetOutputs()[0].GetContents(); c != nil && len(c.GetFp32Contents()) == 1 {
		return c.GetFp32Contents()[0], nil
	}
	raw := resp.GetRawOutputContents()
	if len(raw) == 0 || len(raw[0]) != 4 {
		return 0, fmt.Errorf("output not one float: %v", resp)
	}
	t, _ := tensor.FromBytes(tensor.Float32, []int{1}, raw[0])
	return t.Float32s()[0], nil
}

// TestSequenceAccumulator runs sequences of the accumulator (implicit
// state, direct strategy) interleaved from several goroutines over HTTP
// (numeric and string ids) and gRPC: each sequence's outputs are its own
// running sums, in order; every sequence ends and frees its slot.
func TestSequenceAccumulator(t *testing.T) {
	repo := sequenceRepo(t, map[string]string{
		"acc": accConfig("acc", 4, `max_sequence_idle_microseconds: 10000000 direct { max_queue_delay_microseconds: 2000 }`)})
	s, url, gc := seqServer(t, repo)
	const seqs, steps = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, 2*seqs*steps)
	for i := range seqs {
		wg.Add(2)
		go func() { // HTTP: odd sequences by number, even by name
			defer wg.Done()
			var id any = uint64(1000 + i)
			if i%2 == 0 {
				id = fmt.Sprintf("http-%d", i)
			}
			var sum float32
			for k := range steps {
				x := float32(i*10 + k)
				sum += x
				code, out, msg := httpSeq(t, url, "acc", x, map[string]any{"sequence_id": id, "sequence_start": k == 0, "sequence_end": k == steps-1})
				if code != 200 || out["y"] != sum {
					errs <- fmt.Errorf("http sequence %v step %d: status %d %s, y %v, want %v", id, k, code, msg, out["y"], sum)
					return
				}
			}
		}()
		go func() { // gRPC
			defer wg.Done()
			var id any = uint64(2000 + i)
			if i%2 == 0 {
				id = fmt.Sprintf("grpc-%d", i)
			}
			var sum float32
			for k := range steps {
				x := float32(i*100 + k)
				sum += x
				y, err := grpcSeq(context.Background(), gc, "acc", id, k == 0, k == steps-1, x)
				if err != nil || y != sum {
					errs <- fmt.Errorf("grpc sequence %v step %d: %v, y %v, want %v", id, k, err, y, sum)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, ok, err := s.SequenceStats("acc", "")
	if err != nil || !ok {
		t.Fatalf("SequenceStats: %v %v", ok, err)
	}
	if st.Slots != 4 || st.Active != 0 || st.Started != 2*seqs || st.Ended != 2*seqs || st.TimedOut != 0 {
		t.Errorf("stats %+v, want 4 slots, %d started and ended, none active", st, 2*seqs)
	}
	stats, err := s.ModelStats("acc", "")
	if err != nil || len(stats) != 1 {
		t.Fatal(stats, err)
	}
	if got := stats[0].SuccessCount; got != 2*seqs*steps {
		t.Errorf("success count %d, want %d", got, 2*seqs*steps)
	}
	if stats[0].ExecutionCount > stats[0].SuccessCount || stats[0].ExecutionCount == 0 {
		t.Errorf("execution count %d for %d requests", stats[0].ExecutionCount, stats[0].SuccessCount)
	}
	// the metadata shows the client's inputs and outputs only
	resp, err := http.Get(url + "/v2/models/acc")
	if err != nil {
		t.Fatal(err)
	}
	var md struct{ Inputs, Outputs []struct{ Name string } }
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if len(md.Inputs) != 1 || md.Inputs[0].Name != "x" || len(md.Outputs) != 1 || md.Outputs[0].Name != "y" {
		t.Errorf("metadata inputs %v outputs %v, want x and y only", md.Inputs, md.Outputs)
	}
}

// TestSequenceErrors: requests a sequence batcher refuses, worded.
func TestSequenceErrors(t *testing.T) {
	repo := sequenceRepo(t, map[string]string{"acc": accConfig("acc", 4, `direct { }`)})
	_, url, gc := seqServer(t, repo)
	if code, out, msg := httpSeq(t, url, "acc", 1, map[string]any{"sequence_id": 7, "sequence_start": true}); code != 200 || out["y"] != 1 {
		t.Fatalf("start: %d %s %v", code, msg, out)
	}
	for _, tc := range []struct {
		name   string
		params map[string]any
		code   int
		want   string
	}{
		{"no id", map[string]any{}, 400, "needs a sequence_id"},
		{"not started", map[string]any{"sequence_id": 8}, 400, "sequence 8 has not started"},
		{"string not started", map[string]any{"sequence_id": "abc"}, 400, `sequence "abc" has not started`},
		{"negative id", map[string]any{"sequence_id": -1, "sequence_start": true}, 400, "unsigned 64-bit integer or a string"},
		{"bad start", map[string]any{"sequence_id": 9, "sequence_start": "yes"}, 400, `"sequence_start" must be true or false`},
		{"end", map[string]any{"sequence_id": 7, "sequence_end": true}, 200, ""},
		{"after end", map[string]any{"sequence_id": 7}, 400, "sequence 7 has not started"},
		{"restart", map[string]any{"sequence_id": 7, "sequence_start": true}, 200, ""},
	} {
		code, _, msg := httpSeq(t, url, "acc", 1, tc.params)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: status %d %q, want %d %q", tc.name, code, msg, tc.code, tc.want)
		}
	}
	if _, err := grpcSeq(context.Background(), gc, "acc", uint64(99), false, false, 1); err == nil || !strings.Contains(err.Error(), "sequence 99 has not started") {
		t.Errorf("grpc without start: %v", err)
	}
	x := []*inference.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 1},
		Contents: &inference.InferTensorContents{Fp32Contents: []float32{1}}}}
	for _, tc := range []struct {
		name   string
		params map[string]*inference.InferParameter
		want   string
	}{
		{"negative id", map[string]*inference.InferParameter{"sequence_id": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: -3}}}, "sequence_id -3 is negative"},
		{"bool id", map[string]*inference.InferParameter{"sequence_id": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: true}}}, "sequence_id must be a uint64, int64 or string parameter"},
		{"int start", map[string]*inference.InferParameter{"sequence_id": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 3}},
			"sequence_start": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 1}}}, "sequence_start must be a bool parameter"},
	} {
		_, err := gc.ModelInfer(context.Background(), &inference.ModelInferRequest{ModelName: "acc", Parameters: tc.params, Inputs: x})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("grpc %s: %v, want InvalidArgument %q", tc.name, err, tc.want)
		}
	}
	// an int64 id is the same sequence as the uint64 one
	for k, want := range []float32{1, 2} {
		resp, err := gc.ModelInfer(context.Background(), &inference.ModelInferRequest{ModelName: "acc", Inputs: x,
			Parameters: map[string]*inference.InferParameter{"sequence_id": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 77}},
				"sequence_start": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: k == 0}}}})
		if err != nil {
			t.Fatal(err)
		}
		if y, _ := tensor.FromBytes(tensor.Float32, []int{1}, resp.GetRawOutputContents()[0]); y == nil || y.Float32s()[0] != want {
			t.Errorf("int64 id step %d: %v, want %v", k, resp, want)
		}
	}
	if y, err := grpcSeq(context.Background(), gc, "acc", uint64(77), false, true, 1); err != nil || y != 3 {
		t.Errorf("uint64 id 77 after int64 77: %v %v, want 3", y, err)
	}
}

// TestSequenceSlots: with one slot a second sequence waits until the first
// ends; a third, beyond max_sequence_queue, is refused (429); an idle
// sequence's slot is freed after max_sequence_idle_microseconds and its
// next request names it.
func TestSequenceSlots(t *testing.T) {
	repo := sequenceRepo(t, map[string]string{
		"acc1": accConfig("acc1", 1, `max_sequence_idle_microseconds: 200000 direct { }`) +
			`parameters { key: "max_sequence_queue" value { string_value: "1" } }`})
	s, url, _ := seqServer(t, repo)
	stats := func() serve.SequenceStats {
		st, _, _ := s.SequenceStats("acc1", "")
		return st
	}
	waitFor := func(what string, cond func(serve.SequenceStats) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(stats()); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: stats %+v", what, stats())
			}
		}
	}
	if code, _, msg := httpSeq(t, url, "acc1", 1, map[string]any{"sequence_id": 1, "sequence_start": true}); code != 200 {
		t.Fatalf("start 1: %d %s", code, msg)
	}
	done := make(chan string, 1)
	go func() {
		code, out, msg := httpSeq(t, url, "acc1", 5, map[string]any{"sequence_id": 2, "sequence_start": true})
		done <- fmt.Sprintf("%d %v %s", code, out["y"], msg)
	}()
	waitFor("sequence 2 waits", func(st serve.SequenceStats) bool { return st.Waiting == 1 })
	if code, _, msg := httpSeq(t, url, "acc1", 1, map[string]any{"sequence_id": 3, "sequence_start": true}); code != 429 || !strings.Contains(msg, "sequence slots are taken") {
		t.Errorf("third sequence: %d %s, want 429", code, msg)
	}
	if code, out, msg := httpSeq(t, url, "acc1", 2, map[string]any{"sequence_id": 1, "sequence_end": true}); code != 200 || out["y"] != 3 {
		t.Fatalf("end 1: %d %v %s", code, out, msg)
	}
	if got := <-done; got != "200 5 " {
		t.Errorf("sequence 2 after 1 ended: %s", got)
	}
	// sequence 2 goes idle: its slot is freed, its next request is refused
	waitFor("sequence 2 times out", func(st serve.SequenceStats) bool { return st.TimedOut == 1 && st.Active == 0 })
	code, _, msg := httpSeq(t, url, "acc1", 1, map[string]any{"sequence_id": 2})
	if code != 400 || !strings.Contains(msg, "sequence 2 was idle longer than max_sequence_idle_microseconds") {
		t.Errorf("after idle: %d %s", code, msg)
	}
	// and starting it again begins from zero
	if code, out, msg := httpSeq(t, url, "acc1", 4, map[string]any{"sequence_id": 2, "sequence_start": true, "sequence_end": true}); code != 200 || out["y"] != 4 {
		t.Errorf("restart after idle: %d %v %s", code, out, msg)
	}
	// the counters as Prometheus metrics
	rec := httptest.NewRecorder()
	metrics.New(s).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`kiln_sequence_slots{model="acc1",version="1"} 1`,
		`kiln_sequence_active{model="acc1",version="1"} 0`,
		`kiln_sequence_waiting{model="acc1",version="1"} 0`,
		`kiln_sequence_total{model="acc1",outcome="started",version="1"} 3`,
		`kiln_sequence_total{model="acc1",outcome="ended",version="1"} 2`,
		`kiln_sequence_total{model="acc1",outcome="timed_out",version="1"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestSequenceControls: the batcher fills START, END, READY and CORRID
// (oldest strategy); clients send only x.
func TestSequenceControls(t *testing.T) {
	repo := sequenceRepo(t, map[string]string{"ctl": ctlConfig})
	_, url, _ := seqServer(t, repo)
	for _, tc := range []struct {
		params    map[string]any
		y, corrid float32
	}{
		{map[string]any{"sequence_id": 42, "sequence_start": true}, 1000 + 3, 42},
		{map[string]any{"sequence_id": 42}, 3, 42},
		{map[string]any{"sequence_id": 42, "sequence_end": true}, 100 + 3, 42},
		{map[string]any{"sequence_id": 5, "sequence_start": true, "sequence_end": true}, 1100 + 3, 5},
	} {
		code, out, msg := httpSeq(t, url, "ctl", 3, tc.params)
		if code != 200 || out["y"] != tc.y || out["corr"] != tc.corrid {
			t.Errorf("%v: %d %s %v, want y %v corr %v", tc.params, code, msg, out, tc.y, tc.corrid)
		}
	}
	if code, _, msg := httpSeq(t, url, "ctl", 3, map[string]any{"sequence_id": "s", "sequence_start": true}); code != 400 || !strings.Contains(msg, "takes numeric sequence ids") {
		t.Errorf("string id for an INT64 CORRID: %d %s", code, msg)
	}
	// INT32 and BOOL flags, a UINT32 CORRID (direct strategy)
	repo = sequenceRepo(t, map[string]string{"ctl2": ctl2Config})
	_, url, _ = seqServer(t, repo)
	for _, tc := range []struct {
		params    map[string]any
		y, corrid float32
	}{
		{map[string]any{"sequence_id": 65536, "sequence_start": true}, 1000 + 3, 65536},
		{map[string]any{"sequence_id": 65536, "sequence_end": true}, 3, 65536},
	} {
		code, out, msg := httpSeq(t, url, "ctl2", 3, tc.params)
		if code != 200 || out["y"] != tc.y || out["corr"] != tc.corrid {
			t.Errorf("ctl2 %v: %d %s %v, want y %v corr %v", tc.params, code, msg, out, tc.y, tc.corrid)
		}
	}
	if code, _, msg := httpSeq(t, url, "ctl2", 3, map[string]any{"sequence_id": uint64(1) << 40, "sequence_start": true}); code != 400 || !strings.Contains(msg, "takes 32-bit sequence ids") {
		t.Errorf("a 40-bit id for a UINT32 CORRID: %d %s", code, msg)
	}
	// the failed start freed its slot: it is not active
	if code, _, msg := httpSeq(t, url, "ctl2", 3, map[string]any{"sequence_id": uint64(1) << 40}); code != 400 || !strings.Contains(msg, "has not started") {
		t.Errorf("after a failed start: %d %s", code, msg)
	}
}

// TestSequenceLoadErrors: bad sequence_batching configs fail the load,
// the field named.
func TestSequenceLoadErrors(t *testing.T) {
	for _, tc := range []struct{ extra, want string }{
		{`direct { minimum_slot_utilization: 2 }`, "sequence_batching.direct.minimum_slot_utilization"},
		{`oldest { preferred_batch_size: [ 9 ] }`, "sequence_batching.oldest.preferred_batch_size: 9"},
		{`control_input [ { name: "S" control [ { kind: CONTROL_SEQUENCE_START } ] } ]`, "give one of int32_false_true"},
		{`control_input [ { name: "S" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0 ] } ] } ]`, "int32_false_true has 1 values, want 2"},
		{`control_input [ { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } ] } ]`, "CONTROL_SEQUENCE_CORRID data_type TYPE_FP32"},
		{`control_input [ { name: "x" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] } ]`, `"x" is given twice`},
	} {
		repo := sequenceRepo(t, map[string]string{"acc": accConfig("acc", 4, tc.extra)})
		s := serve.New(serve.Options{Repository: repo})
		err := s.LoadAll(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.extra, err, tc.want)
		}
		s.Shutdown(context.Background())
	}
	repo := sequenceRepo(t, map[string]string{"acc": strings.Replace(accConfig("acc", 4, ""), `dims: [ 1 ] } ]
}`, `dims: [ -1 ] } ]
}`, 1)})
	s := serve.New(serve.Options{Repository: repo})
	if err := s.LoadAll(context.Background()); err == nil || !strings.Contains(err.Error(), "needs initial_state dims") {
		t.Errorf("variable state dims: %v", err)
	}
	s.Shutdown(context.Background())
}

// TestSequenceWarmup: a stateful model's warmup samples run as sequences
// that start and end (control and state inputs filled, batch size 2).
func TestSequenceWarmup(t *testing.T) {
	const warm = `model_warmup [ { name: "w" batch_size: 2 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true } } } ]
`
	repo := sequenceRepo(t, map[string]string{"acc": accConfig("acc", 4, "direct { }") + warm, "ctl": ctlConfig + warm})
	_, url, _ := seqServer(t, repo)
	for _, model := range []string{"acc", "ctl"} {
		if code, out, msg := httpSeq(t, url, model, 2, map[string]any{"sequence_id": 1, "sequence_start": true}); code != 200 || out["y"] != map[string]float32{"acc": 2, "ctl": 1002}[model] {
			t.Errorf("%s after warmup: %d %v %s", model, code, out, msg)
		}
	}
}

// TestSequenceWebSocket pipelines requests of three sequences on one
// WebSocket stream without waiting for answers: each sequence's requests
// run in the stream's order, so every answer is its running sum.
func TestSequenceWebSocket(t *testing.T) {
	repo := sequenceRepo(t, map[string]string{"acc": accConfig("acc", 4, "direct { max_queue_delay_microseconds: 1000 }")})
	_, url, _ := seqServer(t, repo)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/v2/models/acc/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	const seqs, steps = 3, 8
	var want []float32
	sums := make([]float32, seqs)
	for k := range steps {
		for i := range seqs {
			x := float32(10*i + k + 1)
			sums[i] += x
			want = append(want, sums[i])
			msg, _ := json.Marshal(map[string]any{"id": fmt.Sprint(i, "/", k),
				"parameters": map[string]any{"sequence_id": uint64(1) << 63 >> i, "sequence_start": k == 0, "sequence_end": k == steps-1},
				"inputs":     []any{map[string]any{"name": "x", "datatype": "FP32", "shape": []int{1, 1}, "data": []float32{x}}}})
			if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	for n, w := range want {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		y, err := streamY(typ, msg)
		if err != nil || y != w {
			t.Errorf("answer %d: y %v (%v), want %v", n, y, err, w)
		}
	}
}

// streamY reads output y (one FP32) of a stream answer, JSON or binary.
func streamY(typ websocket.MessageType, msg []byte) (float32, error) {
	hdr, raw := msg, []byte(nil)
	if typ == websocket.MessageBinary {
		if len(msg) < 4 || int(binary.LittleEndian.Uint32(msg)) > len(msg)-4 {
			return 0, fmt.Errorf("bad binary message")
		}
		hl := binary.LittleEndian.Uint32(msg)
		hdr, raw = msg[4:4+hl], msg[4+hl:]
	}
	var r struct {
		Error   string
		Outputs []struct {
			Name       string
			Data       []float32
			Parameters map[string]any
		}
	}
	if err := json.Unmarshal(hdr, &r); err != nil {
		return 0, err
	}
	if r.Error != "" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	for _, o := range r.Outputs {
		if o.Name != "y" {
			continue
		}
		if len(o.Data) == 1 {
			return o.Data[0], nil
		}
		if len(raw) >= 4 {
			return math.Float32frombits(binary.LittleEndian.Uint32(raw)), nil
		}
	}
	return 0, fmt.Errorf("no output y in %s", hdr)
}

var updateSequence = flag.Bool("update-sequence", false, "rewrite testdata/sequence/accumulate/1/model.onnx")

// TestSequenceTestdata: testdata/sequence (the README's repository) holds
// the accumulator as this file builds it, and serves sequences.
func TestSequenceTestdata(t *testing.T) {
	file := filepath.Join("testdata", "sequence", "accumulate", "1", "model.onnx")
	if *updateSequence {
		if err := os.WriteFile(file, accumulatorModel(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, accumulatorModel(t)) {
		t.Fatalf("%s differs from accumulatorModel (%v): go test ./serve -run TestSequenceTestdata -update-sequence", file, err)
	}
	_, url, _ := seqServer(t, filepath.Join("testdata", "sequence"))
	for k, want := range []float32{1, 3, 6} {
		code, out, msg := httpSeq(t, url, "accumulate", float32(k+1), map[string]any{"sequence_id": 7, "sequence_start": k == 0, "sequence_end": k == 2})
		if code != 200 || out["y"] != want {
			t.Errorf("step %d: %d %v %s, want y %v", k, code, out, msg, want)
		}
	}
}
