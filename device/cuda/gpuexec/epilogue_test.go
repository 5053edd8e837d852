package gpuexec

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// epiNet is x [batch, cin, hw, hw] -> Conv k x k (pads k/2) cin->m with
// bias, then + z (residual, an input of the output's shape) when
// residual, then the activation act ("" none; "SiLU" as x*Sigmoid(x);
// LeakyRelu with alpha 0.1; Clip(0, 6)), then GlobalAveragePool -> "y"
// (the pooled output is alike in both layouts: the convolution may run
// NHWC). The optimizer fuses it all into one kiln::FusedConv.
func epiNet(t testing.TB, cin, hw, m, k int, act string, residual bool) string {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(cin), uint64(m)))
	randT := func(scale float64, shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32((r.Float64()*2 - 1) * scale)
		}
		return x
	}
	b := ir.NewBuilder("epi", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(int64(cin)), ir.D(int64(hw)), ir.D(int64(hw)))
	p := int64(k / 2)
	y := b.Op("Conv", []*ir.Value{x, b.Const("w", randT(1/float64(cin*k), m, cin, k, k)), b.Const("b", randT(0.5, m))},
		ir.IntsAttr("kernel_shape", int64(k), int64(k)), ir.IntsAttr("pads", p, p, p, p))
	if residual {
		z := b.Input("z", tensor.Float32, ir.S("batch"), ir.D(int64(m)), ir.D(int64(hw)), ir.D(int64(hw)))
		y = b.Op("Add", []*ir.Value{y, z})
	}
	switch act {
	case "":
	case "SiLU":
		y = b.Op("Mul", []*ir.Value{y, b.Op("Sigmoid", []*ir.Value{y})})
	case "LeakyRelu":
		y = b.Op("LeakyRelu", []*ir.Value{y}, ir.FloatAttr("alpha", 0.1))
	case "Clip":
		y = b.Op("Clip", []*ir.Value{y, b.Const("", tensor.FromFloat32([]float32{0})), b.Const("", tensor.FromFloat32([]float32{6}))})
	default:
		y = b.Op(act, []*ir.Value{y})
	}
	b.Output(b.Op("GlobalAveragePool", []*ir.Value{y}), "y")
	mod, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "epi.onnx")
	if err := os.WriteFile(path, mod.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// epiInputs are random inputs of epiNet's shapes.
func epiInputs(batch, cin, hw, m int, residual bool) map[string]*tensor.Tensor {
	in := map[string]*tensor.Tensor{"x": fastRandom(3, batch, cin, hw, hw)}
	if residual {
		in["z"] = fastRandom(4, batch, m, hw, hw)
	}
	return in
}

// epilogueParams reads the parameter kinds of the KILN_BOTH kernels of
// nn.cu and nn_epilogue.cu (name_f32 and name_f16 alike).
func epilogueParams(t *testing.T) map[string][]argKind {
	t.Helper()
	var src strings.Builder
	for _, part := range strings.Split(cuda.KernelSource(), `#line 1 "kernels/`)[1:] {
		if strings.HasPrefix(part, "nn.cu") || strings.HasPrefix(part, "nn_epilogue.cu") {
			src.WriteString(part)
		}
	}
	s := strings.ReplaceAll(src.String(), "\\\n", " ")
	def := regexp.MustCompile(`(?m)^#define (\w+)\(T\)\s*\(([^)]*)\)`)
	use := regexp.MustCompile(`(?m)^KILN_BOTH\((\w+), (\w+),`)
	params := map[string][]argKind{}
	for _, m := range def.FindAllStringSubmatch(s, -1) {
		var kinds []argKind
		for _, p := range strings.Split(m[2], ",") {
			switch p = strings.TrimSpace(p); {
			case strings.Contains(p, "*"):
				kinds = append(kinds, argPtr)
			case strings.HasPrefix(p, "long long "):
				kinds = append(kinds, argI64)
			case strings.HasPrefix(p, "int "):
				kinds = append(kinds, argI32)
			case strings.HasPrefix(p, "float "):
				kinds = append(kinds, argF32)
			default:
				t.Fatalf("%s: parameter %q", m[1], p)
			}
		}
		params[m[1]] = kinds
	}
	sigs := map[string][]argKind{}
	for _, m := range use.FindAllStringSubmatch(s, -1) {
		if k, ok := params[m[2]]; ok {
			sigs[m[1]+"_f32"], sigs[m[1]+"_f16"] = k, k
		}
	}
	return sigs
}

// checkArgs fails unless l passes the arguments its kernel declares.
func checkArgs(t *testing.T, sigs map[string][]argKind, l launch) {
	t.Helper()
	want, ok := sigs[l.kernel]
	if !ok {
		t.Fatalf("no signature for %s", l.kernel)
	}
	if len(want) != len(l.args) {
		t.Fatalf("%s: %d arguments, the kernel declares %d", l.kernel, len(l.args), len(want))
	}
	for i, a := range l.args {
		if a.kind != want[i] {
			t.Errorf("%s: argument %d is of kind %d, the kernel declares %d", l.kernel, i, a.kind, want[i])
		}
	}
}

// TestEpilogueKernelChoice compiles one-convolution networks (epiNet,
// optimized as kiln build does: one kiln::FusedConv) in half and float32,
// NHWC and NCHW, and checks the epilogue launch after the library's plain
// convolution: the vector kernel where the data is channels-last (NHWC,
// or one pixel) and M a multiple of the vector width, with a block that
// is a multiple of M/width (or of 256 that M/width divides) and a grid of
// at most epiResidentThreads; the plane kernel, one block a plane, for
// NCHW planes of planeMinVectors vectors or more; the scalar kernel for
// the rest (small planes, odd M at one pixel); each with
// the arguments its kernel declares, in order.
func TestEpilogueKernelChoice(t *testing.T) {
	sigs := epilogueParams(t)
	const batch = 2
	cases := []struct {
		name          string
		cin, hw, m, k int
		act           string
		residual      bool
		half, nchw    bool
		kernel        string
		block, grid   uint32
		count         int64 // total (vec, scalar) or planes (plane)
		plane         int64 // plane and scalar kernels: the plane size
		code          int
	}{
		// NHWC half: 2*8*8*16 = 2048 halves, 256 vectors; M/8 = 2 divides 256
		{"nhwc M16 HardSwish", 8, 8, 16, 3, "HardSwish", false, true, false, "chan_epilogue_vec_f16", 256, 1, 2048, 0, actHardSwish},
		// M/8 = 3: blocks of 255 threads; 384 vectors
		{"nhwc M24 LeakyRelu", 8, 8, 24, 3, "LeakyRelu", false, true, false, "chan_epilogue_vec_f16", 255, 2, 3072, 0, actLeakyRelu},
		// M/8 = 5 with the residual: blocks of 255; 2*8*8*40/8 = 640 vectors
		{"nhwc M40 residual SiLU", 8, 8, 40, 1, "SiLU", true, true, false, "chan_epilogue_vec_f16", 255, 3, 5120, 0, actSiLU},
		{"nhwc M16 Clip", 8, 8, 16, 3, "Clip", false, true, false, "chan_epilogue_vec_f16", 256, 1, 2048, 0, actClip},
		// NCHW half, 48x48 planes: 288 vectors a plane (>= planeMinVectors), 2*16 planes
		{"nchw half 48x48", 8, 48, 16, 3, "SiLU", false, true, true, "chan_epilogue_plane_f16", 256, 32, 32, 2304, actSiLU},
		// small planes (8 vectors; 49 halves): the scalar kernel, 2048 and 1568 elements
		{"nchw half 8x8", 8, 8, 16, 3, "SiLU", false, true, true, "chan_epilogue_f16", 256, 8, 2048, 64, actSiLU},
		{"nchw half 7x7 residual", 8, 7, 16, 3, "HardSwish", true, true, true, "chan_epilogue_f16", 256, 7, 1568, 49, actHardSwish},
		// a depthwise-like width, M not a multiple of 8: NCHW even in the NHWC plan
		{"half M6 planes", 8, 48, 6, 3, "SiLU", false, true, false, "chan_epilogue_plane_f16", 256, 12, 12, 2304, actSiLU},
		// float32: NCHW; 32x32 planes of 256 float4
		{"fp32 32x32", 8, 32, 16, 3, "SiLU", false, false, false, "chan_epilogue_plane_f32", 256, 32, 32, 1024, actSiLU},
		{"fp32 8x8", 8, 8, 16, 3, "SiLU", false, false, false, "chan_epilogue_f32", 256, 8, 2048, 64, actSiLU},
		// one pixel: channels-last in either layout
		{"fp32 1x1 M16", 8, 1, 16, 1, "SiLU", true, false, false, "chan_epilogue_vec_f32", 256, 1, 32, 0, actSiLU},
		{"fp32 1x1 M6", 8, 1, 6, 1, "SiLU", false, false, false, "chan_epilogue_f32", 256, 1, 12, 1, actSiLU},
		{"half 1x1 M6 (odd M)", 8, 1, 6, 1, "LeakyRelu", false, true, true, "chan_epilogue_f16", 256, 1, 12, 1, actLeakyRelu},
		// M/8 = 257 > 256: blocks of 257 threads
		{"half 1x1 M2056", 8, 1, 2056, 1, "SiLU", false, true, true, "chan_epilogue_vec_f16", 257, 2, 4112, 0, actSiLU},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := epiNet(t, tc.cin, tc.hw, tc.m, tc.k, tc.act, tc.residual)
			g := optimizedGraph(t, path, epiInputs(batch, tc.cin, tc.hw, tc.m, tc.residual))
			p, err := compileLayout(g, false, tc.half, true, tc.nchw)
			if err != nil {
				t.Fatal(err)
			}
			var cc *convCall
			for _, s := range p.steps {
				if s.conv != nil {
					if cc != nil {
						t.Fatal("two convolutions")
					}
					cc = s.conv
				}
			}
			if cc == nil {
				t.Fatal("no convolution step a library may run")
			}
			l := cc.post
			if l.kernel != tc.kernel || l.block.X != tc.block || l.grid.X != tc.grid || l.grid.Y != 1 || l.block.Y != 1 {
				t.Fatalf("post %s grid %d block %d, want %s grid %d block %d (nhwc %v)", l.kernel, l.grid.X, l.block.X, tc.kernel, tc.grid, tc.block, cc.nhwc)
			}
			if !p.kernels[l.kernel] {
				t.Errorf("the program's kernels lack %s", l.kernel)
			}
			checkArgs(t, sigs, l)
			if l.args[0].ref != cc.y {
				t.Errorf("y %+v, the convolution writes %+v", l.args[0].ref, cc.y)
			}
			if l.args[1].ref.buf != bufWeights {
				t.Errorf("bias %+v, want the weights'", l.args[1].ref)
			}
			if got := l.args[2].ref.buf != bufNil; got != tc.residual {
				t.Errorf("residual passed %v, want %v", got, tc.residual)
			}
			a := l.args[3:]
			switch {
			case strings.HasPrefix(tc.kernel, "chan_epilogue_vec"):
				if a[0].i != tc.count || a[1].i != int64(tc.m) || a[2].i != int64(tc.code) {
					t.Errorf("total %d M %d act %d, want %d %d %d", a[0].i, a[1].i, a[2].i, tc.count, tc.m, tc.code)
				}
				w := uint32(8)
				if !tc.half {
					w = 4
				}
				if v := uint32(tc.m) / w; l.block.X*l.grid.X%v != 0 {
					t.Errorf("grid stride %d is not a multiple of M/%d = %d", l.block.X*l.grid.X, w, v)
				}
				if int64(l.block.X)*int64(l.grid.X) > epiResidentThreads+1024 {
					t.Errorf("%d threads", l.block.X*l.grid.X)
				}
			default: // plane: planes, hw, M; scalar: total, hw, M
				if a[0].i != tc.count || a[1].i != tc.plane || a[2].i != int64(tc.m) || a[3].i != int64(tc.code) {
					t.Errorf("count %d hw %d M %d act %d, want %d %d %d %d", a[0].i, a[1].i, a[2].i, a[3].i, tc.count, tc.plane, tc.m, tc.code)
				}
			}
			if tc.act == "LeakyRelu" && l.args[len(l.args)-2].f != 0.1 {
				t.Errorf("alpha %g", l.args[len(l.args)-2].f)
			}
			if tc.act == "Clip" && (l.args[len(l.args)-2].f != 0 || l.args[len(l.args)-1].f != 6) {
				t.Errorf("clip %g %g", l.args[len(l.args)-2].f, l.args[len(l.args)-1].f)
			}
		})
	}
}

// TestEpilogueLargeGrid checks the vector launch at ResNet-50's largest
// epilogue (batch 256, 56x56, M 256): the grid is the resident threads'
// (1056 blocks of 256), not one thread a vector, and the plane launch's
// grid is one block a plane.
func TestEpilogueLargeGrid(t *testing.T) {
	c := &compiler{half: true}
	y, bias := ref{buf: bufArena, id: 1}, ref{buf: bufWeights, off: 256}
	l := c.chanEpilogue(y, &bias, nil, activation{code: actSiLU}, 256*56*56, 256, 1)
	if l.kernel != "chan_epilogue_vec_f16" || l.block.X != 256 || l.grid.X != epiResidentThreads/256 {
		t.Errorf("channels-last: %s grid %d block %d", l.kernel, l.grid.X, l.block.X)
	}
	l = c.chanEpilogue(y, &bias, nil, activation{code: actSiLU}, 256, 96, 112*112)
	if l.kernel != "chan_epilogue_plane_f16" || l.block.X != 256 || l.grid.X != 256*96 {
		t.Errorf("planes: %s grid %d block %d", l.kernel, l.grid.X, l.block.X)
	}
	// a misaligned bias (a view into the weights) takes the scalar kernel
	odd := ref{buf: bufWeights, off: 258}
	if l := c.chanEpilogue(y, &odd, nil, activation{}, 4, 16, 1); l.kernel != "chan_epilogue_f16" {
		t.Errorf("misaligned bias: %s", l.kernel)
	}
}

// TestElementwiseVecChoice compiles standalone elementwise ops (level 0:
// nothing fused) and checks that each runs the 16-byte vector kernel where
// the element count (and b's period) is a multiple of the vector width,
// the scalar one otherwise, with the arguments the kernel declares.
func TestElementwiseVecChoice(t *testing.T) {
	sigs := epilogueParams(t)
	cases := []struct {
		name   string
		op     string
		a, b   []int // b nil: unary
		half   bool
		kernel string
		bn     int64
	}{
		{"add same shape", "Add", []int{2, 16, 4, 4}, []int{2, 16, 4, 4}, true, "binary_flat_vec_f16", 512},
		{"mul trailing vector", "Mul", []int{2, 3, 16}, []int{16}, true, "binary_flat_vec_f16", 16},
		{"sub scalar", "Sub", []int{2, 3, 16}, []int{1}, true, "binary_flat_vec_f16", 1},
		{"add odd period", "Add", []int{2, 3, 12}, []int{12}, true, "binary_flat_f16", 12},
		{"fp32 add period 12", "Add", []int{2, 3, 12}, []int{12}, false, "binary_flat_vec_f32", 12},
		{"add odd count", "Add", []int{3, 5}, []int{3, 5}, true, "binary_flat_f16", 15},
		{"tanh", "Tanh", []int{2, 3, 16}, nil, true, "unary_vec_f16", 0},
		{"sigmoid odd", "Sigmoid", []int{3, 5}, nil, true, "unary_f16", 0},
		{"fp32 relu", "Relu", []int{2, 6}, nil, false, "unary_vec_f32", 0},
		// b constant over planes: binary_plane (planes, hw, bm in the want below)
		{"mul se scale", "Mul", []int{2, 16, 48, 48}, []int{2, 16, 1, 1}, true, "binary_plane_f16", 0},
		{"mul se scale, b first", "Mul", []int{2, 16, 1, 1}, []int{2, 16, 48, 48}, true, "binary_plane_f16", 0},
		{"add channel bias", "Add", []int{2, 16, 32, 32}, []int{16, 1, 1}, false, "binary_plane_f32", 0},
		{"sub per batch", "Sub", []int{2, 16, 16, 16}, []int{2, 1, 1, 1}, true, "binary_plane_f16", 0},
		// planes under planeMinVectors: the general kernel
		{"mul se scale 7x7", "Mul", []int{2, 16, 7, 7}, []int{2, 16, 1, 1}, true, "binary_f16", 0},
		// not commutative with b first, and b varying inside the plane: the general kernel
		{"sub b first", "Sub", []int{2, 16, 1, 1}, []int{2, 16, 7, 7}, true, "binary_f16", 0},
		{"mul mixed", "Mul", []int{2, 16, 7, 7}, []int{1, 16, 1, 7}, true, "binary_f16", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := ir.NewBuilder("ew", 17)
			dims := func(d []int) []ir.Dim {
				var out []ir.Dim
				for _, v := range d {
					out = append(out, ir.D(int64(v)))
				}
				return out
			}
			in := []*ir.Value{b.Input("a", tensor.Float32, dims(tc.a)...)}
			if tc.b != nil {
				in = append(in, b.Input("b", tensor.Float32, dims(tc.b)...))
			}
			b.Output(b.Op(tc.op, in), "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			p, err := compileLayout(g, false, tc.half, true, false)
			if err != nil {
				t.Fatal(err)
			}
			var l *launch
			for i := range p.steps {
				if p.steps[i].node.OpType == tc.op {
					l = &p.steps[i].launches[0]
				}
			}
			if l == nil {
				t.Fatalf("no %s step", tc.op)
			}
			if l.kernel != tc.kernel {
				t.Fatalf("%s runs %s, want %s", tc.op, l.kernel, tc.kernel)
			}
			checkArgs(t, sigs, *l)
			total := int64(1)
			for _, d := range tc.a {
				total *= int64(d)
			}
			switch {
			case strings.HasPrefix(tc.kernel, "binary_plane"):
				np, hw, bm := l.args[3].i, l.args[4].i, l.args[5].i
				want := map[string][3]int64{"mul se scale": {32, 2304, 32}, "mul se scale, b first": {32, 2304, 32},
					"add channel bias": {32, 1024, 16}, "sub per batch": {2, 4096, 2}}[tc.name]
				if [3]int64{np, hw, bm} != want {
					t.Errorf("planes %d hw %d bm %d, want %v", np, hw, bm, want)
				}
				if l.grid.X != uint32(np) {
					t.Errorf("grid %d for %d planes", l.grid.X, np)
				}
				big, small := "a", "b" // the kernel's a is the full-size input
				if prod(tc.b) > prod(tc.a) {
					big, small = "b", "a"
				}
				if l.args[1].ref != inputRef(t, p, big) || l.args[2].ref != inputRef(t, p, small) {
					t.Errorf("a %+v b %+v, want input %s's storage then %s's", l.args[1].ref, l.args[2].ref, big, small)
				}
			case strings.HasPrefix(tc.kernel, "binary_f"):
			case tc.b != nil:
				if l.args[3].i != total || l.args[4].i != tc.bn {
					t.Errorf("n %d bn %d, want %d %d", l.args[3].i, l.args[4].i, total, tc.bn)
				}
			default:
				if l.args[2].i != total {
					t.Errorf("n %d, want %d", l.args[2].i, total)
				}
			}
		})
	}
}

// epilogueTactics counts the layers of e that run a library's plain
// convolution followed by the vector or the plane epilogue kernel.
func epilogueTactics(e *Engine) (vec, plane int) {
	for _, l := range e.Layers() {
		switch {
		case strings.HasSuffix(l.Tactic, "+ chan_epilogue_vec_f16"), strings.HasSuffix(l.Tactic, "+ chan_epilogue_vec_f32"):
			vec++
		case strings.HasSuffix(l.Tactic, "+ chan_epilogue_plane_f16"), strings.HasSuffix(l.Tactic, "+ chan_epilogue_plane_f32"):
			plane++
		}
	}
	return vec, plane
}

// TestEpilogueModelsFake builds the reference models whose activations
// cuDNN's fused call lacks (yolo_tiny: LeakyRelu; mobilenet_v2: Clip) in
// half with the builder's defaults against the fake libraries, and checks
// that their convolutions run as cuDNN's plain call followed by the new
// epilogue kernels (NHWC ones by the vector kernel, NCHW ones by the
// plane kernel), and that the engine runs.
func TestEpilogueModelsFake(t *testing.T) {
	dir := fakeLibs(t)
	for _, tc := range []struct {
		model      string
		vec, plane bool // at least one layer of each
	}{
		{"yolo_tiny", true, true},
		{"mobilenet_v2", true, true},
	} {
		t.Run(tc.model, func(t *testing.T) {
			path := modelPath(t, tc.model)
			in := randomImages(t, tc.model, 2, 1)
			e, c := fakeEngine(t, dir, optimizedGraph(t, path, in), Options{LibDir: dir, FP16: true})
			vec, plane := epilogueTactics(e)
			t.Logf("%d layers with the vector epilogue, %d with the plane one", vec, plane)
			if (vec > 0) != tc.vec || (plane > 0) != tc.plane {
				t.Errorf("%d vector and %d plane epilogues; layers: %s", vec, plane, summarize(e.Layers()))
			}
			if _, err := c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// inputRef is where p keeps graph input name's value on the device (in
// half, the output of its conversion from float32).
func inputRef(t *testing.T, p *program, name string) ref {
	t.Helper()
	for _, s := range p.steps {
		if s.node.Name == "input "+name && len(s.launches) == 1 {
			return s.launches[0].args[0].ref
		}
	}
	for _, io := range p.inputs {
		if io.name == name {
			return io.ref
		}
	}
	t.Fatalf("no input %q", name)
	return ref{}
}
