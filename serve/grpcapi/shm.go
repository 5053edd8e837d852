package grpcapi

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// shmRef reads the shared memory parameters of an input or output; ok is
// false when it names no region. The offset and size are int64 or uint64
// parameters (Triton's clients send int64).
func shmRef(p map[string]*inference.InferParameter) (ref serve.ShmRef, ok bool, err error) {
	region, set := p[serve.ShmParams[0]]
	if !set {
		for _, k := range serve.ShmParams[1:] {
			if _, set := p[k]; set {
				return ref, false, fmt.Errorf("%w: parameter %s needs %s", serve.ErrInvalid, k, serve.ShmParams[0])
			}
		}
		return ref, false, nil
	}
	s, isStr := region.GetParameterChoice().(*inference.InferParameter_StringParam)
	if !isStr || s.StringParam == "" {
		return ref, false, fmt.Errorf("%w: parameter %s must be a string_param naming a region", serve.ErrInvalid, serve.ShmParams[0])
	}
	ref.Region = s.StringParam
	num := func(k string) (uint64, bool, error) {
		switch c := p[k].GetParameterChoice().(type) {
		case nil:
			return 0, false, nil
		case *inference.InferParameter_Int64Param:
			if c.Int64Param < 0 {
				return 0, true, fmt.Errorf("%w: parameter %s is negative", serve.ErrInvalid, k)
			}
			return uint64(c.Int64Param), true, nil
		case *inference.InferParameter_Uint64Param:
			return c.Uint64Param, true, nil
		}
		return 0, true, fmt.Errorf("%w: parameter %s must be an int64_param", serve.ErrInvalid, k)
	}
	if ref.Offset, _, err = num(serve.ShmParams[1]); err != nil {
		return ref, false, err
	}
	var sized bool
	if ref.ByteSize, sized, err = num(serve.ShmParams[2]); err != nil {
		return ref, false, err
	}
	if !sized {
		return ref, false, fmt.Errorf("%w: parameter %s needs %s", serve.ErrInvalid, serve.ShmParams[0], serve.ShmParams[2])
	}
	return ref, true, nil
}

// requestTensors decodes the inputs of r; those in shared memory are read
// from their regions. raw_input_contents then has one entry per input not
// in shared memory (as Triton's clients send it), or one per input with
// empty ones for those in shared memory.
func (v *Service) requestTensors(r *inference.ModelInferRequest) (map[string]*tensor.Tensor, error) {
	ins := r.GetInputs()
	shm := make([]bool, len(ins))
	n := 0
	for i, in := range ins {
		if _, ok := in.GetParameters()[serve.ShmParams[0]]; ok {
			shm[i] = true
			n++
		}
	}
	if n == 0 {
		return inputsInPlace(r)
	}
	rest := &inference.ModelInferRequest{}
	raw := r.GetRawInputContents()
	for i, in := range ins {
		if shm[i] {
			if len(raw) == len(ins) && len(raw[i]) > 0 {
				return nil, fmt.Errorf("%w: input %q has both raw contents and %s", serve.ErrInvalid, in.GetName(), serve.ShmParams[0])
			}
			continue
		}
		rest.Inputs = append(rest.Inputs, in)
		if len(raw) == len(ins) {
			rest.RawInputContents = append(rest.RawInputContents, raw[i])
		}
	}
	if len(raw) != len(ins) {
		rest.RawInputContents = raw
	}
	out, err := api.RequestTensors(rest)
	if err != nil {
		return nil, err
	}
	for i, in := range ins {
		if !shm[i] {
			continue
		}
		name := in.GetName()
		ref, _, err := shmRef(in.GetParameters())
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		if name == "" {
			return nil, fmt.Errorf("%w: input %d has no name", serve.ErrInvalid, i)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%w: input %q given twice", serve.ErrInvalid, name)
		}
		if proto.Size(in.GetContents()) > 0 {
			return nil, fmt.Errorf("%w: input %q has both contents and %s", serve.ErrInvalid, name, serve.ShmParams[0])
		}
		dt, err := api.ParseDatatype(in.GetDatatype())
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		shape, err := api.Shape(in.GetShape())
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		if out[name], err = v.s.ShmInput(name, dt, shape, ref); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// outputShm returns the outputs r places in shared memory.
func outputShm(r *inference.ModelInferRequest) (map[string]serve.ShmRef, error) {
	var out map[string]serve.ShmRef
	for _, o := range r.GetOutputs() {
		ref, ok, err := shmRef(o.GetParameters())
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", o.GetName(), err)
		}
		if ok {
			if out == nil {
				out = map[string]serve.ShmRef{}
			}
			out[o.GetName()] = ref
		}
	}
	return out, nil
}

// oneOutput is a one-output response's memory (inferResponse).
type oneOutput struct {
	resp  inference.ModelInferResponse
	out   inference.ModelInferResponse_InferOutputTensor
	outs  [1]*inference.ModelInferResponse_InferOutputTensor
	raws  [1][]byte
	shape [4]int64
}

// inferResponse returns the wire response of resp: the outputs written
// into shared memory come last, with their region and size as parameters
// and empty raw contents (Triton's clients index raw contents by output).
func inferResponse(resp *serve.InferResponse) (*inference.ModelInferResponse, error) {
	if len(resp.Outputs) == 1 && resp.Outputs[0].Shm == nil {
		// one output, the usual answer: what api.NewInferResponse builds,
		// without its map and sorting
		o := resp.Outputs[0]
		raw, err := api.EncodeRaw(o.Tensor)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", o.Name, err)
		}
		dt, _ := api.Datatype(o.Tensor.DType) // checked by EncodeRaw
		// the message, its output, the two slices and a short shape in
		// one allocation
		w := &oneOutput{}
		shape := w.shape[:0]
		if len(o.Tensor.Shape) > len(w.shape) {
			shape = make([]int64, 0, len(o.Tensor.Shape))
		}
		for _, d := range o.Tensor.Shape {
			shape = append(shape, int64(d))
		}
		w.out.Name, w.out.Datatype, w.out.Shape = o.Name, dt, shape[:len(shape):len(shape)]
		w.outs[0], w.raws[0] = &w.out, raw
		m := &w.resp
		m.ModelName, m.ModelVersion, m.Id = resp.Model, resp.Version, resp.ID
		m.Outputs, m.RawOutputContents = w.outs[:], w.raws[:]
		return m, nil
	}
	m := map[string]*tensor.Tensor{}
	var inShm []serve.NamedTensor
	for _, o := range resp.Outputs {
		if o.Shm != nil {
			inShm = append(inShm, o)
			continue
		}
		m[o.Name] = o.Tensor
	}
	out, err := api.NewInferResponse(resp.Model, resp.Version, resp.ID, m)
	if err != nil || len(inShm) == 0 {
		return out, err
	}
	for _, o := range inShm {
		dt, err := api.Datatype(o.Tensor.DType)
		if err != nil {
			return nil, err
		}
		p := map[string]*inference.InferParameter{
			serve.ShmParams[0]: {ParameterChoice: &inference.InferParameter_StringParam{StringParam: o.Shm.Region}},
			serve.ShmParams[2]: {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: int64(o.Shm.ByteSize)}},
		}
		if o.Shm.Offset > 0 {
			p[serve.ShmParams[1]] = &inference.InferParameter{ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: int64(o.Shm.Offset)}}
		}
		out.Outputs = append(out.Outputs, &inference.ModelInferResponse_InferOutputTensor{
			Name: o.Name, Datatype: dt, Shape: api.WireShape(o.Tensor.Shape), Parameters: p})
		out.RawOutputContents = append(out.RawOutputContents, nil)
	}
	return out, nil
}

// SystemSharedMemoryStatus lists the registered regions, or one.
func (v *Service) SystemSharedMemoryStatus(_ context.Context, r *inference.SystemSharedMemoryStatusRequest) (*inference.SystemSharedMemoryStatusResponse, error) {
	rs, err := v.s.SystemShmStatus(r.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &inference.SystemSharedMemoryStatusResponse{Regions: map[string]*inference.SystemSharedMemoryStatusResponse_RegionStatus{}}
	for _, g := range rs {
		out.Regions[g.Name] = &inference.SystemSharedMemoryStatusResponse_RegionStatus{Name: g.Name, Key: g.Key, Offset: g.Offset, ByteSize: g.ByteSize}
	}
	return out, nil
}

// SystemSharedMemoryRegister registers a region of a POSIX shared memory
// object.
func (v *Service) SystemSharedMemoryRegister(_ context.Context, r *inference.SystemSharedMemoryRegisterRequest) (*inference.SystemSharedMemoryRegisterResponse, error) {
	if err := v.s.RegisterSystemShm(r.GetName(), r.GetKey(), r.GetOffset(), r.GetByteSize()); err != nil {
		return nil, toStatus(err)
	}
	return &inference.SystemSharedMemoryRegisterResponse{}, nil
}

// SystemSharedMemoryUnregister unregisters a region, or all of them.
func (v *Service) SystemSharedMemoryUnregister(_ context.Context, r *inference.SystemSharedMemoryUnregisterRequest) (*inference.SystemSharedMemoryUnregisterResponse, error) {
	if err := v.s.UnregisterSystemShm(r.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &inference.SystemSharedMemoryUnregisterResponse{}, nil
}

// CudaSharedMemoryStatus lists the registered CUDA regions, or one.
func (v *Service) CudaSharedMemoryStatus(_ context.Context, r *inference.CudaSharedMemoryStatusRequest) (*inference.CudaSharedMemoryStatusResponse, error) {
	rs, err := v.s.CudaShmStatus(r.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &inference.CudaSharedMemoryStatusResponse{Regions: map[string]*inference.CudaSharedMemoryStatusResponse_RegionStatus{}}
	for _, g := range rs {
		out.Regions[g.Name] = &inference.CudaSharedMemoryStatusResponse_RegionStatus{Name: g.Name, DeviceId: uint64(g.DeviceID), ByteSize: g.ByteSize}
	}
	return out, nil
}

// CudaSharedMemoryRegister registers a client's device allocation, named
// by its CUDA IPC handle, as a region; UNIMPLEMENTED on a server without
// CUDA shared memory or a CUDA driver.
func (v *Service) CudaSharedMemoryRegister(_ context.Context, r *inference.CudaSharedMemoryRegisterRequest) (*inference.CudaSharedMemoryRegisterResponse, error) {
	if err := v.s.RegisterCudaShm(r.GetName(), r.GetRawHandle(), r.GetDeviceId(), r.GetByteSize()); err != nil {
		return nil, toStatus(err)
	}
	return &inference.CudaSharedMemoryRegisterResponse{}, nil
}

// CudaSharedMemoryUnregister unregisters a CUDA region, or all of them.
func (v *Service) CudaSharedMemoryUnregister(_ context.Context, r *inference.CudaSharedMemoryUnregisterRequest) (*inference.CudaSharedMemoryUnregisterResponse, error) {
	if err := v.s.UnregisterCudaShm(r.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &inference.CudaSharedMemoryUnregisterResponse{}, nil
}
