// Package device is the seam between kiln's builder and the hardware it
// builds for. A device (cpu, cuda) is a value of a device package; a Set
// lists the devices a build may use, in the order the partitioner prefers
// them, and finds one by name. Package devices holds kiln's set (the GPU
// first, the CPU last), so that the builder and the plan reader find a
// device by name without importing a device package themselves, and no
// device registers itself anywhere.
//
// A device's Fingerprint says what an engine built on it depends on (CPU ISA
// features; GPU name, compute capability, driver and library versions). A
// plan records the fingerprint of the device it was built and timed on, and
// loading it where the fingerprint differs fails with Diff's description.
package device

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// ErrUnknown is returned by Set.Lookup for a device name the set does not
// have.
var ErrUnknown = errors.New("device: unknown device")

// ErrUnsupported is wrapped by a Supporter's answer for a node the device
// cannot run (an op, attribute or element type it has no implementation
// of).
var ErrUnsupported = errors.New("device: unsupported")

// ErrUnavailable is wrapped by Open when the device exists in kiln but not
// on this machine (no GPU, no driver).
var ErrUnavailable = errors.New("device: unavailable")

// Fingerprint is a device's identity as a set of named properties, e.g.
// "isa": "avx512", "gpu": "NVIDIA H100 80GB HBM3", "compute": "9.0".
type Fingerprint map[string]string

// String spells the fingerprint as sorted key=value pairs.
func (f Fingerprint) String() string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", k, f[k])
	}
	return b.String()
}

// Diff describes how have differs from want, one clause per differing
// property ("isa: plan avx512, this machine avx2"), or "" when they are
// equal.
func Diff(plan, here Fingerprint) string {
	keys := map[string]bool{}
	for k := range plan {
		keys[k] = true
	}
	for k := range here {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var parts []string
	for _, k := range sorted {
		a, aok := plan[k]
		b, bok := here[k]
		switch {
		case aok && bok && a == b:
		case !bok:
			parts = append(parts, fmt.Sprintf("%s: plan %q, this machine has none", k, a))
		case !aok:
			parts = append(parts, fmt.Sprintf("%s: plan has none, this machine %q", k, b))
		default:
			parts = append(parts, fmt.Sprintf("%s: plan %q, this machine %q", k, a, b))
		}
	}
	return strings.Join(parts, "; ")
}

// Device is one kind of hardware kiln builds engines for.
type Device interface {
	// Name is the device's name, e.g. "cpu" or "cuda", unique in a Set.
	Name() string
	// Fingerprint describes the device as found on this machine, or says
	// why it is not usable here (an error wrapping ErrUnavailable).
	Fingerprint() (Fingerprint, error)
}

// Ordinals is implemented by devices with several units (GPUs): the
// fingerprint of unit n, which may differ from unit 0's.
type Ordinals interface {
	FingerprintOf(ordinal int) (Fingerprint, error)
}

// Units is implemented by devices with several units (GPUs): the units
// this process can use, in ordinal order ("cuda:N" is the N-th), each by
// an identifier that stays the same however the units are numbered (a
// GPU's UUID; CUDA_VISIBLE_DEVICES renumbers GPUs). Without the device
// the error wraps ErrUnavailable.
type Units interface {
	Units() ([]string, error)
}

// FingerprintAt returns the fingerprint of unit ordinal of d.
func FingerprintAt(d Device, ordinal int) (Fingerprint, error) {
	if o, ok := d.(Ordinals); ok {
		return o.FingerprintOf(ordinal)
	}
	return d.Fingerprint()
}

// Set is an ordered list of devices, each under its own name: the devices
// a build may use and a plan may run on, in the order the partitioner
// prefers them (the CPU last). Package devices has kiln's (devices.All);
// a program or a test may give the builder and the loader its own.
type Set []Device

// ParseName splits a device name into the device's name and the unit's
// ordinal: "cuda:1" is "cuda" and 1, "cpu" is "cpu" and 0. The ordinal
// after ':' must be a number >= 0 without leading zeros; the error wraps
// ErrUnknown.
func ParseName(name string) (base string, ordinal int, err error) {
	i := strings.IndexByte(name, ':')
	if i < 0 {
		return name, 0, nil
	}
	base, num := name[:i], name[i+1:]
	ord, err := strconv.Atoi(num)
	if err != nil || ord < 0 || strconv.Itoa(ord) != num {
		return "", 0, fmt.Errorf("%w: %q: the device ordinal after ':' must be a number >= 0", ErrUnknown, name)
	}
	return base, ord, nil
}

// Lookup returns the device of s named name. A suffix ":N" (a device
// ordinal, as in "cuda:1") is accepted and returned separately (see
// ParseName). A name s does not have is an error wrapping ErrUnknown that
// lists the names it has.
func (s Set) Lookup(name string) (Device, int, error) {
	base, ord, err := ParseName(name)
	if err != nil {
		return nil, 0, err
	}
	for _, d := range s {
		if d.Name() == base {
			return d, ord, nil
		}
	}
	return nil, 0, fmt.Errorf("%w: %q (known: %s)", ErrUnknown, name, strings.Join(s.Names(), ", "))
}

// Names returns the names of the devices of s, in order.
func (s Set) Names() []string {
	out := make([]string, len(s))
	for i, d := range s {
		out[i] = d.Name()
	}
	return out
}

// Executor is implemented by devices that run graphs themselves (cuda);
// the CPU device runs graphs through package engine.
type Executor interface {
	Device
	// Compile prepares g (optimized, types inferred) to run on the device.
	Compile(g *ir.Graph, o ExecOptions) (Program, error)
}

// Supporter is implemented by executors that can say, before compiling,
// which nodes they run: the partitioner gives the others to the CPU.
// Executors without it are taken to run every node.
type Supporter interface {
	// Supports returns nil when the device runs node n of g (optimized,
	// types inferred), else an error wrapping ErrUnsupported that says why
	// not. It must make the decision Compile makes.
	Supports(n *ir.Node, g *ir.Graph) error
}

// ExecOptions configure Executor.Compile.
type ExecOptions struct {
	// Ordinal is the device number ("cuda:1" is 1).
	Ordinal int
	// Precision is "fp32", "fp16" or "int8": the precision the device
	// computes in.
	Precision string
	// MaxShapes gives per input the largest shape the program will run
	// with (the profile's max), for memory planning; nil when unknown.
	// OptShapes gives the profile's opt shapes, where tactics are timed.
	MaxShapes map[string][]int
	OptShapes map[string][]int
	// MemoryLimit bounds the device memory the program may take (0: no
	// limit).
	MemoryLimit int64
	// Blobs are the device sections of the plan being loaded (compiled
	// kernels, chosen tactics), by name; nil when building.
	Blobs map[string][]byte
	// Tune asks the device to time its implementations of each layer
	// (tactics) while compiling, as kiln build does; TimingCache is the
	// timing cache file to read and update ("" for none).
	Tune        bool
	TimingCache string
	// Fold folds, in a copy of the graph whose inputs were given concrete
	// shapes, the shape computations a symbolic graph keeps (Shape ->
	// Gather -> Concat -> Reshape become constants): the builder's folding
	// passes, handed to the device so that no device package depends on
	// the optimizer. nil: nothing is folded.
	Fold func(g *ir.Graph) error
	// OptLevel is the build's optimization level (kiln build --opt-level):
	// devices may search more implementations above 2 (the CUDA executor
	// times cuDNN's graph-API engines at 3 and above).
	OptLevel int
	// Int8Scales, with Precision "int8", are the convolutions the INT8
	// rule quantizes (node name) and the scale of each one's input
	// (calibrated amax/127), and under "value:NAME" the scale of a value
	// the device may keep in 8 bits that no quantized convolution reads as
	// its input (a residual, a last block's output); the device runs them
	// in INT8 where it can and the rest in FP16. A plan keeps them in the
	// device's sections.
	Int8Scales map[string]float32
	// LayerPrecision, with Precision "fp16", is the precision stage's
	// decision per layer (node name): "fp32" for the layers that compute
	// in float32 (quant.FP16Convert's rule on the CPU: the layers it keeps
	// in FP32, --layer-precision NAME:fp32 among them), "fp16" for the
	// others (unnamed layers too). The builder makes the decision once and
	// hands it to every device, as Int8Scales hands the INT8 one; a device
	// runs the fp32 layers in float32 with conversions at the boundaries,
	// and a plan keeps the decision in the device's sections. nil: every
	// layer in Precision.
	LayerPrecision map[string]string
	// Tactics are the implementations chosen when the plan was built
	// (the plan header's tactic table), applied at load without timing
	// again: for each layer the device (or, under partitioning, the CPU
	// segment) knows, the tactic its name says, where the layer's
	// signature is still Sig. nil when building, and for plans without
	// choices (built with --no-timing, or by a kiln that kept them in the
	// device's sections, which Blobs then has).
	Tactics []Tactic
}

// Tactic is the implementation chosen for one layer, as a plan's header
// keeps it and ExecOptions hands it back to the device at load.
type Tactic struct {
	// Layer is the node's name.
	Layer string
	// Tactic names the implementation in the device's own syntax, which
	// the device parses back exactly: a CPU kernel's tactic
	// ("im2col-gemm"), a GPU library choice ("cudnn-fused:algo=1,math=3",
	// "cublaslt-epilogue:2", "cudnn-graph:eng12_k3=1", "kernel").
	Tactic string
	// Sig is the signature of the layer the choice was made for (shapes,
	// precision, epilogue): the device applies the choice only to a layer
	// with the same one. Empty for the CPU's choices, which apply to the
	// layer whatever its shapes.
	Sig string
}

// Program is a graph compiled for a device.
type Program interface {
	// Run computes the graph's outputs from host tensors. It is safe for
	// concurrent use.
	Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)
	// Close releases the program's device memory.
	Close() error
}

// Contexts is implemented by programs that give out execution contexts:
// per-request state of their own (device memory, a stream), so that a
// caller running one request at a time per context (a server's instance)
// holds that state for its whole life instead of taking it from the
// program's shared pool on every call. Program.Run stays available
// beside it.
type Contexts interface {
	NewContext() (ProgramContext, error)
}

// ProgramContext is one execution context of a Program (see Contexts).
type ProgramContext interface {
	// Run is Program.Run in this context. It must not be called by two
	// goroutines at once.
	Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)
	// ArenaBytes is the device memory the context holds for
	// intermediates (activations and workspaces), 0 before its first
	// run.
	ArenaBytes() int64
	// Close releases the context's memory; closing the program releases
	// the memory of the contexts left open. Close is idempotent.
	Close() error
}

// OutputsInto is implemented by program contexts that can write the host
// tensors their runs return into memory the caller gives: a partitioned
// program's context hands each segment slots of one host arena for the
// tensors it passes to later segments (engine/partition). SetOutputs(bufs)
// makes c's later runs return output name over bufs[name] (from its
// start) when it fits there, and as before (a tensor of its own)
// otherwise; the caller checks where each output lies. Such an output
// holds until the caller reuses the memory. nil or empty stops it. It
// must not be called while c runs. It is optional: a context without it
// returns tensors of its own.
type OutputsInto interface {
	SetOutputs(bufs map[string][]byte)
}

// SharedArena is implemented by program contexts whose device memory for
// intermediates (activations, library workspaces) can be one allocation
// with other contexts' of the same device that never run at the same time
// as they do: the device segments of one context of a partitioned
// program, which run one after another (engine/partition). It is
// optional.
type SharedArena interface {
	// ShareArena makes c take its device memory from with's from its
	// first run on: one allocation, as large as the largest either
	// needs. It reports false, and changes nothing, when with is no
	// context of c's kind and device, or either has run. With it,
	// ArenaBytes counts the shared allocation in the context that first
	// had it (with, or the context with shared with) and none of it in
	// the others.
	ShareArena(with ProgramContext) bool
	// ArenaAlone is the device memory c's runs so far needed, as
	// ArenaBytes would report it had c shared nothing.
	ArenaAlone() int64
}

// BlobProgram is implemented by programs with sections to store in a plan
// (compiled kernels), so that loading the plan skips compilation.
type BlobProgram interface {
	Blobs() map[string][]byte
}
