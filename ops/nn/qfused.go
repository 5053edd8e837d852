package nn

import (
	"math"
	"sync"
	"unsafe"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// This file holds kiln's quantized fused operators, which the INT8 pass of
// package quant writes in place of kiln::FusedConv and kiln::FusedMatMul:
// the activations are quantized symmetrically per tensor (one scale, zero
// point 0), the weights per output channel, and the product is computed in
// int32 by the int8 kernels of device/cpu.
//
//	xq  = clamp(RoundToEven(x / x_scale), -127, 127)      (int8)
//	acc = sum of xq * W                                     (int32, exact)
//	y   = act(float32(acc) * (x_scale*WScale[m]) + B[m] + Z)

// qConvOp is kiln::QConv: inputs X (float32, NCHW), W (int8 [M, C/group,
// k...], constant), WScale (float32 [M]), optional B (float32 [M]) and Z
// (float32, the output's shape); the attributes of Conv plus x_scale and
// the activation ones of kiln::FusedConv. Output float32 of Conv's shape.
type qConvOp struct {
	convOp
	xScale float32
	ep     epilogue
	// cache holds the weights packed for the int8 GEMM, cacheDW as float32
	// integers for the depthwise path.
	cache, cacheDW packCache[qConvPacked]
}

// qConvPacked is a QConv's weights packed for the int8 GEMM (one matrix
// per group, K ordered channel quad, kernel offset, channel in quad) or,
// for one input channel per group, as float32 integers.
type qConvPacked struct {
	groups []*cpu.Int8Weights
	wf     []float32
}

// packCache holds weights packed at a kernel's first Run, keyed by the
// weight tensor's storage and the int8 kernel they were packed for, so
// that a constant W is packed once however many contexts run the kernel.
type packCache[T any] struct {
	mu   sync.Mutex
	data unsafe.Pointer
	n    int
	isa  string
	val  *T
}

// get returns the cached value for w, building it with pack on a miss.
func (c *packCache[T]) get(w *tensor.Tensor, pack func() *T) *T {
	var p unsafe.Pointer
	if len(w.Data) > 0 {
		p = unsafe.Pointer(&w.Data[0])
	}
	isa := cpu.Int8ISA()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.val == nil || c.data != p || c.n != len(w.Data) || c.isa != isa {
		c.val, c.data, c.n, c.isa = pack(), p, len(w.Data), isa
	}
	return c.val
}

func prepareQConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseQConvAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &qConvOp{convOp: convOp{win: windowOf(&a.WindowAttrs), group: int(a.Group)}, ep: epilogueOf(a.EpilogueAttrs), xScale: a.XScale}
	return k, nil
}

// checkDType returns an error unless v is nil, of unknown type or of type
// dt.
func checkDType(op, name string, v *ir.Value, dt tensor.DType) error {
	if v != nil && v.Type.DType != tensor.Undefined && v.Type.DType != dt {
		return badInput("%s %s is %v, want %v", op, name, v.Type.DType, dt)
	}
	return nil
}

// checkVector returns an error unless v is nil or of unknown shape or a
// vector whose length is n (when both are known).
func checkVector(op, name string, v *ir.Value, n ir.Dim) error {
	if v == nil || v.Type.Shape == nil {
		return nil
	}
	s := v.Type.Shape
	if len(s) != 1 || (s[0].Known() && n.Known() && s[0].Val != n.Val) {
		return badInput("%s %s has shape %v, want [%v]", op, name, s, n)
	}
	return nil
}

// inferQ checks the dtypes common to QConv and QMatMul: X, Scale, Bias
// and Z float32, W int8.
func inferQ(op string, in []*ir.Value) error {
	if err := needValues(op, in, 3); err != nil {
		return err
	}
	for i, name := range []string{"X", "W", "scale", "bias", "residual"} {
		dt := tensor.Float32
		if i == 1 {
			dt = tensor.Int8
		}
		if err := checkDType(op, name, value(in, i), dt); err != nil {
			return err
		}
	}
	return nil
}

func (k *qConvOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := inferQ("QConv", in); err != nil {
		return nil, err
	}
	s, err := inferConv(&k.win, in[0].Type.Shape, in[1].Type.Shape, k.group)
	if err != nil {
		return nil, err
	}
	m := ir.U()
	if s != nil {
		m = s[1]
	}
	if err := checkVector("QConv", "WScale", in[2], m); err != nil {
		return nil, err
	}
	if err := checkVector("QConv", "bias", value(in, 3), m); err != nil {
		return nil, err
	}
	if z := value(in, 4); z != nil && z.Type.Shape != nil && s != nil && len(z.Type.Shape) != len(s) {
		return nil, badInput("QConv residual has shape %v, output %v", z.Type.Shape, s)
	}
	return []ir.Type{{DType: tensor.Float32, Shape: s}}, nil
}

// qInputs checks the run-time inputs common to QConv and QMatMul and
// returns the combined scales xScale*WScale[m] of m output channels.
func qInputs(op string, in []*tensor.Tensor, xScale float32, m int, outShape []int) ([]float32, error) {
	x, w, ws, b, z := in[0], in[1], in[2], input(in, 3), input(in, 4)
	for i, t := range []*tensor.Tensor{x, w, ws, b, z} {
		want := tensor.Float32
		if i == 1 {
			want = tensor.Int8
		}
		if t != nil && t.DType != want {
			return nil, badInput("%s input %d is %v, want %v", op, i, t.DType, want)
		}
	}
	if ws.Rank() != 1 || ws.Shape[0] != m {
		return nil, badInput("%s weight scales have shape %v, want [%d]", op, ws.Shape, m)
	}
	if b != nil && (b.Rank() != 1 || b.Shape[0] != m) {
		return nil, badInput("%s bias has shape %v, want [%d]", op, b.Shape, m)
	}
	if z != nil && tensor.ShapeString(z.Shape) != tensor.ShapeString(outShape) {
		return nil, badInput("%s residual has shape %v, output %v", op, z.Shape, outShape)
	}
	sc := make([]float32, m)
	for i, v := range ws.Float32s() {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, badInput("%s weight scale %d is %g", op, i, v)
		}
		sc[i] = xScale * v
	}
	return sc, nil
}

// clampOf returns the bounds of the activations the int8 epilogue applies
// itself (none, Relu, Clip) and whether it does.
func (e epilogue) clampOf() (lo, hi float32, ok bool) {
	lo, hi = cpu.NoClamp()
	switch e.act {
	case ActNone:
	case ActRelu:
		lo = 0
	case ActClip:
		lo, hi = e.p0, e.p1
	default:
		return lo, hi, false
	}
	return lo, hi, true
}

func (k *qConvOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("QConv", in, 3); err != nil {
		return nil, err
	}
	x, w, b, z := in[0], in[1], input(in, 3), input(in, 4)
	if x.DType != tensor.Float32 || w.DType != tensor.Int8 {
		return nil, badInput("QConv of %v with weights %v, want float32 and int8", x.DType, w.DType)
	}
	s, outShape, err := convSetup("QConv", &k.win, k.group, x, w, nil)
	if err != nil {
		return nil, err
	}
	sc, err := qInputs("QConv", in, k.xScale, s.m, outShape)
	if err != nil {
		return nil, err
	}
	y, err := ops.NewOutput(env, tensor.Float32, outShape)
	if err != nil {
		return nil, err
	}
	var bias, zv []float32
	if b != nil {
		bias = b.Float32s()
	}
	if z != nil {
		zv = z.Float32s()
	}
	lo, hi, clamped := k.ep.clampOf()
	if !clamped {
		lo, hi = cpu.NoClamp()
	}
	yv := y.Float32s()
	_, outSize, kSize := s.sizes()
	if s.c/s.group == 1 && kSize*128*128 <= 1<<24 {
		// One input channel per group (depthwise): the float32 kernels
		// (direct or im2col+GEMM, never Winograd for one channel per
		// group) on the integer values are exact, since sums of up to
		// 1024 products of int8 are integers below 2^24, and faster than
		// a one-row int8 GEMM.
		p := k.cacheDW.get(w, func() *qConvPacked { return packQConvFloat(w) })
		if g := s.g; g.rank() == 2 {
			cp := cpu.Conv2DParams{
				N: s.n, C: s.c, H: g.in[0], W: g.in[1], M: s.m, KH: g.kernel[0], KW: g.kernel[1],
				Group: s.group, StrideH: g.stride[0], StrideW: g.stride[1], DilH: g.dil[0], DilW: g.dil[1],
				PadTop: g.padB[0], PadLeft: g.padB[1], PadBottom: g.padE[0], PadRight: g.padE[1],
			}
			if cp.Validate() == nil && cp.OutH() == g.out[0] && cp.OutW() == g.out[1] {
				cpu.Int8Depthwise(cp, x.Float32s(), k.xScale, p.wf, sc, bias, zv, yv, lo, hi)
				if !clamped {
					k.ep.apply(yv)
				}
				return []*tensor.Tensor{y}, nil
			}
		}
		xf, xbuf := scratch[float32](x.Len())
		defer putScratch(xbuf)
		xv := x.Float32s()
		cpu.ParallelFor(len(xv), 1<<14, func(lo2, hi2 int) {
			cpu.QuantizeInt8Float(xf[lo2:hi2], xv[lo2:hi2], k.xScale)
		})
		convF32(s, xf, p.wf, nil, yv)
		cpu.ParallelFor(s.n*s.m, max(1, 4096/max(1, outSize)), func(lo2, hi2 int) {
			for t := lo2; t < hi2; t++ {
				m := t % s.m
				var bm float32
				if bias != nil {
					bm = bias[m]
				}
				row := yv[t*outSize : (t+1)*outSize]
				var zr []float32
				if zv != nil {
					zr = zv[t*outSize : (t+1)*outSize]
				}
				cpu.ScaleBiasClamp(row, row, sc[m], bm, zr, lo, hi)
			}
		})
	} else {
		p := k.cache.get(w, func() *qConvPacked { return packQConv(s, w) })
		qconvGEMM(s, p, x.Float32s(), k.xScale, sc, bias, zv, yv, lo, hi)
	}
	if !clamped {
		k.ep.apply(yv)
	}
	return []*tensor.Tensor{y}, nil
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
func packQConv(s *convShape, w *tensor.Tensor) *qConvPacked {
	_, _, kSize := s.sizes()
	cg, mg := s.c/s.group, s.m/s.group
	cq := (cg + 3) / 4
	kk4 := cq * 4 * kSize
	src := w.Int8s()
	p := &qConvPacked{groups: make([]*cpu.Int8Weights, s.group)}
	buf := make([]int8, mg*kk4)
	for g := 0; g < s.group; g++ {
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

// qconvGEMM computes a QConv of more than one input channel per group:
// each image's group of channels is quantized into channel quads
// (NCHWc4), im2col copies four channels at a time into the quad layout of
// cpu.Int8Gemm (a 1x1 convolution uses the quantized input as it is), and
// the GEMM's epilogue writes y.
func qconvGEMM(s *convShape, p *qConvPacked, x []float32, xScale float32, sc, bias, z, y []float32, lo, hi float32) {
	inSize, outSize, kSize := s.sizes()
	cg, mg := s.c/s.group, s.m/s.group
	cq := (cg + 3) / 4
	imgs := s.n * s.group
	outW := s.g.out[s.g.rank()-1]
	runs := outSize / max(1, outW)
	if imgs == 0 || mg == 0 || runs == 0 {
		return
	}
	// Quantize every (image, group) into channel quads.
	qLen := cq * inSize * 4
	xq, xbuf := scratch[int8](imgs * qLen)
	defer putScratch(xbuf)
	cpu.ParallelFor(imgs*cq, max(1, 8192/max(1, 4*inSize)), func(lo2, hi2 int) {
		for t := lo2; t < hi2; t++ {
			ig, q := t/cq, t%cq
			b, g := ig/s.group, ig%s.group
			c0 := 4 * q
			src := x[(b*s.c+g*cg+c0)*inSize:]
			cpu.QuantizeInt8Quads(xq[ig*qLen+q*inSize*4:], inSize*4, src, inSize, min(4, cg-c0), inSize, xScale)
		}
	})
	direct := s.pointwise()
	kRows := cq * kSize
	perTile := runs
	if !direct {
		perTile = max(1, min(runs, convTile/max(1, kRows*outW)))
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
		b, g := ig/s.group, ig%s.group
		r0 := tile * perTile
		r1 := min(runs, r0+perTile)
		p0, n := r0*outW, (r1-r0)*outW
		o := &cpu.Int8Output{Scale: sc[g*mg : (g+1)*mg], Lo: lo, Hi: hi, Ld: outSize}
		if bias != nil {
			o.Bias = bias[g*mg : (g+1)*mg]
		}
		off := (b*s.m + g*mg) * outSize
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
		im2col(s.g, img32, cq, col, r0, r1, !outer)
		colb := unsafe.Slice((*int8)(unsafe.Pointer(&col[0])), 4*len(col))
		cpu.Int8Gemm(p.groups[g], colb, n, 4*n, o, nt)
	}
	if !outer {
		col, buf := scratch[uint32](colLen)
		defer putScratch(buf)
		for t := 0; t < tasks; t++ {
			task(t, col)
		}
		return
	}
	cpu.ParallelFor(tasks, 1, func(lo2, hi2 int) {
		col, buf := scratch[uint32](colLen)
		defer putScratch(buf)
		for t := lo2; t < hi2; t++ {
			task(t, col)
		}
	})
}

// qMatMulOp is kiln::QMatMul: inputs A (float32 [..., K]), B (int8 [K, N],
// constant), BScale (float32 [N]), optional Bias (float32 [N]) and Z
// (float32, the output's shape); attribute a_scale and the activation ones
// of kiln::FusedMatMul. Output float32 [..., N].
//
// This is the op's reference kernel: A quantized element by element, the
// int32 sums in plain loops, then the epilogue. The CPU registry
// (device/cpu/kernels, cpu.QMatMul) runs the nodes with the int8 kernels
// of device/cpu (B packed once) and is tested against this one.
type qMatMulOp struct {
	aScale float32
	ep     epilogue
}

func prepareQMatMul(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseQMatMulAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &qMatMulOp{ep: epilogueOf(a.EpilogueAttrs), aScale: a.AScale}, nil
}

func (k *qMatMulOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := inferQ("QMatMul", in); err != nil {
		return nil, err
	}
	as, bs := in[0].Type.Shape, in[1].Type.Shape
	if bs != nil && len(bs) != 2 {
		return nil, badInput("QMatMul weights have shape %v, want [K, N]", bs)
	}
	if as != nil && len(as) == 0 {
		return nil, badInput("QMatMul of a scalar")
	}
	s, err := inferMatMul(as, bs)
	if err != nil {
		return nil, err
	}
	nd := ir.U()
	if bs != nil {
		nd = bs[1]
	}
	if err := checkVector("QMatMul", "BScale", in[2], nd); err != nil {
		return nil, err
	}
	if err := checkVector("QMatMul", "bias", value(in, 3), nd); err != nil {
		return nil, err
	}
	if z := value(in, 4); z != nil && z.Type.Shape != nil && s != nil && len(z.Type.Shape) != len(s) {
		return nil, badInput("QMatMul residual has shape %v, output %v", z.Type.Shape, s)
	}
	return []ir.Type{{DType: tensor.Float32, Shape: s}}, nil
}

func (k *qMatMulOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("QMatMul", in, 3); err != nil {
		return nil, err
	}
	a, w := in[0], in[1]
	if a.DType != tensor.Float32 || w.DType != tensor.Int8 {
		return nil, badInput("QMatMul of %v with weights %v, want float32 and int8", a.DType, w.DType)
	}
	if w.Rank() != 2 || a.Rank() < 1 || a.Shape[a.Rank()-1] != w.Shape[0] {
		return nil, badInput("QMatMul of %v and weights %v, want [..., K] and [K, N]", a.Shape, w.Shape)
	}
	kd, nd := w.Shape[0], w.Shape[1]
	outShape := append(append([]int{}, a.Shape[:a.Rank()-1]...), nd)
	if _, err := checkedNumel(outShape); err != nil {
		return nil, err
	}
	sc, err := qInputs("QMatMul", in, k.aScale, nd, outShape)
	if err != nil {
		return nil, err
	}
	y, err := ops.NewOutput(env, tensor.Float32, outShape)
	if err != nil {
		return nil, err
	}
	yv := y.Float32s()
	rows := tensor.NumElements(a.Shape[:a.Rank()-1])
	var bias, zv []float32
	if b := input(in, 3); b != nil {
		bias = b.Float32s()
	}
	if z := input(in, 4); z != nil {
		zv = z.Float32s()
	}
	av, wv := a.Float32s(), w.Int8s()
	xq := make([]int32, kd)
	for i := 0; i < rows; i++ {
		for p := range xq {
			xq[p] = int32(quantizeInt8(av[i*kd+p], k.aScale))
		}
		for j := 0; j < nd; j++ {
			var acc int32
			for p, q := range xq {
				acc += q * int32(wv[p*nd+j])
			}
			v := float32(acc) * sc[j]
			if bias != nil {
				v += bias[j]
			}
			if zv != nil {
				v += zv[i*nd+j]
			}
			yv[i*nd+j] = v
		}
	}
	k.ep.apply(yv)
	return []*tensor.Tensor{y}, nil
}

// quantizeInt8 is the activations' quantizer: clamp(RoundToEven(x/scale),
// -127, 127), 0 for NaN.
func quantizeInt8(x, scale float32) int8 {
	f := x / scale
	switch {
	case f >= 127:
		return 127
	case f <= -127:
		return -127
	case f != f:
		return 0
	}
	return int8(math.RoundToEven(float64(f)))
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "QConv", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseQConvAttrs(n, opset) }, Prepare: prepareQConv})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "QMatMul", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseQMatMulAttrs(n, opset) }, Prepare: prepareQMatMul})
}
