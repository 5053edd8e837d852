package kernels

import (
	"errors"
	"sync"
	"unsafe"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// kiln::QConv (ops/nn/qfused.go defines the op, its inference and
// reference kernel: X quantized element by element, int32 window sums in
// plain loops; ops/nn/convgeom.go's nn.QConvGeometry checks the inputs and
// resolves the window for both paths): cpu.QConv runs
//
//   - one input channel per group (depthwise, windows up to 1024): the
//     2-D ones by cpu.Int8Depthwise, the others by the float32
//     convolution (convF32) on the quantized values, exact as sums of up
//     to 1024 products of int8 are integers below 2^24, then the scales,
//     bias, residual and clamp (cpu.ScaleBiasClamp);
//   - the others by qconvGEMM: X quantized into channel quads, im2col of
//     quads (a 1x1 convolution reads the quantized input as it is) and
//     cpu.Int8Gemm with the epilogue in its output.
//
// The weights are packed once per int8 kernel (int8PackCache); Relu and
// Clip are the int8 epilogue's clamp, other activations a pass after.
var qConvKernels = []Def{
	{Name: "cpu.QConv", Domain: "kiln", Type: "QConv", Types: []tensor.DType{tensor.Float32},
		Prepare: prepareQConv},
}

func prepareQConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseQConvAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	geo, ok := ref.(nn.QConvGeometry)
	if !ok {
		return nil, errors.New("the reference kernel of kiln::QConv does not resolve its geometry (nn.QConvGeometry)")
	}
	return &qConvKernel{Kernel: ref, geo: geo, xScale: a.XScale, ep: a.EpilogueAttrs}, nil
}

// qConvKernel is the fast Run of kiln::QConv; Infer and the errors are the
// reference's.
type qConvKernel struct {
	ops.Kernel
	geo    nn.QConvGeometry
	xScale float32
	ep     ops.EpilogueAttrs
	// cache holds the weights packed for the int8 GEMM, cacheDW as float32
	// integers for the depthwise path.
	cache, cacheDW int8PackCache[qConvPacked]
}

// qConvPacked is a QConv's weights packed for the int8 GEMM (one matrix
// per group, K ordered channel quad, kernel offset, channel in quad) or,
// for one input channel per group, as float32 integers.
type qConvPacked struct {
	groups []*cpu.Int8Weights
	wf     []float32
}

func (k *qConvKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, outShape, sc, err := k.geo.QConvSetup(in)
	if err != nil {
		return nil, err
	}
	x, w := in[0], in[1]
	var bias, zv []float32
	if len(in) > 3 && in[3] != nil {
		bias = in[3].Float32s()
	}
	if len(in) > 4 && in[4] != nil {
		zv = in[4].Float32s()
	}
	y, err := ops.NewOutput(env, tensor.Float32, outShape)
	if err != nil {
		return k.Kernel.Run(env, in) // the reference's error for an output too large
	}
	lo, hi, clamped := int8Clamp(k.ep)
	yv := y.Float32s()
	n, c, m, group := s.Dims()
	_, outSize, kSize := s.Sizes()
	if c/max(1, group) == 1 && kSize*128*128 <= 1<<24 {
		// One input channel per group (depthwise): the float32 kernels
		// (direct or im2col+GEMM, never Winograd for one channel per
		// group) on the integer values are exact, since sums of up to
		// 1024 products of int8 are integers below 2^24, and faster than
		// a one-row int8 GEMM.
		p := k.cacheDW.get(w, func() *qConvPacked { return packQConvFloat(w) })
		if cp, ok := s.Conv2D(); ok {
			cpu.Int8Depthwise(cp, x.Float32s(), k.xScale, p.wf, sc, bias, zv, yv, lo, hi)
			if !clamped {
				epilogueApply(k.ep, yv)
			}
			return env.One(y), nil
		}
		xf, xbuf := qScratch[float32](x.Len())
		defer qScratchPool.Put(xbuf)
		xv := x.Float32s()
		cpu.ParallelFor(len(xv), 1<<14, func(lo2, hi2 int) {
			cpu.QuantizeInt8Float(xf[lo2:hi2], xv[lo2:hi2], k.xScale)
		})
		convF32(s, xf, p.wf, nil, yv)
		cpu.ParallelFor(n*m, max(1, 4096/max(1, outSize)), func(lo2, hi2 int) {
			for t := lo2; t < hi2; t++ {
				ch := t % m
				var bm float32
				if bias != nil {
					bm = bias[ch]
				}
				row := yv[t*outSize : (t+1)*outSize]
				var zr []float32
				if zv != nil {
					zr = zv[t*outSize : (t+1)*outSize]
				}
				cpu.ScaleBiasClamp(row, row, sc[ch], bm, zr, lo, hi)
			}
		})
	} else {
		p := k.cache.get(w, func() *qConvPacked { return packQConv(s, w) })
		qconvGEMM(s, p, x.Float32s(), k.xScale, sc, bias, zv, yv, lo, hi)
	}
	if !clamped {
		epilogueApply(k.ep, yv)
	}
	return env.One(y), nil
}

// packQConvFloat returns W's int8 values as float32.
func packQConvFloat(w *tensor.Tensor) *qConvPacked {
	src := w.Int8s()
	wf := make([]float32, len(src))
	for i, v := range src {
		wf[i] = float32(v)
	}
	return &qConvPacked{wf: wf}
}

// packQConv packs W [M, cg, k...] per group as mg x (cg4*kSize) matrices,
// column ((c/4)*kSize + kk)*4 + c%4 holding W[m][c][kk], cg4 being cg
// rounded up to a multiple of 4 (zeros past cg).
func packQConv(s *nn.ConvShape, w *tensor.Tensor) *qConvPacked {
	_, c, m, group := s.Dims()
	_, _, kSize := s.Sizes()
	cg, mg := c/group, m/group
	cq := (cg + 3) / 4
	kk4 := cq * 4 * kSize
	src := w.Int8s()
	p := &qConvPacked{groups: make([]*cpu.Int8Weights, group)}
	buf := make([]int8, mg*kk4)
	for g := 0; g < group; g++ {
		clear(buf)
		for m := 0; m < mg; m++ {
			row := src[(g*mg+m)*cg*kSize : (g*mg+m+1)*cg*kSize]
			for c := 0; c < cg; c++ {
				for kk := 0; kk < kSize; kk++ {
					buf[m*kk4+((c/4)*kSize+kk)*4+c%4] = row[c*kSize+kk]
				}
			}
		}
		p.groups[g] = cpu.PackInt8Weights(buf, mg, kk4, kk4)
	}
	return p
}

// qconvTile bounds the number of elements of one im2col tile (ops/nn's
// convTile, the tile QConv had there), so that the column buffer stays in
// cache.
const qconvTile = 1 << 18

// qconvGEMM computes a QConv of more than one input channel per group:
// each image's group of channels is quantized into channel quads
// (NCHWc4), im2col copies four channels at a time into the quad layout of
// cpu.Int8Gemm (a 1x1 convolution uses the quantized input as it is), and
// the GEMM's epilogue writes y.
func qconvGEMM(s *nn.ConvShape, p *qConvPacked, x []float32, xScale float32, sc, bias, z, y []float32, lo, hi float32) {
	n, c, m, group := s.Dims()
	inSize, outSize, kSize := s.Sizes()
	cg, mg := c/group, m/group
	cq := (cg + 3) / 4
	imgs := n * group
	outW := s.OutW()
	runs := outSize / max(1, outW)
	if imgs == 0 || mg == 0 || runs == 0 {
		return
	}
	// Quantize every (image, group) into channel quads.
	qLen := cq * inSize * 4
	xq, xbuf := qScratch[int8](imgs * qLen)
	defer qScratchPool.Put(xbuf)
	cpu.ParallelFor(imgs*cq, max(1, 8192/max(1, 4*inSize)), func(lo2, hi2 int) {
		for t := lo2; t < hi2; t++ {
			ig, q := t/cq, t%cq
			b, g := ig/group, ig%group
			c0 := 4 * q
			src := x[(b*c+g*cg+c0)*inSize:]
			cpu.QuantizeInt8Quads(xq[ig*qLen+q*inSize*4:], inSize*4, src, inSize, min(4, cg-c0), inSize, xScale)
		}
	})
	direct := s.Pointwise()
	kRows := cq * kSize
	perTile := runs
	if !direct {
		perTile = max(1, min(runs, qconvTile/max(1, kRows*outW)))
	}
	tiles := (runs + perTile - 1) / perTile
	tasks := imgs * tiles
	// Many small GEMMs run one per goroutine; otherwise each one is split.
	work := mg * kRows * 4 * perTile * outW
	outer := tasks >= cpu.Threads() && work < 1<<22
	nt := cpu.Threads()
	if outer {
		nt = 1
	}
	colLen := 0
	if !direct {
		colLen = kRows * perTile * outW
	}
	task := func(t int, col []uint32) {
		tile, ig := t%tiles, t/tiles
		b, g := ig/group, ig%group
		r0 := tile * perTile
		r1 := min(runs, r0+perTile)
		p0, n := r0*outW, (r1-r0)*outW
		o := &cpu.Int8Output{Scale: sc[g*mg : (g+1)*mg], Lo: lo, Hi: hi, Ld: outSize}
		if bias != nil {
			o.Bias = bias[g*mg : (g+1)*mg]
		}
		off := (b*m + g*mg) * outSize
		o.Dst = y[off+p0:]
		if z != nil {
			o.Z = z[off+p0:]
		}
		img := xq[ig*qLen : (ig+1)*qLen]
		if qLen == 0 { // no input channels: the output is the bias
			cpu.Int8Gemm(p.groups[g], nil, n, 4*n, o, nt)
			return
		}
		if direct {
			cpu.Int8Gemm(p.groups[g], img[4*p0:], n, 4*inSize, o, nt)
			return
		}
		img32 := unsafe.Slice((*uint32)(unsafe.Pointer(&img[0])), qLen/4)
		col = col[:kRows*n]
		s.Im2colQuads(img32, cq, col, r0, r1, !outer)
		colb := unsafe.Slice((*int8)(unsafe.Pointer(&col[0])), 4*len(col))
		cpu.Int8Gemm(p.groups[g], colb, n, 4*n, o, nt)
	}
	if !outer {
		col, buf := qScratch[uint32](colLen)
		defer qScratchPool.Put(buf)
		for t := 0; t < tasks; t++ {
			task(t, col)
		}
		return
	}
	cpu.ParallelFor(tasks, 1, func(lo2, hi2 int) {
		col, buf := qScratch[uint32](colLen)
		defer qScratchPool.Put(buf)
		for t := lo2; t < hi2; t++ {
			task(t, col)
		}
	})
}

// qScratchPool recycles QConv's buffers (the quantized input, the columns),
// as ops/nn's scratch pool did: an INT8 layer allocates no buffer of the
// activations' size per run.
var qScratchPool sync.Pool // of *[]uint64

// qScratch returns a pooled buffer of n elements of T (contents
// undefined) and the handle to give back to qScratchPool.
func qScratch[T any](n int) ([]T, *[]uint64) {
	var z T
	words := (n*int(unsafe.Sizeof(z)) + 7) / 8
	bp, _ := qScratchPool.Get().(*[]uint64)
	if bp == nil || cap(*bp) < words {
		b := make([]uint64, words)
		bp = &b
	}
	if words == 0 {
		return []T{}, bp
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&(*bp)[:words][0])), n), bp
}
