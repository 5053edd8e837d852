package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/device/cuda"
)

// 1x1 convolutions as cuBLASLt products (issue 11).
//
// In an NHWC half engine, a convolution with a 1x1 kernel, stride 1, no
// padding and one group is a matrix product straight on its tensors:
// Y[N*H*W, M] = X[N*H*W, C] W^T, X and Y being the NHWC input and output
// read as row-major matrices and W the weights as layout.go's nhwcWeights
// stores them, [M, 1, 1, C]: row-major [M, C], which is B stored
// transposed (MatmulOptions.TransB). The weights need no other copy. The
// layer's bias and ReLU go into cuBLASLt's epilogue (RELU_BIAS or BIAS)
// and its residual through C with beta = 1 (cuBLASLt adds C before the
// bias and the activation: relu(conv + z + bias), which is what the fused
// layer computes); a layer with another activation runs the product and
// then its epilogue kernel (chan_epilogue_f16), as cuDNN's plain call does.
//
// These products are tactics that tuning times against cuDNN's plans and
// kiln's kernel (the timing cache names them "cublaslt-epilogue:R" and
// "cublaslt:R", R the rank of cuBLASLt's heuristic result): they run only
// where they were measured faster, or where a plan's tactic says so.
// Untuned engines keep cuDNN's fused call. Strided 1x1 convolutions
// (ResNet's downsamples) stay with cuDNN: see device/cuda/NOTES.md.

// conv1x1PlainToo makes tuning time the plain product (then the epilogue
// kernel) also where cuBLASLt's epilogue fits. It never won on ResNet-50's
// layers at batch 256 on an H100 (2-4x slower than the product with the
// epilogue: the epilogue kernel's pass over the output, NOTES.md), so it is
// off: half the products' timings. Tests turn it on to measure it.
var conv1x1PlainToo = false

// conv1x1State holds the NHWC 1x1 convolutions planned as cuBLASLt
// products.
type conv1x1State struct {
	use   map[int]*cuda.LtMatmul // by step: the product that runs the step
	epi   map[int]bool           // steps whose bias, ReLU and residual cuBLASLt adds
	spare map[int]conv1x1Plans   // tuning: each step's products, timed by tune
}

// conv1x1Plans are a step's products: with the epilogue (bias, ReLU,
// residual through C) and plain (the epilogue kernel after); either may be
// nil.
type conv1x1Plans struct{ epi, plain *cuda.LtMatmul }

func (p conv1x1Plans) destroy() {
	p.epi.Destroy() // nil-safe
	p.plain.Destroy()
}

// destroy frees every plan.
func (st *conv1x1State) destroy() {
	for _, p := range st.spare {
		p.destroy()
	}
	for _, mm := range st.use {
		mm.Destroy() // a second Destroy of a spare one does nothing
	}
	st.use, st.epi, st.spare = nil, nil, nil
}

// gemm1x1 reports whether cc is a product over its NHWC tensors: a 1x1
// kernel, stride 1, no padding, one group.
func (cc *convCall) gemm1x1() bool {
	return cc != nil && cc.nhwc && cc.kh == 1 && cc.kw == 1 && cc.sh == 1 && cc.sw == 1 &&
		cc.ph == 0 && cc.pw == 0 && cc.group == 1 && cc.oh == cc.h && cc.ow == cc.wd
}

// ltEpilogue1x1 reports whether cuBLASLt's epilogue can do all of cc's
// post: a constant bias (cc.fusable gives one, zeros when the layer has
// none), ReLU or nothing, and the residual through C.
func (cc *convCall) ltEpilogue1x1() bool {
	return cc.fusable && cc.bias.buf == bufWeights
}

// newMatmul1x1 plans cc's product on b: with the epilogue (epi) or plain.
func (e *Engine) newMatmul1x1(b *cuda.CUBLASLt, h cuda.CUBLASLtHandle, cc *convCall, epi bool) (*cuda.LtMatmul, error) {
	mo := cuda.MatmulOptions{Half: true, TransB: true}
	if epi {
		if !cc.ltEpilogue1x1() {
			return nil, fmt.Errorf("%w: the epilogue of this 1x1 convolution (post %q) is not cuBLASLt's", ErrUnsupported, cc.post.kernel)
		}
		mo.Bias, mo.ReLU, mo.Residual = e.weights+cuda.DevicePtr(cc.bias.off), cc.relu, cc.z != nil
	}
	return b.NewMatmulWith(h, cc.n*cc.h*cc.wd, cc.m, cc.c, mo, maxWorkspace)
}

// plan1x1 plans the NHWC 1x1 convolutions as cuBLASLt products: a step
// whose recorded tactic (Options.Tactics) names cuBLASLt runs so, its
// cuDNN plans freed; with Options.Tune the other steps' products are kept
// for tune to time: with the epilogue where it fits, else plain (both with
// conv1x1PlainToo). Untuned, nothing else changes. A product that cannot
// be planned leaves the step as it was.
func (e *Engine) plan1x1(o cuda.Options) {
	if e.opt.NoCUBLASLt || !e.prog.half {
		return
	}
	var steps []int
	for i, s := range e.prog.steps {
		if s.conv.gemm1x1() {
			steps = append(steps, i)
		}
	}
	if len(steps) == 0 {
		return
	}
	b := e.lt
	if b == nil {
		var err error
		if b, err = cuda.OpenCUBLASLt(o); err != nil {
			return
		}
	}
	h, err := b.Create()
	if err != nil {
		return
	}
	defer b.Destroy(h)
	e.conv1x1 = conv1x1State{use: map[int]*cuda.LtMatmul{}, epi: map[int]bool{}, spare: map[int]conv1x1Plans{}}
	for _, i := range steps {
		s := e.prog.steps[i]
		cc := s.conv
		t, ok := e.opt.Tactics[s.node.Name]
		ok = ok && t.Sig == convSig(s, s.half)
		switch {
		case ok && t.Impl == ImplCUBLASLt && t.Quant == "": // (an FP8 product: planInt8)
			mm, err := e.newMatmul1x1(b, h, cc, t.Epi)
			if err != nil {
				continue // the step runs as planned without the tactic
			}
			if mm.UseCandidate(t.Algo) != nil {
				mm.Destroy()
				continue
			}
			e.dropCUDNN(i)
			e.conv1x1.use[i], e.conv1x1.epi[i] = mm, t.Epi
			e.tactics[s.node.Name] = t
			e.ws = max(e.ws, mm.Workspace)
		case ok || !e.opt.Tune:
			// another recorded choice, or no tuning: cuDNN's plan runs
		default:
			var p conv1x1Plans
			if cc.ltEpilogue1x1() {
				p.epi, _ = e.newMatmul1x1(b, h, cc, true)
			}
			if p.epi == nil || conv1x1PlainToo {
				p.plain, _ = e.newMatmul1x1(b, h, cc, false)
			}
			for _, mm := range []*cuda.LtMatmul{p.epi, p.plain} {
				if mm == nil {
					continue
				}
				for _, a := range mm.Candidates {
					e.ws = max(e.ws, a.Workspace)
				}
			}
			if p.epi != nil || p.plain != nil {
				e.conv1x1.spare[i] = p
			}
		}
	}
	if e.lt == nil && (len(e.conv1x1.use) > 0 || len(e.conv1x1.spare) > 0) {
		e.lt = b // contexts make a cuBLASLt handle
	}
}

// dropCUDNN frees step i's cuDNN plans (a tactic chose cuBLASLt).
func (e *Engine) dropCUDNN(i int) {
	e.convs[i].Destroy() // nil-safe
	e.fused[i].Destroy()
	if g := e.graphs[i]; g != nil {
		g.Destroy()
	}
	if p, ok := e.spare[i]; ok {
		p.destroy()
	}
	delete(e.convs, i)
	delete(e.fused, i)
	delete(e.graphs, i)
	delete(e.spare, i)
}

// has1x1 reports whether tune has cuBLASLt products to time for step i.
func (e *Engine) has1x1(i int) bool {
	_, ok := e.conv1x1.spare[i]
	return ok
}

// with1x1 adds step i's cuBLASLt products to its tuning candidates (after
// the others: ties keep cuDNN) and makes the others' apply stop running the
// product.
func (e *Engine) with1x1(i int, sig string, cands []candidate) []candidate {
	p, ok := e.conv1x1.spare[i]
	if !ok {
		return cands
	}
	for j := range cands {
		apply := cands[j].apply
		cands[j].apply = func() error {
			delete(e.conv1x1.use, i)
			delete(e.conv1x1.epi, i)
			return apply()
		}
	}
	for _, v := range []struct {
		mm  *cuda.LtMatmul
		epi bool
	}{{p.epi, true}, {p.plain, false}} {
		if v.mm == nil {
			continue
		}
		for r := range v.mm.Candidates {
			cands = append(cands, candidate{t: Tactic{Sig: sig, Impl: ImplCUBLASLt, Algo: r, Epi: v.epi}, apply: func() error {
				delete(e.convs, i)
				delete(e.fused, i)
				delete(e.graphs, i)
				e.conv1x1.use[i], e.conv1x1.epi[i] = v.mm, v.epi
				return v.mm.UseCandidate(r)
			}})
		}
	}
	return cands
}

// finish1x1 frees, after tuning, the products that no step runs and counts
// the workspace of those that do.
func (e *Engine) finish1x1() {
	for i, p := range e.conv1x1.spare {
		for _, mm := range []*cuda.LtMatmul{p.epi, p.plain} {
			if mm != nil && e.conv1x1.use[i] != mm {
				mm.Destroy()
			}
		}
		delete(e.conv1x1.spare, i)
	}
	for _, mm := range e.conv1x1.use {
		e.ws = max(e.ws, mm.Workspace)
	}
}

// conv1x1Calls are the calls of step i run as the product mm: the
// product, with the residual through C when the epilogue adds it, else
// followed by the layer's epilogue kernel.
func (c *Context) conv1x1Calls(i int, mm *cuda.LtMatmul) ([]call, []launch) {
	e := c.e
	cc := e.prog.steps[i].conv
	x, w, y := c.addr(cc.x), c.addr(cc.w), c.addr(cc.y)
	run := func() error { return mm.Run(c.ltH, x, w, y, c.ws, e.ws, c.stream) }
	if e.conv1x1.epi[i] {
		if cc.z != nil {
			z := c.addr(*cc.z)
			run = func() error { return mm.RunC(c.ltH, x, w, z, y, c.ws, e.ws, c.stream) }
		}
		return []call{{step: i, lib: run}}, nil
	}
	var launches []launch
	if cc.post.kernel != "" {
		launches = []launch{cc.post}
	}
	return []call{{step: i, lib: run}}, launches
}

// conv1x1Impl names how step i runs, for Layer.Impl.
func (e *Engine) conv1x1Impl(i int) string {
	if e.conv1x1.epi[i] {
		return "cublaslt nhwc 1x1 (" + e.prog.steps[i].conv.fusedEpilogue() + " epilogue)"
	}
	return "cublaslt nhwc 1x1"
}

// conv1x1Tactic describes step i run as a product, as kiln inspect shows
// it: "cublaslt nhwc 1x1 gemm 802816x64x256 algo 21 (heuristic #0 of 8),
// bias+residual+ReLU epilogue", and the kernels launched after it.
func (e *Engine) conv1x1Tactic(i int) (string, []launch) {
	s := e.prog.steps[i]
	cc := s.conv
	mm := e.conv1x1.use[i]
	rank := 0
	if t, ok := e.tactics[s.node.Name]; ok && t.Impl == ImplCUBLASLt {
		rank = t.Algo
	}
	how := fmt.Sprintf("cublaslt nhwc 1x1 gemm %dx%dx%d heuristic #%d of %d", mm.M, mm.N, mm.K, rank, len(mm.Candidates))
	if rank < len(mm.Candidates) && mm.Candidates[rank].ID >= 0 {
		how = fmt.Sprintf("cublaslt nhwc 1x1 gemm %dx%dx%d algo %d (heuristic #%d of %d)", mm.M, mm.N, mm.K, mm.Candidates[rank].ID, rank, len(mm.Candidates))
	}
	if e.conv1x1.epi[i] {
		return how + ", " + cc.fusedEpilogue() + " epilogue", nil
	}
	if cc.post.kernel != "" {
		return how, []launch{cc.post}
	}
	return how, nil
}
