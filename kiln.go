// Package kiln is the Go API for embedding kiln's inference engine: load an
// ONNX model or a plan, run it on named tensors, read the outputs.
//
//	m, err := kiln.Load("model.onnx")   // as it is; or a plan from kiln build
//	m, err := kiln.Build(ctx, "model.onnx", kiln.BuildOptions{Precision: "fp16"}) // optimized in memory
//	if err != nil { ... }
//	defer m.Close()
//	out, err := m.Run(ctx, map[string]*kiln.Tensor{"input": x})
//
// A Model is safe for concurrent use by several goroutines; NewContext gives
// a worker its own execution context (memory arena). PlanCache keeps built
// plans on disk.
package kiln

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/internal/version"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	_ "github.com/kilnai/kiln/ops/all" // register every operator
	"github.com/kilnai/kiln/tensor"
)

// Version is kiln's version, recorded in plans and printed by the CLI.
const Version = version.Kiln

// Tensor is an n-dimensional array: a data type, a shape and the elements.
type Tensor = tensor.Tensor

// DType is a tensor element type.
type DType = tensor.DType

// Element types, as in ONNX.
const (
	Float32  = tensor.Float32
	Float16  = tensor.Float16
	BFloat16 = tensor.BFloat16
	Float64  = tensor.Float64
	Int8     = tensor.Int8
	Int16    = tensor.Int16
	Int32    = tensor.Int32
	Int64    = tensor.Int64
	Uint8    = tensor.Uint8
	Uint16   = tensor.Uint16
	Uint32   = tensor.Uint32
	Uint64   = tensor.Uint64
	Bool     = tensor.Bool
	String   = tensor.String
)

// NewTensor returns a zeroed tensor of the given type and shape.
func NewTensor(dt DType, shape ...int) (*Tensor, error) { return tensor.Make(dt, shape) }

// TensorFromFloat32 returns a float32 tensor holding a copy of v.
func TensorFromFloat32(v []float32, shape ...int) (*Tensor, error) {
	t, err := tensor.Make(tensor.Float32, shape)
	if err != nil {
		return nil, err
	}
	if len(v) != t.Len() {
		return nil, fmt.Errorf("kiln: %d values for shape %v", len(v), shape)
	}
	copy(t.Float32s(), v)
	return t, nil
}

// TensorFromInt64 returns an int64 tensor holding a copy of v.
func TensorFromInt64(v []int64, shape ...int) (*Tensor, error) {
	t, err := tensor.Make(tensor.Int64, shape)
	if err != nil {
		return nil, err
	}
	if len(v) != t.Len() {
		return nil, fmt.Errorf("kiln: %d values for shape %v", len(v), shape)
	}
	copy(t.Int64s(), v)
	return t, nil
}

// ReadTensorFile reads an ONNX TensorProto file (such as test_data_set_0/input_0.pb).
func ReadTensorFile(path string) (*Tensor, string, error) { return onnx.ReadTensorFile(path) }

// IOInfo describes a model input or output.
type IOInfo struct {
	Name  string
	DType DType
	// Shape has one entry per dimension: a size, or -1 where the size is
	// symbolic or unknown (then Dims names it).
	Shape []int
	// Dims spells each dimension: "224", "batch" or "?".
	Dims []string
}

func ioInfo(v *ir.Value) IOInfo {
	info := IOInfo{Name: v.Name, DType: v.Type.DType}
	for _, d := range v.Type.Shape {
		if d.Known() {
			info.Shape = append(info.Shape, int(d.Val))
		} else {
			info.Shape = append(info.Shape, -1)
		}
		info.Dims = append(info.Dims, d.String())
	}
	return info
}

// Model is a loaded model ready to run.
type Model struct {
	eng  *engine.Engine
	file *onnx.File
	// A model from a plan (kiln build, or Build in memory) has one runner
	// per optimization profile (a CPU engine or a device program); Run
	// picks the profile by shape.
	runners  []runner
	profiles []engine.Profile
	plan     *plan.Plan
	graph    *ir.Graph

	// state counts the runs in progress, with closedBit set by Close; the
	// last of Close and the runs in progress frees the model (freeOnce).
	state    atomic.Int64
	freeOnce sync.Once
	freeErr  error
}

const closedBit = 1 << 62

// acquire registers a run, or returns ErrClosed after Close.
func (m *Model) acquire() error {
	for {
		s := m.state.Load()
		if s&closedBit != 0 {
			return ErrClosed
		}
		if m.state.CompareAndSwap(s, s+1) {
			return nil
		}
	}
}

// release ends a run; the last run of a closed model frees it.
func (m *Model) release() {
	if m.state.Add(-1) == closedBit {
		m.free()
	}
}

// ErrClosed is returned by Run on a model after its Close.
var ErrClosed = errors.New("kiln: model closed")

// runner runs one profile of a plan.
type runner interface {
	Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)
}

// Load reads an ONNX model file (external data files are found beside it),
// checks it, infers its shapes and prepares it to run on the CPU as it is,
// without optimization; or a plan file written by kiln build, which must
// have been built for this machine's device by this kiln version. It is
// LoadWith with the zero LoadOptions: the files are read into memory, so
// the model is unaffected by later changes to them.
func Load(path string) (*Model, error) { return LoadWith(path, LoadOptions{}) }

// LoadOptions configure LoadWith. The zero value is what Load uses.
type LoadOptions struct {
	// Mmap memory-maps the model or plan file (and external data files)
	// instead of reading them into memory: faster to load and lighter on
	// memory for large models, but the files must not be truncated or
	// rewritten in place while the model is in use, or the process dies of
	// SIGBUS (replacing a file by renaming a new one over it is safe). For
	// short-lived tools such as kiln run; a server should leave it off.
	Mmap bool
	// MemoryLimit bounds the memory of one execution context (see
	// engine.Options.MemoryLimit): a model whose activation arena at its
	// largest shapes exceeds it is refused (engine.ErrMemory), and so is a
	// run that would exceed it. 0 means engine.DefaultMemoryLimit(); a
	// negative value means no limit.
	MemoryLimit int64
	// Device, for a plan, is the unit of the plan's device to run it on,
	// such as "cuda:1" for a plan built on "cuda:0": that GPU's
	// fingerprint must equal the plan's (identical GPUs share one plan).
	// Empty: the device the plan was built for.
	Device string
	// Devices are where a plan's device is looked up; empty: kiln's
	// (devices.All, the GPU executor included: a CUDA plan needs no
	// import besides this package). A program with a device of its own
	// lists it here, as it does in BuildOptions.Devices.
	Devices device.Set
}

// LoadWith is Load with options.
func LoadWith(path string, o LoadOptions) (*Model, error) {
	if IsPlan(path) {
		return loadPlan(path, o)
	}
	open := onnx.Load
	if o.Mmap {
		open = onnx.LoadMapped
	}
	f, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("kiln: load %s: %w", filepath.Base(path), err)
	}
	m, err := fromFile(f, o)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kiln: load %s: %w", filepath.Base(path), err)
	}
	return m, nil
}

// LoadBytes is Load for a model already in memory (it must not use external
// data files). The model keeps references into b.
func LoadBytes(b []byte) (*Model, error) {
	f, err := onnx.LoadBytes(b, "")
	if err != nil {
		return nil, fmt.Errorf("kiln: %w", err)
	}
	m, err := fromFile(f, LoadOptions{})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kiln: %w", err)
	}
	return m, nil
}

func fromFile(f *onnx.File, o LoadOptions) (*Model, error) {
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		return nil, err
	}
	e, err := engine.NewWithOptions(g, engine.Options{MemoryLimit: o.MemoryLimit})
	if err != nil {
		return nil, err
	}
	return &Model{eng: e, file: f, graph: g}, nil
}

// Inputs describes the inputs a caller must give to Run.
func (m *Model) Inputs() []IOInfo {
	var out []IOInfo
	for _, v := range m.graph.Inputs {
		if v.Const == nil {
			out = append(out, ioInfo(v))
		}
	}
	return out
}

// Outputs describes the outputs Run returns, with their inferred shapes.
func (m *Model) Outputs() []IOInfo {
	var out []IOInfo
	for _, v := range m.graph.Outputs {
		out = append(out, ioInfo(v))
	}
	return out
}

// ValueTypes returns the types of the inputs Inputs describes and of the
// outputs, in their order, whole: a sequence's or an optional's element
// type included (IOInfo gives only its DType), on every device.
func (m *Model) ValueTypes() (inputs, outputs []ir.Type) {
	for _, v := range m.graph.Inputs {
		if v.Const == nil {
			inputs = append(inputs, v.Type.Clone())
		}
	}
	for _, v := range m.graph.Outputs {
		outputs = append(outputs, v.Type.Clone())
	}
	return inputs, outputs
}

// InputType returns the element type of the named input (Undefined if the
// model has no such input).
func (m *Model) InputType(name string) DType {
	for _, v := range m.graph.Inputs {
		if v.Name == name {
			return v.Type.DType
		}
	}
	return tensor.Undefined
}

// Run computes the model's outputs from named inputs. Inputs are checked
// against the model (names, types, shapes); errors wrap engine.ErrInput for
// bad inputs, and engine.ErrMemory for inputs whose run would need more
// memory than the model's limit (see LoadOptions.MemoryLimit), refused
// before anything is allocated. After Close, Run returns ErrClosed. Run
// does not modify its inputs.
func (m *Model) Run(ctx context.Context, inputs map[string]*Tensor) (map[string]*Tensor, error) {
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.release()
	if len(m.profiles) > 0 {
		i, err := engine.CheckProfiles(m.profiles, inputs)
		if err != nil {
			return nil, err
		}
		return m.runners[i].Run(ctx, inputs)
	}
	if len(m.runners) > 0 {
		return m.runners[0].Run(ctx, inputs)
	}
	return m.eng.Run(ctx, inputs)
}

// Engine returns the CPU engine behind m (of its first profile), for tools
// that need the graph; nil for a model running on another device.
func (m *Model) Engine() *engine.Engine { return m.eng }

// Close releases the model's file mappings and device memory. Runs that
// are in progress complete first: the memory is released when the last one
// returns (Close does not wait for it). Later runs return ErrClosed. Close
// is idempotent; it returns the error of releasing the memory when that
// happens at once, nil when the release waits for runs in progress.
func (m *Model) Close() error {
	prev := m.state.Or(closedBit)
	if prev&closedBit != 0 {
		return nil
	}
	if prev == 0 {
		return m.free()
	}
	return nil
}

// free releases what the model holds, once.
func (m *Model) free() error {
	m.freeOnce.Do(func() {
		if m.plan != nil {
			var err error
			for _, r := range m.runners {
				if c, ok := r.(interface{ Close() error }); ok {
					if e := c.Close(); e != nil && err == nil {
						err = e
					}
				}
			}
			if e := m.plan.Close(); e != nil && err == nil {
				err = e
			}
			m.freeErr = err
			return
		}
		if m.file != nil {
			m.freeErr = m.file.Close()
		}
	})
	return m.freeErr
}
