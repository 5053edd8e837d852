package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
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
//
// Its variations (bareVariant) split what the engine costs in a handler:
// pre runs the engine on an input made at start-up and answers bare's
// reply (no decode, no encode); locked hands the run to one goroutine
// locked to its OS thread (kiln serve's instance pinned to a thread);
// warm runs the engine twice (the first run warms the core for the
// second: the difference from engine is what a cold run costs).
type engineService struct {
	bareService
	variant string
	mu      sync.Mutex
	ctx     *kiln.Context
	pre     map[string]*tensor.Tensor
	jobs    chan *engineJob
	// runs are the engine's run times in the handler (up to maxRuns),
	// reported on stderr when the server is told to stop
	runs []time.Duration
	// diag: the runs of bare-grpc-engine-diag, and the CPU of the last
	diag    []runDiag
	lastCPU int
}

const maxRuns = 1 << 20

// run runs the engine on in under e.mu and records how long it took.
func (e *engineService) run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := time.Now()
	out, err := e.ctx.Run(ctx, in)
	if len(e.runs) < maxRuns {
		e.runs = append(e.runs, time.Since(t))
	}
	return out, err
}

// report writes the median and mean of the runs' times to w.
func (e *engineService) report(w io.Writer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	diagReport(w, e.diag)
	if len(e.runs) == 0 {
		return
	}
	s := slices.Clone(e.runs)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	fmt.Fprintf(w, "reqpath: bare-%s: the engine's run in the handler: p50 %v, p90 %v, mean %v over %d runs\n", e.variant,
		s[len(s)/2], s[len(s)*9/10], sum/time.Duration(len(s)), len(s))
}

// engineJob is a run handed to the locked goroutine.
type engineJob struct {
	ctx  context.Context
	in   map[string]*tensor.Tensor
	out  map[string]*tensor.Tensor
	err  error
	done chan struct{}
}

func (e *engineService) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	if e.variant == "grpc-engine-pre" {
		if _, err := e.run(ctx, e.pre); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return e.bareService.ModelInfer(ctx, r)
	}
	in, err := api.RequestTensors(r)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var out map[string]*tensor.Tensor
	switch e.variant {
	case "grpc-engine-diag":
		e.mu.Lock()
		r := diagRun(&e.lastCPU, func() { out, err = e.ctx.Run(ctx, in) })
		if len(e.diag) < maxRuns {
			e.diag = append(e.diag, r)
		}
		e.mu.Unlock()
	case "grpc-engine-locked":
		j := &engineJob{ctx: ctx, in: in, done: make(chan struct{})}
		e.jobs <- j
		<-j.done
		out, err = j.out, j.err
	case "grpc-engine-warm":
		e.mu.Lock()
		_, err = e.ctx.Run(ctx, in)
		e.mu.Unlock()
		if err == nil {
			out, err = e.run(ctx, in)
		}
	default:
		out, err = e.run(ctx, in)
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return api.NewInferResponse(r.GetModelName(), "1", r.GetId(), out)
}

// lockedLoop runs the jobs handed to it, one at a time, on its goroutine
// locked to its OS thread.
func (e *engineService) lockedLoop() {
	runtime.LockOSThread()
	for j := range e.jobs {
		j.out, j.err = e.run(j.ctx, j.in)
		close(j.done)
	}
}

// spinFor is how long bare-grpc-spin's handler keeps busy: about the
// engine's run back to back.
const spinFor = 10 * time.Microsecond

// spinService is bareService whose handler keeps its core busy spinFor
// first (reading the clock, no memory touched): a handler's work as long
// as the engine's that brings no code or data of its own.
type spinService struct{ bareService }

func (s spinService) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	for t := time.Now(); time.Since(t) < spinFor; {
	}
	return s.bareService.ModelInfer(ctx, r)
}

// decodeService is bareService that decodes the input and encodes a reply
// of tinycnn's output with kiln's api package, as engineService does, but
// runs no engine.
type decodeService struct {
	bareService
	out map[string]*tensor.Tensor
}

func (d decodeService) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	in, err := api.RequestTensors(r)
	if err != nil || in[inputName] == nil {
		return nil, status.Error(codes.InvalidArgument, fmt.Sprint("decode: ", err))
	}
	return api.NewInferResponse(r.GetModelName(), "1", r.GetId(), d.out)
}

// serveBareGRPC serves the bare gRPC server of variant (grpc: bareService;
// grpc-engine and grpc-engine-*: engineService, on tinycnn built by kiln's
// builder when built is set; grpc-spin, grpc-decode) on l until it fails.
//
// A variant ending in -p1 is the same server on one P (GOMAXPROCS 1): no
// other thread of the server spins for work or is woken to run the
// goroutines a request readies.
func serveBareGRPC(l net.Listener, variant string, built bool) error {
	if v, ok := strings.CutSuffix(variant, "-p1"); ok {
		runtime.GOMAXPROCS(1)
		variant = v
	}
	g := grpc.NewServer()
	switch {
	case variant == "grpc":
		inference.RegisterGRPCInferenceServiceServer(g, bareService{})
	case variant == "grpc-spin":
		inference.RegisterGRPCInferenceServiceServer(g, spinService{})
	case variant == "grpc-decode":
		out := tensor.New(tensor.Float32, 1, outputLen)
		inference.RegisterGRPCInferenceServiceServer(g, decodeService{out: map[string]*tensor.Tensor{outputName: out}})
	case strings.HasPrefix(variant, "grpc-engine"):
		m, err := kiln.LoadBytes(examples.TinyCNNModel)
		if built {
			m, err = kiln.BuildBytes(context.Background(), modelName, examples.TinyCNNModel, kiln.BuildOptions{MaxBatch: 8})
		}
		if err != nil {
			return err
		}
		e := &engineService{variant: variant, lastCPU: -1, ctx: m.NewContext(), pre: map[string]*tensor.Tensor{inputName: image(1)}}
		if variant == "grpc-engine-locked" {
			e.jobs = make(chan *engineJob)
			go e.lockedLoop()
		}
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
		go func() {
			<-stop
			e.report(os.Stderr)
			os.Exit(0)
		}()
		inference.RegisterGRPCInferenceServiceServer(g, e)
	default:
		return fmt.Errorf("no bare gRPC server %q", variant)
	}
	return g.Serve(l)
}
