package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
)

// counterValue reads one series of the metrics port (0 when absent).
func counterValue(t *testing.T, s *served, series string) float64 {
	t.Helper()
	code, body := call(t, nil, "GET", "http://"+s.metrics+"/metrics", "", nil)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

// TestServeRequestDurationEdges (issue 13): kiln_request_duration_us,
// whose rate is the autoscaler's kiln_inflight_requests, counts each
// inference request from its arrival at the HTTP, gRPC (unary and
// stream) or WebSocket edge to its response written: at least the
// server core's time (nv_inference_request_duration_us, the scheduler's),
// and the time a slow client takes to send its body, which the core never
// sees. Requests for unknown models leave no series.
func TestServeRequestDurationEdges(t *testing.T) {
	s := startServed(t, "--no-build")
	base := "http://" + s.http
	edge := func() float64 { return counterValue(t, s, `kiln_request_duration_us{model="tinycnn"}`) }
	core := func() float64 {
		return counterValue(t, s, `nv_inference_request_duration_us{model="tinycnn",version="1"}`)
	}
	in := examples.TinyCNNInput(1)
	jsonBody, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
	raw := make([]byte, 0, 4*len(in.Float32s()))
	for _, f := range in.Float32s() {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
	}
	grpcReq := func() *inference.ModelInferRequest {
		return &inference.ModelInferRequest{ModelName: "tinycnn", Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32}}}, RawInputContents: [][]byte{raw}}
	}
	const pause = 300 * time.Millisecond
	cases := []struct {
		name     string
		requests int
		send     func(t *testing.T)
		// atLeast is what the edge counts beyond the core's time, in us
		atLeast float64
	}{
		{"http, body sent slowly", 1, func(t *testing.T) {
			pr, pw := io.Pipe()
			go func() {
				half := len(jsonBody) / 2
				pw.Write(jsonBody[:half])
				time.Sleep(pause)
				pw.Write(jsonBody[half:])
				pw.Close()
			}()
			resp, err := http.Post(base+"/v2/models/tinycnn/infer", "application/json", pr)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("infer: %s", resp.Status)
			}
		}, float64(pause.Microseconds())},
		{"grpc unary", 2, func(t *testing.T) {
			c := inference.NewGRPCInferenceServiceClient(s.grpcConn(t))
			for range 2 {
				if _, err := c.ModelInfer(context.Background(), grpcReq()); err != nil {
					t.Fatal(err)
				}
			}
		}, 0},
		{"grpc stream", 3, func(t *testing.T) {
			st, err := inference.NewGRPCInferenceServiceClient(s.grpcConn(t)).ModelStreamInfer(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := st.Send(grpcReq()); err != nil {
					t.Fatal(err)
				}
			}
			for range 3 {
				r, err := st.Recv()
				if err != nil || r.GetErrorMessage() != "" {
					t.Fatalf("stream: %v %s", err, r.GetErrorMessage())
				}
			}
			st.CloseSend()
		}, 0},
		{"websocket", 3, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+s.http+"/v2/models/tinycnn/stream", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 24)
			for range 3 {
				if err := c.Write(ctx, websocket.MessageText, jsonBody); err != nil {
					t.Fatal(err)
				}
			}
			for range 3 {
				_, msg, err := c.Read(ctx)
				if err != nil || strings.Contains(string(msg), `"error"`) {
					t.Fatalf("stream: %v %.200s", err, msg)
				}
			}
			c.Close(websocket.StatusNormalClosure, "")
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e0, c0 := edge(), core()
			n0 := counterValue(t, s, `nv_inference_request_success{model="tinycnn",version="1"}`)
			tc.send(t)
			// the edge reports once the response is written: the client
			// may have read it just before
			var e1, c1 float64
			eventually(t, "the edge to count the requests", func() bool {
				e1, c1 = edge(), core()
				return e1-e0 >= c1-c0+tc.atLeast && e1 > e0
			})
			if n := counterValue(t, s, `nv_inference_request_success{model="tinycnn",version="1"}`) - n0; n != float64(tc.requests) {
				t.Errorf("%v requests succeeded, want %d", n, tc.requests)
			}
			t.Logf("%d request(s): %.0f us from arrival to response written, %.0f us in the server's core", tc.requests, e1-e0, c1-c0)
		})
	}
	// a model the server does not know leaves no series of its name
	call(t, nil, "POST", base+"/v2/models/nosuch/infer", "", jsonBody)
	if _, body := call(t, nil, "GET", "http://"+s.metrics+"/metrics", "", nil); strings.Contains(body, `model="nosuch"`) {
		t.Errorf("metrics have a series for an unknown model")
	}
}
