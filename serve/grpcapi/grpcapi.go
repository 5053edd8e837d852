// Package grpcapi is the gRPC front end of a serve.Server:
// inference.GRPCInferenceService (KServe v2 / Triton protocol, from package
// api/inference) over the same Server the HTTP front end uses, with the
// server's sentinel errors mapped to gRPC status codes.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // gzip-compressed requests, as Triton's clients send them
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
)

// Service implements inference.GRPCInferenceServiceServer over a serve.Server.
type Service struct {
	inference.UnimplementedGRPCInferenceServiceServer
	s *serve.Server
	// ModelControl allows RepositoryModelLoad and RepositoryModelUnload.
	ModelControl bool
	// Ready, when not nil, is what ServerReady reports instead of the
	// server's own readiness (kiln serve: not ready while the repository is
	// still loading).
	Ready func() bool
}

var _ inference.GRPCInferenceServiceServer = (*Service)(nil)

// New returns the gRPC service of s.
func New(s *serve.Server, modelControl bool) *Service {
	return &Service{s: s, ModelControl: modelControl}
}

// Register registers a Service for s on g and returns it.
func Register(g *grpc.Server, s *serve.Server, modelControl bool) *Service {
	v := New(s, modelControl)
	inference.RegisterGRPCInferenceServiceServer(g, v)
	return v
}

// Code returns the gRPC status code for an error of the server.
func Code(err error) codes.Code {
	switch {
	case errors.Is(err, serve.ErrInvalid), errors.Is(err, api.ErrDatatype), errors.Is(err, api.ErrShape),
		errors.Is(err, api.ErrSize), errors.Is(err, api.ErrContents),
		errors.Is(err, repository.ErrSyntax), errors.Is(err, repository.ErrConfig),
		errors.Is(err, repository.ErrModel), errors.Is(err, repository.ErrNoVersion), errors.Is(err, serve.ErrWarmup):
		return codes.InvalidArgument
	case errors.Is(err, serve.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, serve.ErrQueueFull):
		return codes.ResourceExhausted
	case errors.Is(err, serve.ErrNotReady), errors.Is(err, serve.ErrTimeout):
		return codes.Unavailable
	case errors.Is(err, serve.ErrUnsupported):
		return codes.Unimplemented
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

func toStatus(err error) error { return status.Error(Code(err), err.Error()) }

// ServerLive reports whether the server is up.
func (v *Service) ServerLive(context.Context, *inference.ServerLiveRequest) (*inference.ServerLiveResponse, error) {
	return &inference.ServerLiveResponse{Live: v.s.Live()}, nil
}

// ServerReady reports whether the server serves inference.
func (v *Service) ServerReady(context.Context, *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	if v.Ready != nil {
		return &inference.ServerReadyResponse{Ready: v.Ready()}, nil
	}
	return &inference.ServerReadyResponse{Ready: v.s.Ready()}, nil
}

// ModelReady reports whether a model version is ready. As Triton's, it
// answers ready=false, not NOT_FOUND, for a model or version that is not
// loaded (unknown, unloaded, loading or failed), so that a client waiting
// for a model to load can poll it.
func (v *Service) ModelReady(_ context.Context, r *inference.ModelReadyRequest) (*inference.ModelReadyResponse, error) {
	ok, err := v.s.ModelReady(r.GetName(), r.GetVersion())
	if errors.Is(err, serve.ErrNotFound) {
		return &inference.ModelReadyResponse{Ready: false}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &inference.ModelReadyResponse{Ready: ok}, nil
}

// ServerMetadata returns the server's name, version and extensions.
func (v *Service) ServerMetadata(context.Context, *inference.ServerMetadataRequest) (*inference.ServerMetadataResponse, error) {
	return &inference.ServerMetadataResponse{Name: v.s.Name(), Version: kiln.Version,
		Extensions: []string{"classification", "model_repository", "statistics", "schedule_policy", "system_shared_memory", "cuda_shared_memory", "trace", "logging"}}, nil
}

// ModelMetadata returns a model's versions, inputs and outputs.
func (v *Service) ModelMetadata(_ context.Context, r *inference.ModelMetadataRequest) (*inference.ModelMetadataResponse, error) {
	cfg, versions, err := v.s.ModelConfig(r.GetName(), r.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	meta := func(ios []repository.IO) []*inference.ModelMetadataResponse_TensorMetadata {
		var out []*inference.ModelMetadataResponse_TensorMetadata
		for _, io := range ios {
			dt, _ := api.Datatype(io.DataType)
			shape := []int64{}
			if cfg.MaxBatchSize > 0 {
				shape = append(shape, -1)
			}
			out = append(out, &inference.ModelMetadataResponse_TensorMetadata{Name: io.Name, Datatype: dt, Shape: append(shape, io.Dims...)})
		}
		return out
	}
	return &inference.ModelMetadataResponse{Name: cfg.Name, Versions: versions, Platform: cfg.Platform,
		Inputs: meta(cfg.Inputs), Outputs: meta(cfg.Outputs)}, nil
}

func paramInt(p map[string]*inference.InferParameter, key string) int64 {
	x := p[key]
	if x == nil {
		return 0
	}
	switch c := x.GetParameterChoice().(type) {
	case *inference.InferParameter_Int64Param:
		return c.Int64Param
	case *inference.InferParameter_Uint64Param:
		return int64(min(c.Uint64Param, 1<<62))
	}
	return 0
}

// paramSequence reads the sequence parameters: sequence_id (uint64, int64
// or string), sequence_start and sequence_end (bool).
func paramSequence(p map[string]*inference.InferParameter) (serve.Sequence, error) {
	var q serve.Sequence
	switch c := p["sequence_id"].GetParameterChoice().(type) {
	case nil:
	case *inference.InferParameter_Uint64Param:
		q.ID = c.Uint64Param
	case *inference.InferParameter_Int64Param:
		if c.Int64Param < 0 {
			return q, errors.Join(serve.ErrInvalid, fmt.Errorf("sequence_id %d is negative", c.Int64Param))
		}
		q.ID = uint64(c.Int64Param)
	case *inference.InferParameter_StringParam:
		q.Name = c.StringParam
	default:
		return q, errors.Join(serve.ErrInvalid, errors.New("sequence_id must be a uint64, int64 or string parameter"))
	}
	for _, k := range []string{"sequence_start", "sequence_end"} {
		switch c := p[k].GetParameterChoice().(type) {
		case nil:
		case *inference.InferParameter_BoolParam:
			if k == "sequence_start" {
				q.Start = c.BoolParam
			} else {
				q.End = c.BoolParam
			}
		default:
			return q, errors.Join(serve.ErrInvalid, fmt.Errorf("%s must be a bool parameter", k))
		}
	}
	return q, nil
}

func (v *Service) infer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	// r's pooled raw inputs (see unmarshalInferRequest) go back to the pool
	// once the request has succeeded; a failed one keeps them (a cancelled
	// request may still be queued), for the garbage collector to take
	released := false
	defer func() {
		if !released {
			takeLease(r)
		}
	}()
	inputs, err := v.requestTensors(r)
	if err != nil {
		return nil, err
	}
	outShm, err := outputShm(r)
	if err != nil {
		return nil, err
	}
	var outs []string
	var classes map[string]int
	for _, o := range r.GetOutputs() {
		outs = append(outs, o.GetName())
		// "classification" as Triton's clients send it; "class_count" too
		for _, key := range []string{"classification", "class_count"} {
			if _, set := o.GetParameters()[key]; !set {
				continue
			}
			k := paramInt(o.GetParameters(), key)
			if k < 0 || k > serve.MaxClassCount {
				return nil, errors.Join(serve.ErrInvalid, fmt.Errorf("output %q: %s %d outside 0..%d", o.GetName(), key, k, serve.MaxClassCount))
			}
			if k > 0 {
				if classes == nil {
					classes = map[string]int{}
				}
				classes[o.GetName()] = int(k)
			}
		}
	}
	prio, timeout := paramInt(r.GetParameters(), "priority"), paramInt(r.GetParameters(), "timeout")
	if prio < 0 || prio > 1<<20 || timeout < 0 {
		return nil, errors.Join(serve.ErrInvalid, errors.New("bad priority or timeout parameter"))
	}
	seq, err := paramSequence(r.GetParameters())
	if err != nil {
		return nil, err
	}
	resp, err := v.s.Infer(ctx, &serve.InferRequest{Model: r.GetModelName(), Version: r.GetModelVersion(), ID: r.GetId(),
		Inputs: inputs, Outputs: outs, Priority: int(prio), Timeout: time.Duration(timeout) * time.Microsecond, Classes: classes,
		Sequence: seq, OutputShm: outShm})
	if err != nil {
		return nil, err
	}
	out, err := inferResponse(resp)
	if err == nil && seq == (serve.Sequence{}) {
		// (a sequence's state may outlive the request: its buffers stay)
		release(r, resp.Outputs)
		released = true
	}
	return out, err
}

// ModelInfer runs one inference request.
func (v *Service) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	if at, ok := arrival(ctx); ok {
		defer v.s.Served(r.GetModelName(), at)
	}
	// the CPU engine splits a layer over the cores only while they are
	// not all busy with requests (device/cpu's RequestStarted): counted
	// from the RPC's start where InFlightOption is installed, else here
	if !counted(ctx) {
		cpu.RequestStarted()
		defer cpu.RequestDone()
	}
	resp, err := v.infer(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// ModelStreamInfer answers each request of the stream in turn; a failed
// request is answered with its error message and the stream goes on.
func (v *Service) ModelStreamInfer(st grpc.BidiStreamingServer[inference.ModelInferRequest, inference.ModelStreamInferResponse]) error {
	_, served := arrival(st.Context())
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		at := time.Now()
		cpu.RequestStarted()
		resp, err := v.infer(st.Context(), r)
		cpu.RequestDone()
		out := &inference.ModelStreamInferResponse{InferResponse: resp}
		if err != nil {
			out = &inference.ModelStreamInferResponse{ErrorMessage: err.Error()}
		}
		err = st.Send(out)
		if served {
			v.s.Served(r.GetModelName(), at)
		}
		if err != nil {
			return err
		}
	}
}

// ModelStatistics returns the statistics of one or all models.
func (v *Service) ModelStatistics(_ context.Context, r *inference.ModelStatisticsRequest) (*inference.ModelStatisticsResponse, error) {
	st, err := v.s.ModelStats(r.GetName(), r.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &inference.ModelStatisticsResponse{}
	for _, s := range st {
		var last uint64
		if !s.LastInference.IsZero() {
			last = uint64(s.LastInference.UnixMilli())
		}
		d := func(c, ns uint64) *inference.StatisticDuration { return &inference.StatisticDuration{Count: c, Ns: ns} }
		run := s.SuccessCount - s.CacheHitCount // computed, not answered from the cache
		var batches []*inference.InferBatchStatistics
		for _, b := range s.Batches {
			batches = append(batches, &inference.InferBatchStatistics{BatchSize: uint64(b.BatchSize),
				ComputeInput: d(b.Count, b.ComputeInputNs), ComputeInfer: d(b.Count, b.ComputeInferNs), ComputeOutput: d(b.Count, b.ComputeOutputNs)})
		}
		mem, resps := statsExtras(s)
		out.ModelStats = append(out.ModelStats, &inference.ModelStatistics{BatchStats: batches, MemoryUsage: mem, ResponseStats: resps,
			Name: s.Model, Version: s.Version, LastInference: last,
			InferenceCount: s.InferenceCount, ExecutionCount: s.ExecutionCount,
			InferenceStats: &inference.InferStatistics{Success: d(s.SuccessCount, s.SuccessNs), Fail: d(s.FailCount, s.FailNs),
				Queue: d(run, s.QueueNs), ComputeInput: d(run, s.ComputeInputNs),
				ComputeInfer: d(run, s.ComputeNs), ComputeOutput: d(run, s.ComputeOutputNs),
				CacheHit: d(s.CacheHitCount, s.CacheHitNs), CacheMiss: d(s.CacheMissCount, s.CacheMissNs)},
		})
	}
	return out, nil
}

// RepositoryIndex lists the repository's models and their state.
func (v *Service) RepositoryIndex(_ context.Context, r *inference.RepositoryIndexRequest) (*inference.RepositoryIndexResponse, error) {
	out := &inference.RepositoryIndexResponse{}
	for _, e := range v.s.RepositoryIndex() {
		if r.GetReady() && e.State != "READY" {
			continue
		}
		out.Models = append(out.Models, &inference.RepositoryIndexResponse_ModelIndex{Name: e.Name, Version: e.Version, State: e.State, Reason: e.Reason})
	}
	return out, nil
}

// RepositoryModelLoad loads or reloads a model (explicit model control only).
func (v *Service) RepositoryModelLoad(ctx context.Context, r *inference.RepositoryModelLoadRequest) (*inference.RepositoryModelLoadResponse, error) {
	if !v.ModelControl {
		return nil, status.Error(codes.Unimplemented, "explicit model load needs --model-control-mode explicit")
	}
	var lr serve.LoadRequest
	for k, p := range r.GetParameters() {
		switch {
		case k == "config":
			s, ok := p.GetParameterChoice().(*inference.ModelRepositoryParameter_StringParam)
			if !ok {
				return nil, status.Error(codes.InvalidArgument, `load: parameter "config" must be a string_param with a model config in JSON`)
			}
			lr.Config = []byte(s.StringParam)
		case strings.HasPrefix(k, "file:"):
			b, ok := p.GetParameterChoice().(*inference.ModelRepositoryParameter_BytesParam)
			if !ok {
				return nil, status.Errorf(codes.InvalidArgument, "load: parameter %q must be a bytes_param", k)
			}
			if lr.Files == nil {
				lr.Files = map[string][]byte{}
			}
			lr.Files[strings.TrimPrefix(k, "file:")] = b.BytesParam
		default:
			return nil, status.Errorf(codes.InvalidArgument, `load: unknown parameter %q (want "config" or "file:<path>")`, k)
		}
	}
	// a load goes on when its client leaves, as Load always did
	if err := v.s.LoadWith(context.WithoutCancel(ctx), r.GetModelName(), lr); err != nil {
		return nil, toStatus(err)
	}
	return &inference.RepositoryModelLoadResponse{}, nil
}

// RepositoryModelUnload unloads a model once its queued requests finish
// (explicit model control only).
func (v *Service) RepositoryModelUnload(ctx context.Context, r *inference.RepositoryModelUnloadRequest) (*inference.RepositoryModelUnloadResponse, error) {
	if !v.ModelControl {
		return nil, status.Error(codes.Unimplemented, "explicit model unload needs --model-control-mode explicit")
	}
	if err := v.s.Unload(ctx, r.GetModelName()); err != nil {
		return nil, toStatus(err)
	}
	return &inference.RepositoryModelUnloadResponse{}, nil
}
