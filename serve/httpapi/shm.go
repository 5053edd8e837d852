package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// ShmInput is an input a request places in shared memory: its
// declaration, and where its bytes are.
type ShmInput struct {
	Name  string
	DType tensor.DType
	Shape []int
	Ref   serve.ShmRef
}

// shmRef reads the shared memory parameters of an input or output; ok is
// false when it names no region.
func shmRef(p map[string]any) (ref serve.ShmRef, ok bool, err error) {
	region, set := p[serve.ShmParams[0]]
	if !set {
		for _, k := range serve.ShmParams[1:] {
			if _, set := p[k]; set {
				return ref, false, fmt.Errorf("parameter %s needs %s", k, serve.ShmParams[0])
			}
		}
		return ref, false, nil
	}
	if ref.Region, ok = region.(string); !ok || ref.Region == "" {
		return ref, false, fmt.Errorf("parameter %s must be a region name", serve.ShmParams[0])
	}
	off, _, err := paramInt(p, serve.ShmParams[1])
	if err != nil {
		return ref, false, err
	}
	size, set, err := paramInt(p, serve.ShmParams[2])
	if err != nil {
		return ref, false, err
	}
	if !set {
		return ref, false, fmt.Errorf("parameter %s needs %s", serve.ShmParams[0], serve.ShmParams[2])
	}
	if _, bin := p["binary_data_size"]; bin {
		return ref, false, fmt.Errorf("binary_data_size and %s go separately", serve.ShmParams[0])
	}
	if bin, set := p["binary_data"]; set && bin != false {
		// Triton's Python client sends "binary_data": false beside the
		// region (set_shared_memory turns binary output off); only asking
		// for both contradicts itself
		return ref, false, fmt.Errorf("binary_data and %s go separately", serve.ShmParams[0])
	}
	ref.Offset, ref.ByteSize = uint64(off), uint64(size)
	return ref, true, nil
}

// inferRequest returns the server request of a decoded one, with its
// inputs in shared memory read.
func (h *handler) inferRequest(model, ver string, d *Decoded) (*serve.InferRequest, error) {
	for _, in := range d.ShmInputs {
		t, err := h.s.ShmInput(in.Name, in.DType, in.Shape, in.Ref)
		if err != nil {
			return nil, err
		}
		d.Inputs[in.Name] = t
	}
	return &serve.InferRequest{
		Model: model, Version: ver, ID: d.ID, Inputs: d.Inputs,
		Outputs: d.Outputs, Priority: d.Priority, Timeout: time.Duration(d.TimeoutMicros) * time.Microsecond,
		Classes: d.Classes, Sequence: d.Sequence, OutputShm: d.OutputShm,
	}, nil
}

// shmRoutes adds the routes of the shared memory extensions to mux.
func (h *handler) shmRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v2/systemsharedmemory/status", h.shmStatus)
	mux.HandleFunc("GET /v2/systemsharedmemory/region/{region}/status", h.shmStatus)
	mux.HandleFunc("POST /v2/systemsharedmemory/region/{region}/register", h.shmRegister)
	mux.HandleFunc("POST /v2/systemsharedmemory/unregister", h.shmUnregister)
	mux.HandleFunc("POST /v2/systemsharedmemory/region/{region}/unregister", h.shmUnregister)
	mux.HandleFunc("GET /v2/cudasharedmemory/status", h.cudaStatus)
	mux.HandleFunc("GET /v2/cudasharedmemory/region/{region}/status", h.cudaStatus)
	mux.HandleFunc("POST /v2/cudasharedmemory/region/{region}/register", h.cudaRegister)
	mux.HandleFunc("POST /v2/cudasharedmemory/unregister", h.cudaUnregister)
	mux.HandleFunc("POST /v2/cudasharedmemory/region/{region}/unregister", h.cudaUnregister)
}

type shmStatus struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Offset   uint64 `json:"offset"`
	ByteSize uint64 `json:"byte_size"`
}

func (h *handler) shmStatus(w http.ResponseWriter, r *http.Request) {
	rs, err := h.s.SystemShmStatus(r.PathValue("region"))
	if err != nil {
		h.fail(w, err)
		return
	}
	out := make([]shmStatus, 0, len(rs))
	for _, g := range rs {
		out = append(out, shmStatus{Name: g.Name, Key: g.Key, Offset: g.Offset, ByteSize: g.ByteSize})
	}
	writeJSON(w, http.StatusOK, out)
}

// maxControlBody bounds the body of a register or settings request.
const maxControlBody = 64 << 10

// decodeControl decodes the JSON body of a register or settings request
// into v, refusing unknown fields; an empty body leaves v as it is.
//
// The body is read into one buffer of its declared length and decoded
// with json.Unmarshal, not read by a growing buffer (io.ReadAll) into a
// json.Decoder: the work on a body that is not JSON is then the same
// whatever its length (it stops at the first bad byte), and nothing
// loops a number of times that grows with the length. The fuzzer counts
// such loops as coverage (io.ReadAll's growths at 512 bytes and ~3.5 KiB):
// an input just over a step could not be shortened without losing it, so
// minimizing it tried every cut, length² runs of the handler, and stalled
// fuzzing (0 execs/s) for the whole -fuzzminimizetime (60 s).
func decodeControl(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := readWhole(http.MaxBytesReader(w, r.Body, maxControlBody), r.ContentLength, maxControlBody)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil // no body: nothing to set
	}
	return unmarshalStrict(b, v)
}

// readWhole reads a body of length bytes (-1: unknown, chunked or
// decompressed), limit at most, into one buffer of that length when it
// is 1 MiB at most (more is read into a buffer growing from 1 MiB, as
// inference bodies are). A body over limit is an *http.MaxBytesError, one
// that ends early an ErrInvalid, one that times out an ErrBodyTimeout.
func readWhole(body io.Reader, length, limit int64) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case length > limit:
		return nil, &http.MaxBytesError{Limit: limit}
	case length < 0:
		b, err = io.ReadAll(body)
	case length <= maxPooledBody:
		b = make([]byte, length)
		_, err = io.ReadFull(body, b)
	default:
		b, err = readGrowing(body, length)
	}
	var maxErr *http.MaxBytesError
	switch {
	case err == nil:
		return b, nil
	case errors.As(err, &maxErr):
		return nil, err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, fmt.Errorf("%w: reading the body: %w", ErrBodyTimeout, err)
	}
	return nil, fmt.Errorf("%w: reading the body: %w", serve.ErrInvalid, err)
}

// unmarshalStrict decodes the JSON b into v as a json.Decoder with
// DisallowUnknownFields does, but in one pass over b (json.Unmarshal:
// see decodeControl), refusing data after the value.
func unmarshalStrict(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", serve.ErrInvalid, err)
	}
	if err := unknownField(b, reflect.TypeOf(v)); err != nil {
		return fmt.Errorf("%w: %w", serve.ErrInvalid, err)
	}
	return nil
}

// unknownField returns an error naming a key of the JSON object data
// that no field of t (a struct, through pointers) takes, looking into
// the objects of struct fields too, as json.Decoder.DisallowUnknownFields
// does: a key takes the field of its name (the json tag's, or the Go
// name), or else one whose name matches it but for case. Keys are looked
// at in order. data is valid JSON of t's shape (json.Unmarshal took it).
func unknownField(data []byte, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil || obj == nil {
		return nil // null
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		f, ok := jsonField(t, k)
		if !ok {
			return fmt.Errorf("json: unknown field %q", k)
		}
		if err := unknownField(obj[k], f.Type); err != nil {
			return err
		}
	}
	return nil
}

// jsonField returns the field of struct t that encoding/json decodes the
// key k into.
func jsonField(t reflect.Type, k string) (reflect.StructField, bool) {
	var folded reflect.StructField
	found := false
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == k {
			return f, true
		}
		if !found && strings.EqualFold(name, k) {
			folded, found = f, true
		}
	}
	return folded, found
}

func (h *handler) shmRegister(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Key      *string `json:"key"`
		Offset   uint64  `json:"offset"`
		ByteSize *uint64 `json:"byte_size"`
	}
	if err := decodeControl(w, r, &req); err != nil {
		h.fail(w, err)
		return
	}
	if req.Key == nil || req.ByteSize == nil {
		h.fail(w, fmt.Errorf("%w: a register request needs key and byte_size", serve.ErrInvalid))
		return
	}
	if err := h.s.RegisterSystemShm(r.PathValue("region"), *req.Key, req.Offset, *req.ByteSize); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (h *handler) shmUnregister(w http.ResponseWriter, r *http.Request) {
	if err := h.s.UnregisterSystemShm(r.PathValue("region")); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

type cudaStatus struct {
	Name     string `json:"name"`
	DeviceID int    `json:"device_id"`
	ByteSize uint64 `json:"byte_size"`
}

func (h *handler) cudaStatus(w http.ResponseWriter, r *http.Request) {
	rs, err := h.s.CudaShmStatus(r.PathValue("region"))
	if err != nil {
		h.fail(w, err)
		return
	}
	out := make([]cudaStatus, 0, len(rs))
	for _, g := range rs {
		out = append(out, cudaStatus{Name: g.Name, DeviceID: g.DeviceID, ByteSize: g.ByteSize})
	}
	writeJSON(w, http.StatusOK, out)
}

// cudaRegister registers a CUDA shared memory region: the body is
// {"raw_handle": {"b64": "<the cudaIpcMemHandle_t in base64>"},
// "device_id": N, "byte_size": N}, as Triton's clients send it.
func (h *handler) cudaRegister(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RawHandle *struct {
			B64 *string `json:"b64"`
		} `json:"raw_handle"`
		DeviceID *int64  `json:"device_id"`
		ByteSize *uint64 `json:"byte_size"`
	}
	if err := decodeControl(w, r, &req); err != nil {
		h.fail(w, err)
		return
	}
	if req.RawHandle == nil || req.RawHandle.B64 == nil || req.DeviceID == nil || req.ByteSize == nil {
		h.fail(w, fmt.Errorf("%w: a CUDA register request needs raw_handle {\"b64\": ...}, device_id and byte_size", serve.ErrInvalid))
		return
	}
	raw, err := base64.StdEncoding.DecodeString(*req.RawHandle.B64)
	if err != nil {
		h.fail(w, fmt.Errorf("%w: raw_handle: bad base64: %w", serve.ErrInvalid, err))
		return
	}
	if err := h.s.RegisterCudaShm(r.PathValue("region"), raw, *req.DeviceID, *req.ByteSize); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (h *handler) cudaUnregister(w http.ResponseWriter, r *http.Request) {
	if err := h.s.UnregisterCudaShm(r.PathValue("region")); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}
