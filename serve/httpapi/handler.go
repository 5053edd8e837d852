package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
)

// DefaultMaxRequestBytes bounds a request body unless Options say otherwise.
const DefaultMaxRequestBytes = 64 << 20

// Options configures the handler.
type Options struct {
	// MaxRequestBytes bounds request bodies (0: DefaultMaxRequestBytes);
	// larger bodies are answered 413.
	MaxRequestBytes int64
	// DisableModelControl refuses the repository load and unload requests
	// (model control modes "none" and "poll").
	DisableModelControl bool
	// InferToken, when set, is the bearer token the inference, metadata,
	// config and statistics requests must carry.
	InferToken string
	// AdminToken, when set, is the bearer token the repository requests and
	// the trace and log settings must carry. Health checks need no token.
	AdminToken string
	// StreamInFlight bounds the requests in flight on one WebSocket stream
	// (0: DefaultStreamInFlight).
	StreamInFlight int
	// PingInterval is how often streams are pinged (0: DefaultPingInterval).
	PingInterval time.Duration
}

type handler struct {
	s    *serve.Server
	opts Options
}

// New returns the KServe v2 HTTP handler of s.
func New(s *serve.Server, opts Options) http.Handler {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.StreamInFlight <= 0 {
		opts.StreamInFlight = DefaultStreamInFlight
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	h := &handler{s: s, opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", h.live)
	mux.HandleFunc("GET /v2/health/ready", h.ready)
	mux.HandleFunc("GET /v2", h.metadata)
	for _, p := range []string{"/v2/models/{model}", "/v2/models/{model}/versions/{version}"} {
		mux.HandleFunc("GET "+p, versioned(h.modelMetadata))
		mux.HandleFunc("GET "+p+"/ready", versioned(h.modelReady))
		mux.HandleFunc("POST "+p+"/infer", versioned(h.infer))
		mux.HandleFunc("GET "+p+"/config", versioned(h.config))
		mux.HandleFunc("GET "+p+"/stats", versioned(h.stats))
		mux.HandleFunc("GET "+p+"/stream", versioned(h.stream))
	}
	mux.HandleFunc("GET /v2/models/stats", h.stats)
	mux.HandleFunc("POST /v2/repository/index", h.index)
	mux.HandleFunc("POST /v2/repository/models/{model}/load", h.load)
	mux.HandleFunc("POST /v2/repository/models/{model}/unload", h.unload)
	h.shmRoutes(mux)
	h.settingRoutes(mux)
	return h.authorize(h.compression(h.route(mux)))
}

// route serves mux's routes, and answers in JSON what it has no route for:
// 405 with an Allow header for a path served with other methods, else 404.
func (h *handler) route(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next, pattern := mux.Handler(r)
		if pattern != "" {
			// a route, or the mux's redirect to a clean path
			mux.ServeHTTP(w, r)
			return
		}
		// The mux's own answer tells 404 from 405 and which methods the
		// path allows; it is rewritten as a JSON error.
		c := &headerCapture{h: http.Header{}}
		next.ServeHTTP(c, r)
		if c.code == http.StatusMethodNotAllowed {
			allow := c.h.Get("Allow")
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed for %s (allowed: %s)", r.Method, r.URL.Path, allow))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("no route for %s %s", r.Method, r.URL.Path))
	})
}

// headerCapture is a ResponseWriter that keeps the status and headers and
// drops the body.
type headerCapture struct {
	h    http.Header
	code int
}

func (c *headerCapture) Header() http.Header { return c.h }

func (c *headerCapture) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return len(b), nil
}

func (c *headerCapture) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive (RFC 9110, section 11.1).
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimLeft(h, " "), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.Trim(token, " ")
	return token, token != ""
}

// ErrVersion is returned for a model version in a path that is not a
// canonical decimal number.
var ErrVersion = fmt.Errorf("%w: bad model version", serve.ErrInvalid)

// versioned refuses a request whose path has a version that checkVersion
// refuses, before next sees it.
func versioned(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := checkVersion(r); err != nil {
			writeError(w, Status(err), err)
			return
		}
		next(w, r)
	}
}

// isDecimal reports whether s is a canonical decimal number: digits only,
// without sign, spaces or leading zeros.
func isDecimal(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// checkVersion checks the {version} of a request's path: a version is a
// decimal number without sign, spaces or leading zeros ("1", "20"; "0" is
// the version directory 0), as the repository's folders are named.
func checkVersion(r *http.Request) error {
	if !strings.Contains(r.Pattern, "{version}") {
		return nil
	}
	if v := r.PathValue("version"); !isDecimal(v) || len(v) > 19 {
		return fmt.Errorf("%w %q: want a decimal number without sign, spaces or leading zeros", ErrVersion, v)
	}
	return nil
}

// authorize checks bearer tokens: none for health, AdminToken for the
// repository API and the trace and log settings, InferToken for the rest.
func (h *handler) authorize(next http.Handler) http.Handler {
	if h.opts.InferToken == "" && h.opts.AdminToken == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := h.opts.InferToken
		switch {
		case strings.HasPrefix(r.URL.Path, "/v2/health/"):
			want = ""
		case strings.HasPrefix(r.URL.Path, "/v2/repository/"), isSettingPath(r.URL.Path):
			want = h.opts.AdminToken
		}
		if want != "" {
			got, ok := bearerToken(r.Header.Get("Authorization"))
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="kiln"`)
				writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Status returns the HTTP status code for an error of the server.
func Status(err error) int {
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBodyTimeout):
		return http.StatusRequestTimeout
	case errors.Is(err, ErrUnknownEncoding):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, ErrDecode), errors.Is(err, ErrEncoding), errors.Is(err, serve.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, serve.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, serve.ErrQueueFull):
		return http.StatusTooManyRequests
	case errors.Is(err, serve.ErrNotReady), errors.Is(err, serve.ErrTimeout):
		return http.StatusServiceUnavailable
	case errors.Is(err, serve.ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(err, repository.ErrSyntax), errors.Is(err, repository.ErrConfig),
		errors.Is(err, repository.ErrModel), errors.Is(err, repository.ErrNoVersion), errors.Is(err, serve.ErrWarmup):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return 499 // client closed request
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the response as JSON"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (h *handler) fail(w http.ResponseWriter, err error) { writeError(w, Status(err), err) }

func (h *handler) live(w http.ResponseWriter, r *http.Request) {
	if h.s.Live() {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}

func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	if h.s.Ready() {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}

func (h *handler) metadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"name": h.s.Name(), "version": kiln.Version,
		"extensions": []string{"classification", "binary_tensor_data", "model_repository", "statistics", "model_configuration", "schedule_policy", "system_shared_memory", "cuda_shared_memory", "trace", "logging"},
	})
}

type tensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func metas(ios []repository.IO, batched bool) []tensorMeta {
	out := []tensorMeta{}
	for _, io := range ios {
		shape := []int64{}
		if batched {
			shape = append(shape, -1)
		}
		out = append(out, tensorMeta{Name: io.Name, Datatype: DataTypeName(io.DataType), Shape: append(shape, io.Dims...)})
	}
	return out
}

func (h *handler) modelMetadata(w http.ResponseWriter, r *http.Request) {
	cfg, versions, err := h.s.ModelConfig(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": cfg.Name, "versions": versions, "platform": cfg.Platform,
		"inputs": metas(cfg.Inputs, cfg.MaxBatchSize > 0), "outputs": metas(cfg.Outputs, cfg.MaxBatchSize > 0),
	})
}

func (h *handler) modelReady(w http.ResponseWriter, r *http.Request) {
	ok, err := h.s.ModelReady(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		h.fail(w, err)
		return
	}
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	st, err := h.s.ModelStats(r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		h.fail(w, err)
		return
	}
	out := []map[string]any{}
	for _, s := range st {
		last := int64(0)
		if !s.LastInference.IsZero() {
			last = s.LastInference.UnixMilli()
		}
		cn := func(c, ns uint64) map[string]uint64 { return map[string]uint64{"count": c, "ns": ns} }
		run := s.SuccessCount - s.CacheHitCount // computed, not answered from the cache
		batches := []map[string]any{}
		for _, b := range s.Batches {
			batches = append(batches, map[string]any{"batch_size": b.BatchSize,
				"compute_input": cn(b.Count, b.ComputeInputNs), "compute_infer": cn(b.Count, b.ComputeInferNs), "compute_output": cn(b.Count, b.ComputeOutputNs)})
		}
		out = append(out, map[string]any{"batch_stats": batches, "memory_usage": memoryJSON(s), "response_stats": responseJSON(s), "instances": instancesJSON(s),
			"name": s.Model, "version": s.Version, "last_inference": last,
			"inference_count": s.InferenceCount, "execution_count": s.ExecutionCount,
			"inference_stats": map[string]any{
				"success": cn(s.SuccessCount, s.SuccessNs), "fail": cn(s.FailCount, s.FailNs),
				"queue": cn(run, s.QueueNs), "compute_input": cn(run, s.ComputeInputNs),
				"compute_infer": cn(run, s.ComputeNs), "compute_output": cn(run, s.ComputeOutputNs),
				"cache_hit": cn(s.CacheHitCount, s.CacheHitNs), "cache_miss": cn(s.CacheMissCount, s.CacheMissNs),
			},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_stats": out})
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	out := []map[string]string{}
	for _, e := range h.s.RepositoryIndex() {
		m := map[string]string{"name": e.Name, "state": e.State}
		if e.Version != "" {
			m["version"] = e.Version
		}
		if e.Reason != "" {
			m["reason"] = e.Reason
		}
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) load(w http.ResponseWriter, r *http.Request) {
	if h.opts.DisableModelControl {
		h.fail(w, fmt.Errorf("%w: explicit model load and unload need --model-control-mode explicit", serve.ErrUnsupported))
		return
	}
	lr, err := readLoadRequest(http.MaxBytesReader(w, r.Body, h.opts.MaxRequestBytes), r.ContentLength, h.opts.MaxRequestBytes)
	if err != nil {
		h.fail(w, err)
		return
	}
	// a load goes on when its client leaves, as Load always did
	if err := h.s.LoadWith(context.WithoutCancel(r.Context()), r.PathValue("model"), lr); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// readLoadRequest decodes the body of a repository load request (empty, or
// {"parameters": {...}}): "config", a model config in JSON (a string, as
// Triton's clients send it, or an object), and "file:<path>", a file of
// the model folder in base64. Any other parameter is refused by name, so
// that nothing a client asks for is silently ignored.
//
// The body (length bytes, -1: unknown; limit at most) is read and decoded
// as a register or settings body is (readWhole, unmarshalStrict; see
// decodeControl for why).
func readLoadRequest(body io.Reader, length, limit int64) (serve.LoadRequest, error) {
	var lr serve.LoadRequest
	b, err := readWhole(body, length, limit)
	if err != nil {
		return lr, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return lr, nil
	}
	var req struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := unmarshalStrict(b, &req); err != nil {
		return lr, fmt.Errorf("load request: %w", err)
	}
	for k, v := range req.Parameters {
		switch {
		case k == "config":
			var s string
			if err := json.Unmarshal(v, &s); err == nil {
				lr.Config = []byte(s)
			} else if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '{' {
				lr.Config = t
			} else {
				return lr, fmt.Errorf("%w: load request: parameter \"config\" must be a model config in JSON", serve.ErrInvalid)
			}
		case strings.HasPrefix(k, "file:"):
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return lr, fmt.Errorf("%w: load request: parameter %q must be a base64 string", serve.ErrInvalid, k)
			}
			data, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return lr, fmt.Errorf("%w: load request: parameter %q: %w", serve.ErrInvalid, k, err)
			}
			if lr.Files == nil {
				lr.Files = map[string][]byte{}
			}
			lr.Files[strings.TrimPrefix(k, "file:")] = data
		default:
			return lr, fmt.Errorf("%w: load request: unknown parameter %q (want \"config\" or \"file:<path>\")", serve.ErrInvalid, k)
		}
	}
	return lr, nil
}

func (h *handler) unload(w http.ResponseWriter, r *http.Request) {
	if h.opts.DisableModelControl {
		h.fail(w, fmt.Errorf("%w: explicit model load and unload need --model-control-mode explicit", serve.ErrUnsupported))
		return
	}
	if err := h.s.Unload(r.Context(), r.PathValue("model")); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// HeaderLength is the header of the binary tensor data extension.
const HeaderLength = "Inference-Header-Content-Length"

type responseTensor struct {
	Name       string         `json:"name"`
	Datatype   string         `json:"datatype"`
	Shape      []int          `json:"shape"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Data       any            `json:"data,omitempty"`
}

// infer1 runs one inference request of a WebSocket stream, counted for
// device/cpu while it runs (the engine splits layers over the cores only
// while they are not all busy with requests, as over gRPC); the count is
// given back even if Infer panics.
func (h *handler) infer1(ctx context.Context, req *serve.InferRequest) (*serve.InferResponse, error) {
	cpu.RequestStarted()
	defer cpu.RequestDone()
	return h.s.Infer(ctx, req)
}

func (h *handler) infer(w http.ResponseWriter, r *http.Request) {
	// counted for device/cpu from here to the response written, as the
	// gRPC server counts a ModelInfer call (grpcapi.InFlightOption): while
	// its body is read and decoded and its response encoded, its core is
	// busy with it too
	cpu.RequestStarted()
	defer cpu.RequestDone()
	headerLen := -1
	if v := r.Header.Get(HeaderLength); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || !isDecimal(v) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: bad %s %q: want a decimal number of bytes", ErrDecode, HeaderLength, v))
			return
		}
		headerLen = n
	}
	model, ver := r.PathValue("model"), r.PathValue("version")
	defer h.s.Served(model, time.Now()) // kiln_request_duration_us: arrival to response written
	// Under overload, or for a model that cannot take it, a request is
	// refused before its body is read: refusing must cost less than serving.
	if err := h.s.Admit(model, ver); err != nil {
		h.fail(w, err)
		return
	}
	cfg, _, err := h.s.ModelConfig(model, ver)
	if err != nil {
		h.fail(w, err)
		return
	}
	limit := h.opts.MaxRequestBytes
	d, err := ReadRequest(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, headerLen, limit, h.schemaOf(cfg, model, ver))
	if err != nil {
		h.fail(w, err)
		return
	}
	req, err := h.inferRequest(model, ver, d)
	if err != nil {
		h.fail(w, err)
		return
	}
	resp, err := h.s.Infer(r.Context(), req)
	if err != nil {
		h.fail(w, err)
		return
	}
	body, bin, err := encodeResponse(resp, d)
	if err != nil {
		h.fail(w, err)
		return
	}
	if len(bin) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(HeaderLength, strconv.Itoa(len(body)))
	n := len(body)
	for _, b := range bin {
		n += len(b)
	}
	w.Header().Set("Content-Length", strconv.Itoa(n))
	w.Write(body)
	for _, b := range bin {
		w.Write(b)
	}
}

// encodeResponse returns the JSON header of a response and the binary data
// of the outputs asked for as binary, in output order.
func encodeResponse(resp *serve.InferResponse, d *Decoded) ([]byte, [][]byte, error) {
	if body, bin, ok := appendResponse(resp, d); ok {
		return body, bin, nil
	}
	outs := []responseTensor{}
	var bin [][]byte
	for _, o := range resp.Outputs {
		rt := responseTensor{Name: o.Name, Datatype: DataTypeName(o.Tensor.DType), Shape: o.Tensor.Shape}
		if o.Shm != nil {
			// the data is in the region: the output tells where, and its size
			rt.Parameters = map[string]any{serve.ShmParams[0]: o.Shm.Region, serve.ShmParams[2]: o.Shm.ByteSize}
			if o.Shm.Offset > 0 {
				rt.Parameters[serve.ShmParams[1]] = o.Shm.Offset
			}
			outs = append(outs, rt)
			continue
		}
		asBinary, set := d.Binary[o.Name]
		if !set {
			asBinary = d.BinaryDefault
		}
		if asBinary {
			b := binaryData(o.Tensor)
			rt.Parameters = map[string]any{"binary_data_size": len(b)}
			bin = append(bin, b)
		} else {
			rt.Data = jsonData(o.Tensor)
		}
		outs = append(outs, rt)
	}
	body, err := json.Marshal(map[string]any{"model_name": resp.Model, "model_version": resp.Version, "id": resp.ID, "outputs": outs})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot encode outputs as JSON: %w", err)
	}
	return nonFinite.restore(body), bin, nil
}
