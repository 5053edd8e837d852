package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
func decodeControl(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil // no body: nothing to set
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", serve.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON object", serve.ErrInvalid)
	}
	return nil
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
