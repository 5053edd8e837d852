package gpuexec

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// maxPlanEngines bounds the distinct input shapes one compiled program
// keeps an engine (and its CUDA graphs) for.
const maxPlanEngines = 64

// kernelBlob is the plan section name of the compiled kernels for arch.
func kernelBlob(arch string) string { return "cuda.kernels." + arch }

// compilePlan is Device.Compile: the graph of a plan (optimized, dims
// possibly symbolic) becomes a program that builds one engine per
// distinct input shape (each replaying its CUDA graphs). When the plan has
// kernels compiled for this GPU they are loaded instead of running NVRTC.
// The program is checked at compile time by building the engine for the
// largest shapes (o.MaxShapes) or the graph's own static shapes. With
// o.Tune, an engine at the opt shapes (o.OptShapes) times each
// convolution's and matrix product's implementations (Options.Tune;
// measurements read from and saved to the
// timing cache o.TimingCache when set) and the choices go into the layer
// report (device.LayerRun.Choice and Sig), which the builder keeps in the
// plan's header; a plan's load hands them back (o.Tactics) and they are
// used without timing (as is an older plan's "cuda.tactics" section).
// Without max shapes and with symbolic inputs nothing is timed. The blob
// device.LayersBlob says how each layer runs (tactic, precision, the time
// measured while tuning) and the device memory at the largest shapes.
func compilePlan(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	if o.Precision != "" && o.Precision != "fp32" && o.Precision != "fp16" && o.Precision != "int8" {
		return nil, fmt.Errorf("%w: %s on the GPU (the CUDA executor runs fp32, fp16 and int8)", ErrUnsupported, o.Precision)
	}
	int8Scales, int8Sec, int8Chain, err := int8Options(o) // int8.go: FP16 with INT8 convolutions
	if err != nil {
		return nil, err
	}
	layers, precSection, err := layerPrecisionOptions(o) // precision.go: FP16 with FP32 layers
	if err != nil {
		return nil, err
	}
	fp, err := cuda.FingerprintOf(o.Ordinal)
	if err != nil {
		return nil, err
	}
	major, minor, err := parseCompute(fp["compute"])
	if err != nil {
		return nil, err
	}
	// --opt-level 3 and above search wider: cuDNN's graph-API engines are
	// timed beside the legacy calls (longer builds; a few percent faster
	// convolutions on ResNet-50).
	opt := Options{Ordinal: o.Ordinal, MemoryLimit: o.MemoryLimit, FP16: o.Precision == "fp16" || o.Precision == "int8", GraphConv: o.OptLevel >= 3,
		Int8: int8Scales, Int8Chain: int8Chain, LayerPrecision: layers}
	if int8Sec != nil && int8Chain == nil {
		// building: the section records whether the engines run the 8-bit
		// chains (int8chain.go), as a load will
		on := int8ChainsFor(opt, major, minor)
		opt.Int8Chain, int8Sec = &on, int8Section(int8Scales, &on)
	}
	arch := fmt.Sprintf("sm_%d%d", major, minor)
	blobs := map[string][]byte{}
	if img, ok := o.Blobs[kernelBlob(arch)]; ok && len(img) > 0 {
		opt.Kernels = img
	} else {
		a, img, err := KernelImage(cuda.Options{Device: o.Ordinal}, major, minor)
		if err != nil {
			return nil, err
		}
		opt.Kernels, arch = img, a
	}
	blobs[kernelBlob(arch)] = opt.Kernels
	if int8Sec != nil {
		blobs[int8Blob] = int8Sec
	}
	if precSection != nil {
		blobs[precisionBlob] = precSection
	}
	// Tactics: those of the plan's header (o.Tactics), or of an older
	// plan's "cuda.tactics" section, else (o.Tune) timed below.
	tactics, err := planTactics(o)
	if err != nil {
		return nil, err
	}
	opt.Tactics = tactics
	tune := o.Tune && tactics == nil
	// Engines are built from copies of the graph as it is now (the caller
	// may change g afterwards), one per set of concrete input shapes.
	template := g.Clone()
	fold := o.Fold
	graphs := func(shapes map[string][]int) (*ir.Graph, func(), error) {
		c := template.Clone()
		// Intermediate values are inferred again at these shapes (their
		// symbolic types and partial shape values are dropped; the graph's
		// outputs keep their declared types).
		outs := map[*ir.Value]bool{}
		for _, v := range c.Outputs {
			outs[v] = true
		}
		for _, n := range c.Nodes {
			for _, v := range n.Outputs {
				if v != nil && !outs[v] && v.Const == nil {
					v.Type, v.ShapeValue = ir.Type{}, nil
				}
			}
		}
		for _, v := range c.Inputs {
			if s, ok := shapes[v.Name]; ok {
				v.Type.Shape = ir.KnownShape(s...)
			}
		}
		// With concrete shapes, the shape computations a symbolic plan
		// keeps (Shape -> Gather -> Concat -> Reshape) fold into constants.
		if fold != nil {
			if err := fold(c); err != nil {
				return nil, nil, err
			}
		}
		if _, err := ops.InferGraph(c); err != nil {
			return nil, nil, err
		}
		return c, nil, nil
	}
	// Check now that every layer has a GPU implementation and the largest
	// shapes fit in memory.
	// (Without max shapes, a graph with symbolic input dims is checked at
	// the first run of each shape instead.)
	check := o.MaxShapes
	if check == nil {
		check = map[string][]int{}
	}
	measured := 0
	var report *device.LayerReport
	if o.MaxShapes != nil || staticInputs(g) {
		cg, _, err := graphs(check)
		if err != nil {
			return nil, err
		}
		// Tuned at the largest shapes (no opt shapes, or the same), the
		// tuned engine below is the check: an untuned one first would only
		// repeat its library plans (for INT8 every cuDNN graph: ~70 s of
		// compiles for ResNet-50 on an H100). Its memory after tuning is
		// that of the engines the tactics make (tune.go keeps the chosen
		// plans' workspace only).
		tuneIsCheck := tune && (o.OptShapes == nil || sameShapes(o.OptShapes, check))
		report = &device.LayerReport{Shapes: "max"}
		if o.MaxShapes == nil {
			report.Shapes = "static"
		}
		if !tuneIsCheck {
			// The largest shapes must build (every layer on the GPU, memory).
			e, err := NewEngine(cg, opt)
			if err != nil {
				return nil, err
			}
			// How the layers run and the memory they take, for kiln inspect:
			// the memory at the largest shapes, the layers at the shapes
			// they are tuned at (when they are).
			report.Layers, report.Memory = e.layerRuns(g), e.memory()
			if err := e.Close(); err != nil {
				return nil, err
			}
		}
		if tune {
			// Tactics are timed at the profile's opt shapes (the largest
			// when there are none); engines for other shapes take the
			// choices whose layer signature matches, else the libraries'
			// first choice.
			tg := cg
			if o.OptShapes != nil {
				if tg, _, err = graphs(o.OptShapes); err != nil {
					return nil, err
				}
			}
			eopt := opt
			eopt.Tune = true
			var cache *tactic.Cache
			if o.TimingCache != "" {
				if cache, err = tactic.Open(o.TimingCache); err != nil {
					return nil, err
				}
				eopt.TimingCache, eopt.CacheDevice = cache, fp
			}
			te, err := NewEngine(tg, eopt)
			if err != nil {
				return nil, err
			}
			tactics, measured = te.Tactics(), te.Measured()
			opt.Tactics = tactics
			report.Layers = te.layerRuns(g)
			if tuneIsCheck {
				report.Memory = te.memory()
			} else {
				report.Shapes = "opt"
			}
			if err := te.Close(); err != nil {
				return nil, err
			}
			if cache != nil && measured > 0 {
				if err := cache.Save(); err != nil {
					return nil, err
				}
			}
		}
	}
	if report != nil {
		blobs[device.LayersBlob] = device.MarshalLayerReport(*report)
	}
	return &planProgram{s: NewShapes(graphs, opt, maxPlanEngines), blobs: blobs, measured: measured}, nil
}

// planTactics are the choices a plan being loaded keeps: o.Tactics (the
// header's, each layer's name parsed back, with its signature), else the
// "cuda.tactics" section of a plan written before kiln kept them in the
// header; nil when it has neither (building, or built without timing).
func planTactics(o device.ExecOptions) (Tactics, error) {
	if len(o.Tactics) > 0 {
		out := make(Tactics, len(o.Tactics))
		for _, dt := range o.Tactics {
			t, err := ParseTactic(dt.Tactic)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", dt.Layer, err)
			}
			if dt.Sig == "" {
				return nil, fmt.Errorf("%w: layer %s: tactic %q without a layer signature", ErrGraph, dt.Layer, dt.Tactic)
			}
			t.Sig = dt.Sig
			out[dt.Layer] = t
		}
		return out, nil
	}
	if b, ok := o.Blobs[tacticsBlob]; ok {
		return ParseTactics(b)
	}
	return nil, nil
}

// sameShapes reports whether a and b give every input the same dims.
func sameShapes(a, b map[string][]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

// staticInputs reports whether every input of g without a default value
// has a fully known shape.
func staticInputs(g *ir.Graph) bool {
	for _, v := range g.Inputs {
		if v.Const == nil && !v.Type.Shape.FullyKnown() {
			return false
		}
	}
	return true
}

func parseCompute(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, ".")
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%w: compute capability %q", ErrGraph, s)
	}
	return major, minor, nil
}

// planProgram is a compiled plan graph.
type planProgram struct {
	s        *Shapes
	blobs    map[string][]byte
	measured int // timings measured while compiling (tests)
}

func (p *planProgram) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return p.s.Run(ctx, inputs)
}

func (p *planProgram) Close() error { return p.s.Close() }

// NewContext returns an execution context of the program (device.Contexts):
// a ShapesContext, which keeps a Context of its own per input shape.
func (p *planProgram) NewContext() (device.ProgramContext, error) { return p.s.NewContext(), nil }

var (
	_ device.Contexts       = (*planProgram)(nil)
	_ device.ProgramContext = (*ShapesContext)(nil)
)

// Blobs returns the compiled kernels and the layer report (with the tuned
// tactics), stored in the plan by the builder.
func (p *planProgram) Blobs() map[string][]byte { return p.blobs }

// Device is the "cuda" device with this executor: cuda.GPU (name,
// fingerprints, units) that compiles graphs into programs (compilePlan) and
// says which nodes it runs (Supports). Package devices lists it before the
// CPU.
type Device struct{ cuda.GPU }

var (
	_ device.Executor  = Device{}
	_ device.Supporter = Device{}
	_ device.Ordinals  = Device{}
	_ device.Units     = Device{}
)

// Compile prepares g (optimized, types inferred) to run on the GPU
// o.Ordinal (device.Executor); see compilePlan.
func (Device) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	return compilePlan(g, o)
}

// Supports says whether the executor runs node n of g (device.Supporter):
// nil, or an error wrapping device.ErrUnsupported that says why not.
func (Device) Supports(n *ir.Node, g *ir.Graph) error { return Supports(n, g) }

// DataDependent says whether the number of rows of n's output depends on
// the data (partition.DataDependent); see DataDependent.
func (Device) DataDependent(n *ir.Node, g *ir.Graph) bool { return DataDependent(n, g) }
