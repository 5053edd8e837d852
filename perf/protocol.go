package perf

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
)

// The protocols a run may use.
const (
	HTTP      = "http"
	GRPC      = "grpc"
	WebSocket = "ws"
)

// ErrServer reports that the server could not be asked for a model's
// metadata or statistics.
var ErrServer = errors.New("perf: server")

// RequestError is a failed inference request; Kind names the failure as
// the report counts it: "HTTP 429", a gRPC code such as
// "gRPC RESOURCE_EXHAUSTED", "stream" (an error answer on a stream),
// "timeout" or "connection".
type RequestError struct {
	Kind string
	Err  error
}

func (e *RequestError) Error() string { return e.Kind + ": " + e.Err.Error() }
func (e *RequestError) Unwrap() error { return e.Err }

// ErrorKind is the kind under which err is counted.
func ErrorKind(err error) string {
	if re, ok := errors.AsType[*RequestError](err); ok {
		return re.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if s, ok := status.FromError(err); ok && s.Code() != 0 {
		return grpcCode(s.Code())
	}
	return "connection"
}

// grpcCode is "gRPC " and a code's canonical name (INVALID_ARGUMENT).
func grpcCode(c codes.Code) string {
	var b strings.Builder
	b.WriteString("gRPC ")
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteString(strings.ToUpper(string(r)))
	}
	return b.String()
}

// inputMeta is one model input as the server describes it.
type inputMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// serverStats is the part of a model's statistics a run uses, summed over
// the model's versions.
type serverStats struct {
	Success, Fail                     uint64
	SuccessNs, QueueNs, InputNs       uint64
	InferNs, OutputNs, InferenceCount uint64
	ExecutionCount                    uint64
}

func (s serverStats) sub(o serverStats) serverStats {
	return serverStats{
		Success: s.Success - o.Success, Fail: s.Fail - o.Fail, SuccessNs: s.SuccessNs - o.SuccessNs,
		QueueNs: s.QueueNs - o.QueueNs, InputNs: s.InputNs - o.InputNs, InferNs: s.InferNs - o.InferNs,
		OutputNs: s.OutputNs - o.OutputNs, InferenceCount: s.InferenceCount - o.InferenceCount,
		ExecutionCount: s.ExecutionCount - o.ExecutionCount,
	}
}

// target is one protocol's way to a server: the model's metadata and
// statistics, and connections that send requests.
type target interface {
	metadata(ctx context.Context) ([]inputMeta, error)
	stats(ctx context.Context) (serverStats, error)
	// prepare encodes the input sets once, before the run.
	prepare(sets []map[string]*tensor.Tensor) error
	open(ctx context.Context) (conn, error)
	close() error
}

// conn sends one request at a time (a worker owns one).
type conn interface {
	do(ctx context.Context, set int) error
	close() error
}

// targetConfig is what every protocol needs from the run's options.
type targetConfig struct {
	url, model, version, token string
	binary, streaming          bool
	conns                      int
	tls                        *tls.Config
}

func newTarget(ctx context.Context, c targetConfig, protocol string) (target, error) {
	switch protocol {
	case HTTP, WebSocket:
		h := newHTTPTarget(c)
		if protocol == WebSocket {
			if c.tls != nil && c.tls.RootCAs != nil {
				return nil, fmt.Errorf("%w: -i ws over TLS trusts the system's certificates only: a private CA (--tls-ca) is for http and grpc", ErrConfig)
			}
			return &wsTarget{httpTarget: h}, nil
		}
		return h, nil
	case GRPC:
		return newGRPCTarget(ctx, c)
	}
	return nil, fmt.Errorf("%w: protocol %q: want http, grpc or ws", ErrConfig, protocol)
}

// ---- HTTP ----

type httpTarget struct {
	c      targetConfig
	base   string // http://host:port
	client *http.Client
	path   string // /v2/models/m[/versions/v]
	bodies [][]byte
	hdrLen []int // Inference-Header-Content-Length of binary bodies
}

func newHTTPTarget(c targetConfig) *httpTarget {
	base := c.url
	if !strings.Contains(base, "://") {
		if c.tls != nil {
			base = "https://" + base
		} else {
			base = "http://" + base
		}
	}
	path := "/v2/models/" + url.PathEscape(c.model)
	if c.version != "" {
		path += "/versions/" + url.PathEscape(c.version)
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        max(c.conns, 2) * 2,
		MaxIdleConnsPerHost: max(c.conns, 2) * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     c.tls,
	}
	return &httpTarget{c: c, base: strings.TrimSuffix(base, "/"), client: &http.Client{Transport: tr}, path: path}
}

func (h *httpTarget) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+path, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	h.auth(req.Header)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrServer, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get(gatewayStatistics) != "" && resp.StatusCode == http.StatusOK {
		return errGatewayStatistics
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: GET %s: %w", ErrServer, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET %s: HTTP %d: %s", ErrServer, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: GET %s: %w", ErrServer, path, err)
	}
	return nil
}

func (h *httpTarget) auth(hd http.Header) {
	if h.c.token != "" {
		hd.Set("Authorization", "Bearer "+h.c.token)
	}
}

func (h *httpTarget) metadata(ctx context.Context) ([]inputMeta, error) {
	var md struct {
		Inputs []inputMeta `json:"inputs"`
	}
	if err := h.get(ctx, h.path, &md); err != nil {
		return nil, err
	}
	return md.Inputs, nil
}

// gatewayStatistics is the header (gRPC: metadata) with which kiln gateway
// marks the statistics it passes on from one of its backends.
const gatewayStatistics = "Kiln-Gateway-Statistics"

// errGatewayStatistics: the server is a kiln gateway, whose statistics are
// one backend's: comparing them with the load sent would be wrong.
var errGatewayStatistics = fmt.Errorf("%w: the statistics come through a kiln gateway, from one of its backends, not the sum over them (--no-server-stats: measure from the client's side without this warning)", ErrServer)

func (h *httpTarget) stats(ctx context.Context) (serverStats, error) {
	type cn struct {
		Count uint64 `json:"count"`
		Ns    uint64 `json:"ns"`
	}
	var st struct {
		ModelStats []struct {
			InferenceCount uint64 `json:"inference_count"`
			ExecutionCount uint64 `json:"execution_count"`
			InferenceStats struct {
				Success       cn `json:"success"`
				Fail          cn `json:"fail"`
				Queue         cn `json:"queue"`
				ComputeInput  cn `json:"compute_input"`
				ComputeInfer  cn `json:"compute_infer"`
				ComputeOutput cn `json:"compute_output"`
			} `json:"inference_stats"`
		} `json:"model_stats"`
	}
	if err := h.get(ctx, h.path+"/stats", &st); err != nil {
		return serverStats{}, err
	}
	var s serverStats
	for _, m := range st.ModelStats {
		is := m.InferenceStats
		s.Success += is.Success.Count
		s.SuccessNs += is.Success.Ns
		s.Fail += is.Fail.Count
		s.QueueNs += is.Queue.Ns
		s.InputNs += is.ComputeInput.Ns
		s.InferNs += is.ComputeInfer.Ns
		s.OutputNs += is.ComputeOutput.Ns
		s.InferenceCount += m.InferenceCount
		s.ExecutionCount += m.ExecutionCount
	}
	return s, nil
}

type httpWireTensor struct {
	Name       string         `json:"name"`
	Shape      []int64        `json:"shape"`
	Datatype   string         `json:"datatype"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Data       any            `json:"data,omitempty"`
}

func (h *httpTarget) prepare(sets []map[string]*tensor.Tensor) error {
	for _, set := range sets {
		var ins []httpWireTensor
		var raw []byte
		for _, n := range sortedNames(set) {
			t := set[n]
			dt, err := api.Datatype(t.DType)
			if err != nil {
				return fmt.Errorf("%w: input %s: %w", ErrConfig, n, err)
			}
			w := httpWireTensor{Name: n, Shape: api.WireShape(t.Shape), Datatype: dt}
			if h.c.binary {
				b, err := api.EncodeRaw(t)
				if err != nil {
					return fmt.Errorf("%w: input %s: %w", ErrConfig, n, err)
				}
				w.Parameters = map[string]any{"binary_data_size": len(b)}
				raw = append(raw, b...)
			} else {
				if w.Data, err = jsonData(t); err != nil {
					return fmt.Errorf("%w: input %s: %w", ErrConfig, n, err)
				}
			}
			ins = append(ins, w)
		}
		body := map[string]any{"inputs": ins}
		if h.c.binary {
			body["parameters"] = map[string]any{"binary_data_output": true}
		}
		hdr, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		h.hdrLen = append(h.hdrLen, len(hdr))
		h.bodies = append(h.bodies, append(hdr, raw...))
	}
	return nil
}

// jsonData is a tensor's values as the JSON "data" array.
func jsonData(t *tensor.Tensor) (any, error) {
	switch {
	case t.DType == tensor.Bool:
		return t.Bools(), nil
	case t.DType == tensor.String:
		return nil, fmt.Errorf("BYTES inputs are not supported")
	case t.DType.IsFloat():
		v := make([]float64, t.Len())
		for i := range v {
			v[i] = t.Float(i)
		}
		return v, nil
	}
	v := make([]int64, t.Len())
	for i := range v {
		v[i] = t.Int(i)
	}
	return v, nil
}

func (h *httpTarget) open(context.Context) (conn, error) { return h, nil }

func (h *httpTarget) do(ctx context.Context, set int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+h.path+"/infer", bytes.NewReader(h.bodies[set]))
	if err != nil {
		return &RequestError{"connection", err}
	}
	h.auth(req.Header)
	if h.c.binary {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(h.hdrLen[set]))
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return &RequestError{"timeout", err}
		}
		return &RequestError{"connection", err}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &RequestError{fmt.Sprintf("HTTP %d", resp.StatusCode), errors.New(http.StatusText(resp.StatusCode))}
	}
	if err != nil {
		return &RequestError{"connection", err}
	}
	return nil
}

func (h *httpTarget) close() error {
	h.client.CloseIdleConnections()
	return nil
}

// ---- WebSocket ----

type wsTarget struct {
	*httpTarget
	sets []map[string]*tensor.Tensor
}

func (w *wsTarget) prepare(sets []map[string]*tensor.Tensor) error {
	w.sets = sets
	return nil
}

type wsConn struct {
	w  *wsTarget
	s  *api.WebSocketStream
	id int
}

func (w *wsTarget) open(ctx context.Context) (conn, error) {
	c := &wsConn{w: w}
	return c, c.dial(ctx)
}

func (c *wsConn) dial(ctx context.Context) error {
	hd := http.Header{}
	c.w.auth(hd)
	s, err := api.DialWebSocket(ctx, c.w.base, c.w.c.model, hd, 0)
	if err != nil {
		return &RequestError{"connection", err}
	}
	c.s = s
	return nil
}

func (c *wsConn) do(ctx context.Context, set int) error {
	if c.s == nil {
		if err := c.dial(ctx); err != nil {
			return err
		}
	}
	c.id++
	id := strconv.Itoa(c.id)
	if err := c.s.Send(ctx, id, c.w.sets[set]); err != nil {
		return c.broken(err)
	}
	got, _, err := c.s.Recv(ctx)
	if err != nil {
		if errors.Is(err, api.ErrStream) {
			return &RequestError{"stream", err}
		}
		return c.broken(err)
	}
	if got != id {
		return c.broken(fmt.Errorf("answer %q to request %q", got, id))
	}
	return nil
}

// broken drops a connection that failed: the next request dials again.
func (c *wsConn) broken(err error) error {
	c.s.CloseNow()
	c.s = nil
	if errors.Is(err, context.DeadlineExceeded) {
		return &RequestError{"timeout", err}
	}
	return &RequestError{"connection", err}
}

func (c *wsConn) close() error {
	if c.s == nil {
		return nil
	}
	return c.s.Close()
}

// ---- gRPC ----

type grpcTarget struct {
	c      targetConfig
	client *api.Client
	reqs   []*inference.ModelInferRequest
}

func newGRPCTarget(ctx context.Context, c targetConfig) (*grpcTarget, error) {
	addr := c.url
	for _, p := range []string{"grpc://", "http://", "https://"} {
		addr = strings.TrimPrefix(addr, p)
	}
	var opts []grpc.DialOption
	if c.tls != nil || strings.HasPrefix(c.url, "https://") {
		cfg := c.tls
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := api.Dial(dctx, addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServer, err)
	}
	return &grpcTarget{c: c, client: cl}, nil
}

func (g *grpcTarget) ctx(ctx context.Context) context.Context {
	if g.c.token != "" {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+g.c.token)
	}
	return ctx
}

func (g *grpcTarget) metadata(ctx context.Context) ([]inputMeta, error) {
	md, err := g.client.ModelMetadata(g.ctx(ctx), g.c.model, g.c.version)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServer, err)
	}
	var out []inputMeta
	for _, in := range md.GetInputs() {
		out = append(out, inputMeta{Name: in.GetName(), Datatype: in.GetDatatype(), Shape: in.GetShape()})
	}
	return out, nil
}

func (g *grpcTarget) stats(ctx context.Context) (serverStats, error) {
	var md metadata.MD
	r, err := g.client.RPC().ModelStatistics(g.ctx(ctx), &inference.ModelStatisticsRequest{Name: g.c.model, Version: g.c.version}, grpc.Header(&md))
	if err != nil {
		return serverStats{}, fmt.Errorf("%w: ModelStatistics: %w", ErrServer, err)
	}
	if len(md.Get(gatewayStatistics)) > 0 {
		return serverStats{}, errGatewayStatistics
	}
	var s serverStats
	for _, m := range r.GetModelStats() {
		is := m.GetInferenceStats()
		s.Success += is.GetSuccess().GetCount()
		s.SuccessNs += is.GetSuccess().GetNs()
		s.Fail += is.GetFail().GetCount()
		s.QueueNs += is.GetQueue().GetNs()
		s.InputNs += is.GetComputeInput().GetNs()
		s.InferNs += is.GetComputeInfer().GetNs()
		s.OutputNs += is.GetComputeOutput().GetNs()
		s.InferenceCount += m.GetInferenceCount()
		s.ExecutionCount += m.GetExecutionCount()
	}
	return s, nil
}

func (g *grpcTarget) prepare(sets []map[string]*tensor.Tensor) error {
	for _, set := range sets {
		r, err := api.NewInferRequest(g.c.model, set)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		r.ModelVersion = g.c.version
		g.reqs = append(g.reqs, r)
	}
	return nil
}

func (g *grpcTarget) open(ctx context.Context) (conn, error) {
	if !g.c.streaming {
		return grpcUnary{g}, nil
	}
	// A stream sets its requests' ids: its own copies.
	c := &grpcStream{g: g}
	for _, r := range g.reqs {
		c.reqs = append(c.reqs, proto.Clone(r).(*inference.ModelInferRequest))
	}
	return c, c.dial(ctx)
}

func (g *grpcTarget) close() error { return g.client.Close() }

type grpcUnary struct{ g *grpcTarget }

func (u grpcUnary) do(ctx context.Context, set int) error {
	_, err := u.g.client.RPC().ModelInfer(u.g.ctx(ctx), u.g.reqs[set])
	if err != nil {
		return &RequestError{ErrorKind(err), err}
	}
	return nil
}

func (grpcUnary) close() error { return nil }

type grpcStream struct {
	g      *grpcTarget
	s      inference.GRPCInferenceService_ModelStreamInferClient
	cancel context.CancelFunc
	reqs   []*inference.ModelInferRequest
	id     int
}

func (c *grpcStream) dial(context.Context) error {
	// The stream outlives the request that opened it: its own context,
	// ended by close.
	sctx, cancel := context.WithCancel(context.Background())
	s, err := c.g.client.RPC().ModelStreamInfer(c.g.ctx(sctx))
	if err != nil {
		cancel()
		return &RequestError{ErrorKind(err), err}
	}
	c.s, c.cancel = s, cancel
	return nil
}

func (c *grpcStream) do(ctx context.Context, set int) error {
	if c.s == nil {
		if err := c.dial(ctx); err != nil {
			return err
		}
	}
	c.id++
	id := strconv.Itoa(c.id)
	req := c.reqs[set]
	req.Id = id
	// Send and Recv do not take a context: a request past its deadline
	// drops the stream.
	done := make(chan error, 1)
	go func() {
		if err := c.s.Send(req); err != nil {
			done <- err
			return
		}
		r, err := c.s.Recv()
		if err != nil {
			done <- err
			return
		}
		if msg := r.GetErrorMessage(); msg != "" {
			done <- &RequestError{"stream", errors.New(msg)}
			return
		}
		if got := r.GetInferResponse().GetId(); got != id {
			done <- fmt.Errorf("answer %q to request %q", got, id)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		if _, ok := errors.AsType[*RequestError](err); ok {
			return err
		}
		c.drop()
		return &RequestError{ErrorKind(err), err}
	case <-ctx.Done():
		c.drop()
		<-done
		return &RequestError{"timeout", ctx.Err()}
	}
}

func (c *grpcStream) drop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.s, c.cancel = nil, nil
}

func (c *grpcStream) close() error {
	if c.s != nil {
		c.s.CloseSend()
	}
	c.drop()
	return nil
}
