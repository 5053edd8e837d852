package gpuexec

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/tensor"
)

// TestCompileModels compiles the optimized reference models (no GPU
// needed): every node gets launches of kernels that exist, every pointer
// argument points inside its buffer, and activations share memory.
//
// In half precision (the second run of each model) every float kernel is
// the _f16 one, each float32 graph input and output gets its conversion
// step, and the constants take about half the bytes.
func TestCompileModels(t *testing.T) {
	for _, name := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "bert_mini", "yolo_tiny"} {
		t.Run(name, func(t *testing.T) {
			path := modelPath(t, name)
			g := optimizedGraph(t, path, testInputs(t, name))
			p32, err := compile(g, false, false)
			if err != nil {
				t.Fatal(err)
			}
			p, err := compile(g, false, true)
			if err != nil {
				t.Fatal(err)
			}
			if w16, w32 := len(p.weights), len(p32.weights); w16 > w32*6/10 {
				t.Errorf("half constants take %d bytes, float32 ones %d", w16, w32)
			}
			casts := 0
			for k := range p.kernels {
				if strings.HasSuffix(k, "_f32") && k != "cast_f16_f32" {
					t.Errorf("half program launches %s", k)
				}
			}
			for _, s := range p.steps {
				if s.node.OpType == "Cast" && len(s.launches) == 1 && strings.HasPrefix(s.launches[0].kernel, "cast_f") {
					casts++
				}
			}
			floats := 0
			for _, io := range append(append([]ioSpec{}, p.inputs...), p.outputs...) {
				if io.dtype == tensor.Float32 && io.konst == nil {
					floats++
				}
			}
			if casts != floats {
				t.Errorf("%d conversion steps for %d float32 inputs and outputs", casts, floats)
			}
			for _, p := range []*program{p32, p} {
				checkProgram(t, p)
			}
		})
	}
}

// checkProgram checks that every launch uses a known kernel with a valid
// shape and that its pointers stay inside their buffers.
func checkProgram(t *testing.T, p *program) {
	t.Helper()
	{
		{
			var sum int64
			for _, s := range p.stores {
				sum += align(s.size)
			}
			t.Logf("%d steps, %d bytes of constants, arena %d bytes for %d buffers of %d bytes in all",
				len(p.steps), len(p.weights), p.arena, len(p.stores), sum)
			if p.arena <= 0 || p.arena > sum {
				t.Errorf("arena %d bytes for buffers of %d in all", p.arena, sum)
			}
			for k := range p.kernels {
				if !slices.Contains(cuda.KernelNames, k) && !slices.Contains(opKernelNames(), k) {
					t.Errorf("kernel %s is not among cuda.KernelNames or the op family kernels", k)
				}
			}
			for _, s := range p.steps {
				all := s.launches
				if s.conv != nil && s.conv.post.kernel != "" {
					all = append(all, s.conv.post)
				}
				if s.gemm != nil && s.gemm.post.kernel != "" {
					all = append(all, s.gemm.post)
				}
				for _, l := range all {
					if l.grid.X == 0 || l.grid.Y == 0 || l.grid.Z == 0 || l.block.X*l.block.Y*l.block.Z == 0 || l.block.X*l.block.Y*l.block.Z > 1024 {
						t.Errorf("%s: %s launched as %v x %v", s.name(), l.kernel, l.grid, l.block)
					}
					for _, a := range l.args {
						if a.kind != argPtr {
							continue
						}
						switch a.ref.buf {
						case bufWeights:
							if a.ref.off < 0 || a.ref.off >= int64(len(p.weights)) {
								t.Errorf("%s: %s reads weights at %d of %d", s.name(), l.kernel, a.ref.off, len(p.weights))
							}
						case bufArena:
							if a.ref.id < 0 || a.ref.id >= len(p.stores) || p.offsets[a.ref.id]+p.stores[a.ref.id].size > p.arena {
								t.Errorf("%s: %s points outside the arena", s.name(), l.kernel)
							}
						}
					}
				}
			}
		}
	}
}

// TestCompileErrors checks the errors for graphs the executor cannot run.
func TestCompileErrors(t *testing.T) {
	WithoutKernel(t, "LpNormalization") // an op the GPU lacks
	tests := []struct {
		name  string
		graph func() *ir.Graph
		is    error
		want  string
		node  bool // the error names the node
	}{
		{"op without a CUDA implementation", func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3))
			y := b.Op("LpNormalization", []*ir.Value{x}, ir.IntAttr("axis", 1))
			y.Producer.Name = "lpnorm_1"
			b.Output(y, "y")
			return b.Graph()
		}, ErrUnsupported, `op LpNormalization has no CUDA implementation`, true},
		{"float64", func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float64, ir.D(4))
			b.Output(b.Op("Relu", []*ir.Value{x}), "y")
			return b.Graph()
		}, ErrUnsupported, "computes input 0 of float32 on CUDA, not float64", true},
		{"symbolic shape", func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(4))
			b.Output(b.Op("Relu", []*ir.Value{x}), "y")
			return b.Graph()
		}, ErrGraph, "every shape must be known", false},
		{"missing input", func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(4), ir.D(4))
			b.Output(b.Op("MatMul", []*ir.Value{x, x}), "y")
			return b.Graph()
		}, ErrGraph, "at least 2", true},
		{"4-D convolution", func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(1), ir.D(1), ir.D(4), ir.D(4), ir.D(4), ir.D(4))
			w := b.Const("w", tensor.New(tensor.Float32, 1, 1, 1, 1, 1, 1))
			b.Output(b.Op("Conv", []*ir.Value{x, w}), "y")
			return b.Graph()
		}, ErrUnsupported, "4-D convolution", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			if tt.name == "missing input" {
				n := g.Nodes[len(g.Nodes)-1]
				n.Inputs = n.Inputs[:1] // broken after inference
			}
			_, err := compile(g, false, false)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %v naming %q", err, tt.is, tt.want)
			}
			if n := g.Nodes[len(g.Nodes)-1]; tt.node && (!strings.Contains(err.Error(), n.OpType) || !strings.Contains(err.Error(), `"`+n.Name+`"`)) {
				t.Errorf("error %q does not name the node %s %q", err, n.OpType, n.Name)
			}
		})
	}
}

// TestNewEngineErrors checks what fails before any GPU is needed.
func TestNewEngineErrors(t *testing.T) {
	b := ir.NewBuilder("g", 17)
	x := b.Input("x", tensor.Float32, ir.D(4))
	b.Output(b.Op("Relu", []*ir.Value{x}), "y")
	g := b.Graph()
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	_, err := NewEngine(g, Options{LibDir: t.TempDir()})
	if !errors.Is(err, cuda.ErrUnavailable) || !strings.Contains(err.Error(), "libcuda") {
		t.Errorf("no libcuda: error %v, want cuda.ErrUnavailable naming libcuda", err)
	}
}
