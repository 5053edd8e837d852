package grpcapi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/metrics"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// The request path's own cost (issue 14, item 6): kiln's gRPC ModelInfer
// against a bare grpc-go service answering the same message, with the
// model's run replaced by a stub that answers a fixed output at once, so
// that what is left is what kiln adds to grpc-go (decoding the tensors,
// the server's checks, the scheduler, statistics, metrics, the response).
//
//	go test ./serve/grpcapi -run '^$' -bench BenchmarkRequestPath -benchmem

// stubRunner answers every run with tinycnn's output shape, computing
// nothing.
type stubRunner struct{ out *tensor.Tensor }

func (r stubRunner) Run(_ context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return map[string]*tensor.Tensor{"probabilities": r.out}, nil
}

// stubOutput is a [1 10] FP32 tensor.
func stubOutput(tb testing.TB) *tensor.Tensor {
	tb.Helper()
	t, err := tensor.Make(tensor.Float32, []int{1, 10})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// pathOptions says how pathServer serves tinycnn.
type pathOptions struct {
	// config is the model's config.pbtxt ("" for none)
	config string
	// engine runs the model (else a stub answers at once)
	engine bool
	// server returns the grpc.ServerOptions (nil: kiln serve's own, the
	// decode-error options, the served-time tap and PathOptions)
	server func(*serve.Server) []grpc.ServerOption
	// wrap, when set, replaces the model's runner (engine and stub alike)
	wrap func(string, scheduler.Runner) scheduler.Runner
	// built: the engine built by kiln's builder with the options the
	// model's config asks for, as kiln serve's loader builds it (else the
	// graph as loaded, kiln.Load)
	built bool
}

// pathServer serves tinycnn as kiln serve does (the metrics observer, and
// unless o.server says otherwise the decode-error options, the served-time
// stats handler and PathOptions), its runs stubbed unless o.engine.
func pathServer(tb testing.TB, o pathOptions) (inference.GRPCInferenceServiceClient, *serve.Server) {
	tb.Helper()
	s := pathServe(tb, o)
	gopts := append(append(DecodeErrorOptions(), ServedStats(s)), PathOptions()...)
	if o.server != nil {
		gopts = o.server(s)
	}
	g := grpc.NewServer(gopts...)
	Register(g, s, false)
	return dial(tb, g), s
}

// pathServe returns the serve.Server of pathServer.
func pathServe(tb testing.TB, o pathOptions) *serve.Server {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tinycnn", "1"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tinycnn", "1", "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
		tb.Fatal(err)
	}
	if o.config != "" {
		if err := os.WriteFile(filepath.Join(dir, "tinycnn", "config.pbtxt"), []byte(o.config), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	opts := serve.Options{Repository: dir, Observer: metrics.New(nil)}
	if o.built {
		opts.Loader = func(path string, cfg *repository.Config) (*kiln.Model, error) {
			bo, err := repository.BuildOptions(filepath.Dir(filepath.Dir(path)), cfg)
			if err != nil {
				return nil, err
			}
			return kiln.Build(context.Background(), path, bo)
		}
	}
	if !o.engine {
		out := stubOutput(tb)
		opts.WrapRunner = func(string, scheduler.Runner) scheduler.Runner { return stubRunner{out} }
	}
	if o.wrap != nil {
		opts.WrapRunner = o.wrap
	}
	s := serve.New(opts)
	if err := s.LoadAll(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// bareService answers ModelInfer with a response of the stub's size and
// does nothing else.
type bareService struct {
	inference.UnimplementedGRPCInferenceServiceServer
}

func (bareService) ModelInfer(_ context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	return &inference.ModelInferResponse{ModelName: r.GetModelName(), ModelVersion: "1", Id: r.GetId(),
		Outputs:           []*inference.ModelInferResponse_InferOutputTensor{{Name: "probabilities", Datatype: "FP32", Shape: []int64{1, 10}}},
		RawOutputContents: [][]byte{make([]byte, 40)}}, nil
}

// engineService is bench/reqpath's "bare grpc-go running the engine in its
// handler": the raw input decoded with kiln's api package, tinycnn run on
// one execution context in the handler's goroutine.
type engineService struct {
	bareService
	mu  sync.Mutex
	ctx *kiln.Context
}

func (e *engineService) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	in, err := api.RequestTensors(r)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	out, err := e.ctx.Run(ctx, in)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return api.NewInferResponse(r.GetModelName(), "1", r.GetId(), out)
}

// redial returns a client of c's server on a connection of its own.
func redial(tb testing.TB, c inference.GRPCInferenceServiceClient) inference.GRPCInferenceServiceClient {
	tb.Helper()
	addr := addrs[c]
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	return inference.NewGRPCInferenceServiceClient(cc)
}

// addrs are the addresses of the servers dial served.
var addrs = map[inference.GRPCInferenceServiceClient]string{}

// dial serves g on loopback and returns a client of it.
func dial(tb testing.TB, g *grpc.Server) inference.GRPCInferenceServiceClient {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close(); g.Stop() })
	c := inference.NewGRPCInferenceServiceClient(cc)
	addrs[c] = lis.Addr().String()
	return c
}

func tinyRequest(tb testing.TB) *inference.ModelInferRequest {
	tb.Helper()
	req, err := api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)})
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// BenchmarkRequestPath: one client's ModelInfer calls, one at a time, to
// a bare grpc-go service and to kiln's: the model stubbed (bundled: no
// batching; with dynamic batching without delay, as a repository's tinycnn
// in bench/reqpath.sh; without the served-time tap or the decode-error
// options, to see what each costs) and with tinycnn's engine (as kiln
// serve; without PathOptions; with only their stream workers) against
// bare grpc-go running the engine in its handler (bench/reqpath's
// bare-grpc-engine; the model's graph as loaded, as in pathServer).
func BenchmarkRequestPath(b *testing.B) {
	req := tinyRequest(b)
	servers := []struct {
		name string
		opts pathOptions
	}{
		{"bare", pathOptions{}},
		{"kiln", pathOptions{}},
		{"kiln-batching", pathOptions{config: "max_batch_size: 8\ndynamic_batching { }\n"}},
		{"kiln-no-stats", pathOptions{server: func(*serve.Server) []grpc.ServerOption {
			return append(DecodeErrorOptions(), PathOptions()...)
		}}},
		{"kiln-no-decode-options", pathOptions{server: func(s *serve.Server) []grpc.ServerOption {
			return append(PathOptions(), ServedStats(s))
		}}},
		{"bare-engine", pathOptions{}},
		{"kiln-engine", pathOptions{engine: true}},
		{"kiln-engine-no-path-options", pathOptions{engine: true, server: func(s *serve.Server) []grpc.ServerOption {
			return append(DecodeErrorOptions(), ServedStats(s))
		}}},
		{"kiln-engine-stream-workers-only", pathOptions{engine: true, server: func(s *serve.Server) []grpc.ServerOption {
			return append(DecodeErrorOptions(), ServedStats(s), PathOptions()[0])
		}}},
		// the engine built as kiln serve builds the bundled tinycnn (its
		// config completed: max_batch_size 8, dynamic batching, two CPU
		// instances), against bare grpc-go running bench/reqpath's
		// engine (kiln.BuildBytes, batch 1..8) in its handler: issue 14's
		// one-client comparison in process; and the same kiln server made
		// to hand every request to an instance goroutine (a queue delay
		// of 1 us: no run on the RPC's goroutine), to see what the fast
		// path saves
		{"bare-engine-built", pathOptions{}},
		{"kiln-engine-built", pathOptions{engine: true, built: true}},
		{"kiln-engine-built-handoff", pathOptions{engine: true, built: true,
			config: "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1 }\ninstance_group { count: 2 kind: KIND_CPU }\n"}},
		// kiln serve --intra-op-threads 1
		{"kiln-engine-built-threads=1", pathOptions{engine: true, built: true}},
	}
	for _, sv := range servers {
		b.Run(sv.name, func(b *testing.B) {
			if _, n, ok := strings.Cut(sv.name, "threads="); ok {
				k, _ := strconv.Atoi(n)
				if err := cpu.SetThreads(k); err != nil {
					b.Fatal(err)
				}
				defer cpu.SetThreads(0)
			}
			var c inference.GRPCInferenceServiceClient
			switch sv.name {
			case "bare":
				g := grpc.NewServer()
				inference.RegisterGRPCInferenceServiceServer(g, bareService{})
				c = dial(b, g)
			case "bare-engine":
				g := grpc.NewServer()
				// the graph as loaded, as pathServer's serve.Server runs it
				m, err := kiln.LoadBytes(examples.TinyCNNModel)
				if err != nil {
					b.Fatal(err)
				}
				inference.RegisterGRPCInferenceServiceServer(g, &engineService{ctx: m.NewContext()})
				c = dial(b, g)
			case "bare-engine-built":
				g := grpc.NewServer()
				m, err := kiln.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, kiln.BuildOptions{MaxBatch: 8})
				if err != nil {
					b.Fatal(err)
				}
				inference.RegisterGRPCInferenceServiceServer(g, &engineService{ctx: m.NewContext()})
				c = dial(b, g)
			default:
				c, _ = pathServer(b, sv.opts)
			}
			ctx := context.Background()
			for range 10 {
				if _, err := c.ModelInfer(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			io0 := ioCalls()
			c0 := cpuTime()
			sw0, g0 := switches(), goroutinesCreated()
			for b.Loop() {
				if _, err := c.ModelInfer(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			// the process's threads' context switches (voluntary and
			// not), client and server: each is a thread that blocked or
			// was preempted, most of them a goroutine hand-off that found
			// no running thread to take it
			b.ReportMetric(float64(switches()-sw0)/float64(b.N), "ctxsw/op")
			b.ReportMetric(float64(goroutinesCreated()-g0)/float64(b.N), "goroutines/op")
			// the process's CPU time, client and server, steadier than
			// the wall time on a shared machine
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
			// read and write system calls, client and server (Linux)
			if io0 >= 0 {
				b.ReportMetric(float64(ioCalls()-io0)/float64(b.N), "rw-syscalls/op")
			}
		})
	}
}

// switches returns the context switches of the process's threads so far
// (getrusage's voluntary and involuntary counts, summed over its threads).
func switches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}

// goroutinesCreated returns the goroutines the process created so far.
func goroutinesCreated() uint64 {
	s := []rtmetrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// ioCalls returns the process's read and write system calls so far
// (syscr + syscw of /proc/self/io), or -1 where there is no such file.
func ioCalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			x, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			n += x
		}
	}
	return n
}

// BenchmarkRequestPathClients: 16 clients, each on its own connection as
// bench/reqpath's, calling ModelInfer back to back; the model stubbed, so
// that what is measured is the request path (the process's CPU time per
// request, clients included: compare the variants with each other): a
// bare grpc-go service, kiln's with kiln serve's options, and kiln's with
// other grpc-go server options (grpc-go 1.85 shares write buffers by
// default: grpc.SharedWriteBuffer is deprecated).
func BenchmarkRequestPathClients(b *testing.B) {
	const clients = 16
	req := tinyRequest(b)
	kilnOpts := func(more ...grpc.ServerOption) func(s *serve.Server) []grpc.ServerOption {
		return func(s *serve.Server) []grpc.ServerOption {
			return append(append(append(DecodeErrorOptions(), ServedStats(s)), PathOptions()...), more...)
		}
	}
	for _, sv := range []struct {
		name string
		opts pathOptions
	}{
		{"bare", pathOptions{}},
		{"kiln", pathOptions{}},
		{"kiln-16-workers-per-core", pathOptions{server: kilnOpts(grpc.NumStreamWorkers(uint32(16 * runtime.GOMAXPROCS(0))))}},
		{"kiln-64k-buffers", pathOptions{server: kilnOpts(grpc.ReadBufferSize(64<<10), grpc.WriteBufferSize(64<<10))}},
		// tinycnn's engine, its layers split as device/cpu decides
		// (automatic: on the caller alone while the cores are busy), on
		// one thread, and always over GOMAXPROCS threads (as before the
		// automatic mode)
		{"kiln-engine", pathOptions{engine: true}},
		{"kiln-engine-threads=1", pathOptions{engine: true}},
		{"kiln-engine-threads=2", pathOptions{engine: true}},
		// the config as the repository's in bench/reqpath.sh (dynamic
		// batching, as kiln serve also completes a config-less model's),
		// and one that lists its inputs and outputs, which kiln takes as
		// written: no dynamic batching (one request a run)
		{"kiln-engine-batching", pathOptions{engine: true, config: "max_batch_size: 8\ndynamic_batching { }\n"}},
		{"kiln-engine-no-batching", pathOptions{engine: true, config: noBatchingConfig}},
		// two instances (Triton's default count for an ONNX Runtime model
		// on the CPU; kiln's default is one)
		{"kiln-engine-2-instances", pathOptions{engine: true, config: "max_batch_size: 8\ndynamic_batching { }\ninstance_group { count: 2 kind: KIND_CPU }\n"}},
		// the SLO batcher (a P99 objective of 20 ms), which waits for
		// requests still in the request path
		{"kiln-engine-slo", pathOptions{engine: true, config: "max_batch_size: 8\ndynamic_batching { }\nparameters { key: \"slo_p99_ms\" value { string_value: \"20\" } }\n"}},
	} {
		b.Run(sv.name, func(b *testing.B) {
			if _, n, ok := strings.Cut(sv.name, "threads="); ok {
				k, _ := strconv.Atoi(n)
				if err := cpu.SetThreads(k); err != nil {
					b.Fatal(err)
				}
				defer cpu.SetThreads(0)
			}
			var g *grpc.Server
			var s *serve.Server
			if sv.name == "bare" {
				g = grpc.NewServer()
				inference.RegisterGRPCInferenceServiceServer(g, bareService{})
			} else {
				s = pathServe(b, sv.opts)
				gopts := append(append(DecodeErrorOptions(), ServedStats(s)), PathOptions()...)
				if sv.opts.server != nil {
					gopts = sv.opts.server(s)
				}
				g = grpc.NewServer(gopts...)
				Register(g, s, false)
			}
			cs := make([]inference.GRPCInferenceServiceClient, clients)
			cs[0] = dial(b, g)
			for i := 1; i < clients; i++ {
				cs[i] = redial(b, cs[0])
			}
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			c0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := cs[int(next.Add(1)-1)%clients]
				for pb.Next() {
					if _, err := c.ModelInfer(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
			if s != nil {
				// the mean requests a model run (warm-up runs included)
				if st, err := s.ModelStats("tinycnn", ""); err == nil && len(st) == 1 && st[0].ExecutionCount > 0 {
					b.ReportMetric(float64(st[0].InferenceCount)/float64(st[0].ExecutionCount), "requests/run")
				}
			}
		})
	}
}

// noBatchingConfig is tinycnn's config with its inputs and outputs listed,
// which kiln (as Triton) takes as written: max_batch_size 8, no dynamic
// batching, as kiln serve served its bundled tinycnn before it completed
// configs with dynamic batching.
const noBatchingConfig = `max_batch_size: 8
input { name: "image" data_type: TYPE_FP32 dims: [3, 32, 32] }
output { name: "probabilities" data_type: TYPE_FP32 dims: [10] }
`
