package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api/inference"
)

// echoGRPC is a backend that keeps each ModelInfer request it gets (by id)
// and answers with its raw inputs as raw outputs; ModelStreamInfer answers
// each message the same way. An id that starts with "fail:" is answered
// with the error code that follows, the message "echo: <id>" and a trailer.
type echoGRPC struct {
	inference.UnimplementedGRPCInferenceServiceServer
	mu   sync.Mutex
	seen map[string]*inference.ModelInferRequest
}

func (e *echoGRPC) answer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	e.mu.Lock()
	e.seen[r.Id] = r
	e.mu.Unlock()
	if c, ok := strings.CutPrefix(r.Id, "fail:"); ok {
		n, _ := strconv.Atoi(c)
		grpc.SetTrailer(ctx, metadata.Pairs("echo-trailer", r.Id))
		return nil, status.Error(codes.Code(n), "echo: "+r.Id)
	}
	return &inference.ModelInferResponse{ModelName: r.ModelName, Id: r.Id, RawOutputContents: r.RawInputContents}, nil
}

func (e *echoGRPC) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	return e.answer(ctx, r)
}

func (e *echoGRPC) ModelStreamInfer(s inference.GRPCInferenceService_ModelStreamInferServer) error {
	for {
		r, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := e.answer(s.Context(), r)
		out := &inference.ModelStreamInferResponse{InferResponse: resp}
		if err != nil {
			out = &inference.ModelStreamInferResponse{ErrorMessage: err.Error()}
		}
		if err := s.Send(out); err != nil {
			return err
		}
	}
}

func (e *echoGRPC) got(id string) *inference.ModelInferRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seen[id]
}

// startEcho starts an echoGRPC backend (with a fake HTTP side for the
// polls) and a gateway with opts over it; it returns the backend and a
// client of the gateway.
func startEcho(t testing.TB, opts Options) (*echoGRPC, inference.GRPCInferenceServiceClient) {
	t.Helper()
	h := newFake(t, "echo", "m")
	e := &echoGRPC{seen: map[string]*inference.ModelInferRequest{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	inference.RegisterGRPCInferenceServiceServer(s, e)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	opts.PollInterval, opts.SlowStart = 20*time.Millisecond, -1
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	g.SetEndpoints([]Endpoint{{HTTP: h.addr(), GRPC: l.Addr().String()}})
	for deadline := time.Now().Add(10 * time.Second); !g.Ready() || len(g.index()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(g.GRPCServerOptions(), grpc.MaxRecvMsgSize(64<<20))...)
	go gs.Serve(gl)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return e, inference.NewGRPCInferenceServiceClient(cc)
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 12))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestGRPCPassThrough: the gateway forwards ModelInfer requests and their
// answers as the bytes it got, without decoding or copying them: what the
// backend decodes is what the client sent (with the admitted client's
// priority added where it set none), and what the client decodes is what
// the backend answered, for messages in one receive buffer and for
// messages of many frames (1 MiB and more), many at once on one
// connection; a backend's error keeps its code, message and trailer.
func TestGRPCPassThrough(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		token    string
		priority int64 // the priority the backend should see
	}{
		{name: "plain"},
		{name: "client priority", opts: Options{Clients: []Client{{Name: "c", Token: "tok", Priority: 2}}}, token: "tok", priority: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, c := startEcho(t, tc.opts)
			ctx := context.Background()
			if tc.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.token)
			}
			sizes := []int{0, 1, 12288, 100 << 10, 1<<20 + 3, 5 << 20}
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i, n := range sizes {
						id := fmt.Sprintf("w%d-%d", w, i)
						req := &inference.ModelInferRequest{ModelName: "m", ModelVersion: "1", Id: id,
							Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "UINT8", Shape: []int64{int64(n)}}},
							RawInputContents: [][]byte{randomBytes(uint64(w*100+i), n), randomBytes(uint64(w*100+i+50), n/3)}}
						resp, err := c.ModelInfer(ctx, req)
						if err != nil {
							errs <- fmt.Errorf("%s (%d bytes): %v", id, n, err)
							return
						}
						if len(resp.RawOutputContents) != 2 || !bytes.Equal(resp.RawOutputContents[0], req.RawInputContents[0]) ||
							!bytes.Equal(resp.RawOutputContents[1], req.RawInputContents[1]) || resp.Id != id {
							errs <- fmt.Errorf("%s (%d bytes): the answer differs from what the backend sent", id, n)
							return
						}
						got := e.got(id)
						want := proto.Clone(req).(*inference.ModelInferRequest)
						if tc.priority > 0 {
							want.Parameters = map[string]*inference.InferParameter{"priority": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: tc.priority}}}
						}
						if !proto.Equal(got, want) {
							errs <- fmt.Errorf("%s (%d bytes): the backend got a request other than the one sent", id, n)
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

			for _, code := range []codes.Code{codes.InvalidArgument, codes.NotFound, codes.Internal} {
				var trailer metadata.MD
				id := fmt.Sprintf("fail:%d", code)
				_, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "m", Id: id}, grpc.Trailer(&trailer))
				if st := status.Convert(err); st.Code() != code || st.Message() != "echo: "+id {
					t.Errorf("a backend's %v: got %v", code, err)
				}
				if v := trailer.Get("echo-trailer"); len(v) != 1 || v[0] != id {
					t.Errorf("a backend's %v: trailer %v, want echo-trailer %s", code, trailer, id)
				}
			}

			st, err := c.ModelStreamInfer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var sent []*inference.ModelInferRequest
			for i, n := range sizes {
				req := &inference.ModelInferRequest{ModelName: "m", Id: fmt.Sprintf("s%d", i), RawInputContents: [][]byte{randomBytes(uint64(1000+i), n)}}
				if err := st.Send(req); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, req)
			}
			st.CloseSend()
			for i := 0; ; i++ {
				r, err := st.Recv()
				if err == io.EOF {
					if i != len(sent) {
						t.Errorf("%d stream answers, want %d", i, len(sent))
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				req := sent[i]
				if r.InferResponse.GetId() != req.Id || len(r.InferResponse.RawOutputContents) != 1 || !bytes.Equal(r.InferResponse.RawOutputContents[0], req.RawInputContents[0]) {
					t.Errorf("stream answer %d differs from what the backend sent", i)
				}
				got := e.got(req.Id)
				if got == nil || !bytes.Equal(got.RawInputContents[0], req.RawInputContents[0]) || got.Parameters["priority"].GetInt64Param() != tc.priority {
					t.Errorf("stream message %d: the backend got other bytes, or priority %d (want %d)", i, got.GetParameters()["priority"].GetInt64Param(), tc.priority)
				}
			}
		})
	}
}

// TestRawCodec: a received message is sent on as the same buffers, each
// send taking a reference of its own, so that the buffers outlive grpc-go's
// frees as long as the message holds them; a message replaced (a priority
// added) is sent as its new bytes; other messages are coded as protobuf.
func TestRawCodec(t *testing.T) {
	pool := mem.DefaultBufferPool()
	payload := randomBytes(1, 20000)
	for _, parts := range []int{1, 3} {
		var data mem.BufferSlice
		for i := range parts {
			lo, hi := i*len(payload)/parts, (i+1)*len(payload)/parts
			data = append(data, mem.Copy(payload[lo:hi], pool))
		}
		var m rawMsg
		if err := (rawCodec{}).Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		data.Free()   // as grpc-go does when Unmarshal returns
		for range 2 { // a retry sends it again
			out, err := (rawCodec{}).Marshal(&m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Materialize(), payload) {
				t.Fatalf("%d buffers: sent other bytes", parts)
			}
			out.Free() // as grpc-go does once sent
		}
		if !bytes.Equal(m.bytes(), payload) {
			t.Fatalf("%d buffers: bytes() differs", parts)
		}
		m.set(appendPriority(m.bytes(), 3))
		out, err := (rawCodec{}).Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); !bytes.Equal(got[:len(payload)], payload) || len(got) <= len(payload) {
			t.Fatalf("%d buffers: the replaced message is not sent", parts)
		}
		m.free()
		m.free() // a second free does nothing
	}
	resp := &inference.ServerLiveResponse{Live: true}
	out, err := (rawCodec{}).Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var back inference.ServerLiveResponse
	if err := (rawCodec{}).Unmarshal(out, &back); err != nil || !back.Live {
		t.Fatalf("protobuf message: %v, %v", &back, err)
	}
	if _, err := (rawCodec{}).Marshal(struct{}{}); err == nil {
		t.Error("a value that is not a message: no error")
	}
}

// TestHTTPPassThrough: an answer comes back as the backend sent it: status,
// body byte for byte (a large binary one too) and end-to-end headers, with
// the hop-by-hop ones dropped; a 4xx or 5xx answer is not retried.
func TestHTTPPassThrough(t *testing.T) {
	big := randomBytes(7, 300<<10)
	var calls sync.Map
	backend := func(w http.ResponseWriter, r *http.Request) {
		n, _ := calls.LoadOrStore(r.URL.RawQuery, new(int))
		*n.(*int)++
		w.Header().Set("X-Echo", r.Header.Get("X-Client"))
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(code)
		if r.URL.Query().Get("big") != "" {
			w.Write(big)
			return
		}
		fmt.Fprintf(w, `{"error":"code %d"}`, code)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	mux.HandleFunc("POST /v2/models/m/infer", backend)
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	_, url := newTestGateway(t, Options{}, f)
	for _, tc := range []struct {
		query string
		code  int
		body  []byte
	}{
		{"code=200&big=1", 200, big},
		{"code=200", 200, []byte(`{"error":"code 200"}`)},
		{"code=400", 400, []byte(`{"error":"code 400"}`)},
		{"code=404", 404, []byte(`{"error":"code 404"}`)},
		{"code=500&big=1", 500, big},
	} {
		req, _ := http.NewRequest("POST", url+"/v2/models/m/infer?"+tc.query, strings.NewReader(inferBody))
		req.Header.Set("X-Client", "hello "+tc.query)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.code || !bytes.Equal(body, tc.body) {
			t.Errorf("%s: status %d, %d bytes; want %d, %d bytes as the backend sent", tc.query, resp.StatusCode, len(body), tc.code, len(tc.body))
		}
		if got := resp.Header.Get("X-Echo"); got != "hello "+tc.query {
			t.Errorf("%s: X-Echo %q: the client's header did not reach the backend, or the answer's did not come back", tc.query, got)
		}
		if got := resp.Header.Values("X-Multi"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Errorf("%s: X-Multi %q, want [a b]", tc.query, got)
		}
		if got := resp.Header.Get("Keep-Alive"); got != "" {
			t.Errorf("%s: the hop-by-hop Keep-Alive came through: %q", tc.query, got)
		}
		if n, _ := calls.Load(tc.query); n == nil || *n.(*int) != 1 {
			t.Errorf("%s: the backend got it %v times, want once", tc.query, n)
		}
	}
}

// TestMentionsSequenceID: the fast check finds "sequence_id" wherever it
// is, and nothing else.
func TestMentionsSequenceID(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"parameters":{"sequence_id":5}}`, true},
		{`"sequence_id"`, true},
		{`{"inputs":[{"name":"a_b","data":[1,2]}],"parameters":{"sequence_id":"x"}}`, true},
		{`{"inputs":[],"parameters":{"sequence_start":true}}`, false},
		{`{"parameters":{"sequence_id_x":5}}`, false},
		{`sequence_id"`, false},
		{`_id"`, false},
		{`"sequence_i"`, false},
		{``, false},
	} {
		if got := mentionsSequenceID([]byte(tc.body)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.body, got, tc.want)
		}
		if got, want := mentionsSequenceID([]byte(tc.body)), bytes.Contains([]byte(tc.body), []byte(`"sequence_id"`)); got != want {
			t.Errorf("%s: %v, bytes.Contains %v", tc.body, got, want)
		}
	}
}

// tinyJSON is a KServe v2 JSON request of 3,072 numbers, as tinycnn's.
func tinyJSON() []byte {
	var b bytes.Buffer
	b.WriteString(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","data":[`)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3072 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(strconv.AppendFloat(nil, float64(rng.Float32()), 'g', -1, 32))
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}

func BenchmarkHTTPSequence(b *testing.B) {
	body := tinyJSON()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if seq, _ := httpSequence(body, ""); seq != "" {
			b.Fatal(seq)
		}
	}
}

func BenchmarkWireRoute(b *testing.B) {
	req := &inference.ModelInferRequest{ModelName: "tinycnn", Id: "1",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32}}},
		RawInputContents: [][]byte{make([]byte, 12288)}}
	wire, _ := proto.Marshal(req)
	b.ReportAllocs()
	for b.Loop() {
		if rt, err := wireRoute(wire, true); err != nil || rt.model != "tinycnn" {
			b.Fatal(rt, err)
		}
	}
}

// BenchmarkRawCodec: what the gateway's codec does with one 12 KiB message
// received and sent on (no copy, no allocation).
func BenchmarkRawCodec(b *testing.B) {
	data := mem.BufferSlice{mem.Copy(make([]byte, 12288), mem.DefaultBufferPool())}
	defer data.Free()
	b.ReportAllocs()
	var m rawMsg
	for b.Loop() {
		(rawCodec{}).Unmarshal(data, &m)
		out, _ := (rawCodec{}).Marshal(&m)
		out.Free()
		m.free()
	}
}

// BenchmarkGatewayHTTPInProcess and BenchmarkGatewayGRPCInProcess: one
// tinycnn-sized request at a time through a gateway to a backend that
// answers at once, all in this process over loopback (allocs/op counts
// the client's, the gateway's and the backend's).
func BenchmarkGatewayHTTPInProcess(b *testing.B) {
	f := newFake(b, "a", "m")
	_, url := newTestGateway(b, Options{}, f)
	body := tinyJSON()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(url+"/v2/models/m/infer", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

func BenchmarkGatewayGRPCInProcess(b *testing.B) {
	_, c := startEcho(b, Options{})
	req := &inference.ModelInferRequest{ModelName: "m", Id: "1",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32}}},
		RawInputContents: [][]byte{make([]byte, 12288)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.ModelInfer(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
