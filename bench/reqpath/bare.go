package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
)

// The bare servers do what any server of the protocol must do and nothing
// more: the HTTP one decodes the request with encoding/json into a struct
// and answers a reply of the size kiln's has (tinycnn's 10 probabilities);
// the gRPC one answers ModelInfer with such a reply (grpc-go has decoded the
// request message by then). They are the floor kiln's request path is
// compared with.

// bareRequest is a KServe v2 JSON request as a plain Go server decodes it.
type bareRequest struct {
	ID         string         `json:"id,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Inputs     []struct {
		Name       string         `json:"name"`
		Shape      []int64        `json:"shape"`
		Datatype   string         `json:"datatype"`
		Parameters map[string]any `json:"parameters,omitempty"`
		Data       []float32      `json:"data"`
	} `json:"inputs"`
	Outputs []struct {
		Name       string         `json:"name"`
		Parameters map[string]any `json:"parameters,omitempty"`
	} `json:"outputs,omitempty"`
}

type bareOutput struct {
	Name     string    `json:"name"`
	Datatype string    `json:"datatype"`
	Shape    []int64   `json:"shape"`
	Data     []float32 `json:"data"`
}

type bareResponse struct {
	ModelName    string       `json:"model_name"`
	ModelVersion string       `json:"model_version"`
	ID           string       `json:"id"`
	Outputs      []bareOutput `json:"outputs"`
}

// bareProbs returns 10 values that look like tinycnn's output (a softmax of
// the first inputs), so that the reply has the size of kiln's.
func bareProbs(in []float32) []float32 {
	out := make([]float32, outputLen)
	var sum float64
	for i := range out {
		x := 0.5
		if i < len(in) {
			x = float64(in[i])
		}
		v := math.Exp(x)
		out[i] = float32(v)
		sum += v
	}
	for i := range out {
		out[i] = float32(float64(out[i]) / sum)
	}
	return out
}

// bareHTTP is the bare net/http + encoding/json inference handler.
func bareHTTP() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/models/{model}/infer", func(w http.ResponseWriter, r *http.Request) {
		var req bareRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if len(req.Inputs) != 1 || len(req.Inputs[0].Data) != inputLen {
			http.Error(w, "want one input of 3072 values", http.StatusBadRequest)
			return
		}
		b, err := json.Marshal(bareResponse{ModelName: r.PathValue("model"), ModelVersion: "1", ID: req.ID,
			Outputs: []bareOutput{{Name: outputName, Datatype: "FP32", Shape: []int64{1, outputLen}, Data: bareProbs(req.Inputs[0].Data)}}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	return mux
}

// bareService is the bare grpc-go inference service: ModelInfer answers a
// reply of tinycnn's size and does nothing else.
type bareService struct {
	inference.UnimplementedGRPCInferenceServiceServer
}

func (bareService) ModelInfer(_ context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	raw := make([]byte, 4*outputLen)
	for i, v := range bareProbs(nil) {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &inference.ModelInferResponse{ModelName: r.GetModelName(), ModelVersion: "1", Id: r.GetId(),
		Outputs:           []*inference.ModelInferResponse_InferOutputTensor{{Name: outputName, Datatype: "FP32", Shape: []int64{1, outputLen}}},
		RawOutputContents: [][]byte{raw}}, nil
}

func (bareService) ServerReady(context.Context, *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	return &inference.ServerReadyResponse{Ready: true}, nil
}

// serveBareHTTP serves bareHTTP on l until it fails.
func serveBareHTTP(l net.Listener) error {
	srv := &http.Server{Handler: bareHTTP(), ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(l)
}

// engineService is bareService running the engine: ModelInfer decodes the
// raw input with kiln's api package and runs tinycnn on one execution
// context (one at a time, as kiln serve's one instance), in the handler's
// own goroutine. It is the floor of a gRPC server that runs the model.
type engineService struct {
	bareService
	mu  sync.Mutex
	ctx *kiln.Context
}

func (e *engineService) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	in, err := api.RequestTensors(r)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	e.mu.Lock()
	out, err := e.ctx.Run(ctx, in)
	e.mu.Unlock()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return api.NewInferResponse(r.GetModelName(), "1", r.GetId(), out)
}

// serveBareGRPC serves bareService (withEngine: engineService, on tinycnn
// built by kiln's builder when built is set) on l until it fails.
func serveBareGRPC(l net.Listener, withEngine, built bool) error {
	g := grpc.NewServer()
	if withEngine {
		m, err := kiln.LoadBytes(examples.TinyCNNModel)
		if built {
			m, err = kiln.BuildBytes(context.Background(), modelName, examples.TinyCNNModel, kiln.BuildOptions{MaxBatch: 8})
		}
		if err != nil {
			return err
		}
		inference.RegisterGRPCInferenceServiceServer(g, &engineService{ctx: m.NewContext()})
	} else {
		inference.RegisterGRPCInferenceServiceServer(g, bareService{})
	}
	return g.Serve(l)
}
