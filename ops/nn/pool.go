package nn

import (
	"math"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// poolKind says what a pooling op computes over its windows.
type poolKind int

const (
	poolMax poolKind = iota
	poolAvg
	poolLp
)

// poolOp is ONNX MaxPool, AveragePool and LpPool over N-D windows.
type poolOp struct {
	name         string
	kind         poolKind
	win          window
	includePad   bool
	storageOrder int
	p            float64
	indices      bool
	planes       maxPlaneCache // maxPoolPlanes' plan of the last shape
	regs         poolRegCache  // poolRegPlanes' plan of the last shape
	shapes       shapeCache    // the geometry and output shape of the last shape
}

func preparePool(kind poolKind, name string) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParsePoolAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		k := &poolOp{name: name, kind: kind, win: windowOf(&a.WindowAttrs)}
		switch kind {
		case poolMax:
			k.storageOrder = int(a.StorageOrder)
			k.indices = len(n.Outputs) > 1 && n.Outputs[1] != nil
		case poolAvg:
			k.includePad = a.CountIncludePad
		case poolLp:
			k.p = a.P
		}
		return k, nil
	}
}

func poolAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParsePoolAttrs(n, opset) }

func lpPoolAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseLpPoolAttrs(n, opset) }

func (k *poolOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 1); err != nil {
		return nil, err
	}
	xs := in[0].Type.Shape
	var out ir.Shape
	if xs != nil {
		if len(xs) != len(k.win.kernel)+2 {
			return nil, badInput("%s input %v for kernel_shape %v", k.name, xs, k.win.kernel)
		}
		sp, err := k.win.inferDims(xs[2:], nil)
		if err != nil {
			return nil, err
		}
		out = append(ir.Shape{xs[0], xs[1]}, sp...)
	}
	types := []ir.Type{{DType: in[0].Type.DType, Shape: out}}
	if k.indices {
		types = append(types, ir.Type{DType: tensor.Int64, Shape: out.Clone()})
	}
	return types, nil
}

func (k *poolOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if x.Rank() != len(k.win.kernel)+2 {
		return nil, badInput("%s input %v for kernel_shape %v", k.name, x.Shape, k.win.kernel)
	}
	if len(k.win.kernel) > 3 {
		return nil, badInput("%s over %d spatial dims: at most 3 are supported", k.name, len(k.win.kernel))
	}
	var g *geom
	var outShape []int
	if e := k.shapes.get(x.Shape); e != nil {
		g, outShape = e.g, e.out
	} else {
		var err error
		if g, err = k.win.resolve(x.Shape[2:], nil); err != nil {
			return nil, err
		}
		outShape = append([]int{x.Shape[0], x.Shape[1]}, g.out...)
		k.shapes.put(x.Shape, g, outShape)
	}
	y, err := newOut(env, x.DType, outShape)
	if err != nil {
		return nil, err
	}
	var idx []int64
	var it *tensor.Tensor
	if k.indices {
		if it, err = newOut(env, tensor.Int64, outShape); err != nil {
			return nil, err
		}
		idx = it.Int64s()
	}
	planes := x.Shape[0] * x.Shape[1]
	switch x.DType {
	case tensor.Float32:
		if idx != nil || !(poolRegPlanes(k, g, planes, x.Float32s(), y.Float32s()) || maxPoolPlanes(k, g, planes, x.Float32s(), y.Float32s()) || poolFast2D(k, g, planes, x.Float32s(), y.Float32s())) {
			pool(k, g, planes, x.Float32s(), y.Float32s(), idx)
		}
	case tensor.Float64:
		pool(k, g, planes, x.Float64s(), y.Float64s(), idx)
	case tensor.Float16, tensor.BFloat16:
		yf := make([]float32, y.Len())
		if xf := toFloat32(x); idx != nil || !poolRegPlanes(k, g, planes, xf, yf) {
			pool(k, g, planes, xf, yf, idx)
		}
		if y, err = fromFloat32(x.DType, outShape, yf); err != nil {
			return nil, err
		}
	case tensor.Int8, tensor.Uint8:
		if k.kind != poolMax {
			return nil, badInput("%s of %v, want a float type", k.name, x.DType)
		}
		if x.DType == tensor.Int8 {
			pool(k, g, planes, x.Int8s(), y.Int8s(), idx)
		} else {
			pool(k, g, planes, x.Uint8s(), y.Uint8s(), idx)
		}
	default:
		return nil, badInput("%s of %v", k.name, x.DType)
	}
	if it == nil {
		return env.One(y), nil
	}
	return []*tensor.Tensor{y, it}, nil
}

// span is the valid window of one output position along one dim: kernel
// steps [lo, hi) fall inside the input, starting at input coordinate start
// (for step 0); count is the number of steps inside the padded extent.
type span struct{ lo, hi, start, count int }

// spans computes the windows of every output position along each dim,
// padded to 3 dims with unit leading dims.
func spans(g *geom) (sp [3][]span, in, dil [3]int) {
	r := g.rank()
	for d := 0; d < 3; d++ {
		i := d - (3 - r)
		if i < 0 {
			sp[d] = []span{{lo: 0, hi: 1, start: 0, count: 1}}
			in[d], dil[d] = 1, 1
			continue
		}
		in[d], dil[d] = g.in[i], g.dil[i]
		k, s, dl := g.kernel[i], g.stride[i], g.dil[i]
		sp[d] = make([]span, g.out[i])
		for o := range sp[d] {
			start := o*s - g.padB[i]
			lo := 0
			if start < 0 {
				lo = min(k, (-start+dl-1)/dl)
			}
			hi := 0
			if g.in[i]-1-start >= 0 {
				hi = min(k, (g.in[i]-1-start)/dl+1)
			}
			hi = max(hi, lo)
			cnt := 0
			for j := 0; j < k; j++ {
				if p := start + j*dl; p >= -g.padB[i] && p < g.in[i]+g.padE[i] {
					cnt++
				}
			}
			sp[d][o] = span{lo: lo, hi: hi, start: start, count: cnt}
		}
	}
	return
}

// lowest returns the smallest value of T (-Inf for floats).
func lowest[T ops.Number]() T {
	var z T
	switch any(z).(type) {
	case float32:
		return T(math.Inf(-1))
	case float64:
		return T(math.Inf(-1))
	case int8:
		v := int8(math.MinInt8)
		return T(v)
	}
	return 0
}

// pool computes a windowed pooling of planes planes of x into y (and the
// argmax indices for MaxPool when idx is not nil).
func pool[T ops.Number](k *poolOp, g *geom, planes int, x, y []T, idx []int64) {
	if idx == nil && g.rank() <= 2 && k.kind != poolLp {
		poolSep(k, g, planes, x, y)
		return
	}
	sp, in, dil := spans(g)
	inSize := in[0] * in[1] * in[2]
	outSize := len(sp[0]) * len(sp[1]) * len(sp[2])
	r := g.rank()
	// column-major strides for storage_order 1
	var cm [3]int
	acc := 1
	for d := 3 - r; d < 3; d++ {
		cm[d] = acc
		acc *= in[d]
	}
	low := lowest[T]()
	grain := max(1, (1<<15)/max(1, outSize*len(g.kernel)))
	cpu.ParallelFor(planes, grain, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			xp := x[pl*inSize : (pl+1)*inSize]
			yp := y[pl*outSize : (pl+1)*outSize]
			o := 0
			for _, s0 := range sp[0] {
				for _, s1 := range sp[1] {
					for _, s2 := range sp[2] {
						switch k.kind {
						case poolMax:
							best, at := low, -1
							for j0 := s0.lo; j0 < s0.hi; j0++ {
								r0 := (s0.start + j0*dil[0]) * in[1]
								for j1 := s1.lo; j1 < s1.hi; j1++ {
									r1 := (r0 + s1.start + j1*dil[1]) * in[2]
									for j2 := s2.lo; j2 < s2.hi; j2++ {
										p := r1 + s2.start + j2*dil[2]
										if v := xp[p]; v > best || at < 0 {
											best, at = v, p
										}
									}
								}
							}
							yp[o] = best
							if idx != nil {
								if at < 0 {
									idx[pl*outSize+o] = -1
								} else if k.storageOrder == 0 {
									idx[pl*outSize+o] = int64(pl*inSize + at)
								} else {
									c2 := at % in[2]
									c1 := (at / in[2]) % in[1]
									c0 := at / (in[1] * in[2])
									idx[pl*outSize+o] = int64(pl*inSize + c0*cm[0] + c1*cm[1] + c2*cm[2])
								}
							}
						case poolAvg:
							var sum T
							for j0 := s0.lo; j0 < s0.hi; j0++ {
								r0 := (s0.start + j0*dil[0]) * in[1]
								for j1 := s1.lo; j1 < s1.hi; j1++ {
									r1 := (r0 + s1.start + j1*dil[1]) * in[2]
									for j2 := s2.lo; j2 < s2.hi; j2++ {
										sum += xp[r1+s2.start+j2*dil[2]]
									}
								}
							}
							n := (s0.hi - s0.lo) * (s1.hi - s1.lo) * (s2.hi - s2.lo)
							if k.includePad {
								n = s0.count * s1.count * s2.count
							}
							if n > 0 {
								yp[o] = sum / T(n)
							} else {
								yp[o] = 0 // the output may not be zeroed (ops.NewOutput)
							}
						case poolLp:
							var sum float64
							for j0 := s0.lo; j0 < s0.hi; j0++ {
								r0 := (s0.start + j0*dil[0]) * in[1]
								for j1 := s1.lo; j1 < s1.hi; j1++ {
									r1 := (r0 + s1.start + j1*dil[1]) * in[2]
									for j2 := s2.lo; j2 < s2.hi; j2++ {
										v := math.Abs(float64(xp[r1+s2.start+j2*dil[2]]))
										if k.p == 2 {
											sum += v * v
										} else {
											sum += math.Pow(v, k.p)
										}
									}
								}
							}
							if k.p == 2 {
								yp[o] = T(math.Sqrt(sum))
							} else {
								yp[o] = T(math.Pow(sum, 1/k.p))
							}
						}
						o++
					}
				}
			}
		}
	})
}

// globalPoolOp is ONNX GlobalAveragePool, GlobalMaxPool and GlobalLpPool:
// one window covering all spatial dims.
type globalPoolOp struct {
	name   string
	kind   poolKind
	p      float64
	shapes shapeCache // the output shape of the last input shape
}

func (k *globalPoolOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 1); err != nil {
		return nil, err
	}
	xs := in[0].Type.Shape
	var out ir.Shape
	if xs != nil {
		if len(xs) < 2 {
			return nil, badInput("%s input %v, want [N,C,...]", k.name, xs)
		}
		out = append(ir.Shape{}, xs[:2]...)
		for range xs[2:] {
			out = append(out, ir.D(1))
		}
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: out}}, nil
}

func (k *globalPoolOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if x.Rank() < 2 {
		return nil, badInput("%s input %v, want [N,C,...]", k.name, x.Shape)
	}
	var outShape []int
	if e := k.shapes.get(x.Shape); e != nil {
		outShape = e.out
	} else {
		outShape = append([]int{}, x.Shape[:2]...)
		for range x.Shape[2:] {
			outShape = append(outShape, 1)
		}
		k.shapes.put(x.Shape, nil, outShape)
	}
	planes := x.Shape[0] * x.Shape[1]
	size := tensor.NumElements(x.Shape[2:])
	if size == 0 && k.kind == poolMax {
		return nil, badInput("%s of an empty input %v", k.name, x.Shape)
	}
	y, err := newOut(env, x.DType, outShape)
	if err != nil {
		return nil, err
	}
	switch x.DType {
	case tensor.Float32:
		if k.kind == poolAvg && size > 0 {
			globalAvgF32(planes, size, x.Float32s(), y.Float32s())
			break
		}
		if k.kind == poolMax && size > 0 {
			globalMaxF32(planes, size, x.Float32s(), y.Float32s())
			break
		}
		globalPool(k, planes, size, x.Float32s(), y.Float32s())
	case tensor.Float64:
		globalPool(k, planes, size, x.Float64s(), y.Float64s())
	case tensor.Float16, tensor.BFloat16:
		yf := make([]float32, planes)
		globalPool(k, planes, size, toFloat32(x), yf)
		return one(fromFloat32(x.DType, outShape, yf))
	default:
		return nil, badInput("%s of %v, want a float type", k.name, x.DType)
	}
	return env.One(y), nil
}

// globalPool reduces each plane of size elements of x to one value of y.
func globalPool[T ops.Float](k *globalPoolOp, planes, size int, x, y []T) {
	grain := max(1, (1<<13)/max(1, size))
	cpu.ParallelFor(planes, grain, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			xp := x[pl*size : (pl+1)*size]
			switch k.kind {
			case poolAvg:
				// four partial sums: fewer dependent adds, better rounding
				var s0, s1, s2, s3 T
				i := 0
				for ; i+4 <= len(xp); i += 4 {
					s0 += xp[i]
					s1 += xp[i+1]
					s2 += xp[i+2]
					s3 += xp[i+3]
				}
				for ; i < len(xp); i++ {
					s0 += xp[i]
				}
				y[pl] = (s0 + s1 + s2 + s3) / T(size)
			case poolMax:
				m := xp[0]
				for _, v := range xp[1:] {
					if v > m || m != m {
						m = v
					}
				}
				y[pl] = m
			case poolLp:
				var s float64
				for _, v := range xp {
					s += math.Pow(math.Abs(float64(v)), k.p)
				}
				y[pl] = T(math.Pow(s, 1/k.p))
			}
		}
	})
}

func init() {
	ops.Register(ops.Def{Type: "MaxPool", Attrs: poolAttrs, Prepare: preparePool(poolMax, "MaxPool")})
	ops.Register(ops.Def{Type: "AveragePool", Attrs: poolAttrs, Prepare: preparePool(poolAvg, "AveragePool")})
	ops.Register(ops.Def{Type: "LpPool", Attrs: poolAttrs, Prepare: preparePool(poolLp, "LpPool")})
	ops.Register(ops.Def{Type: "GlobalAveragePool", Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return &globalPoolOp{name: "GlobalAveragePool", kind: poolAvg}, nil
	}})
	ops.Register(ops.Def{Type: "GlobalMaxPool", Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return &globalPoolOp{name: "GlobalMaxPool", kind: poolMax}, nil
	}})
	ops.Register(ops.Def{Type: "GlobalLpPool", Attrs: lpPoolAttrs, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseLpPoolAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		return &globalPoolOp{name: "GlobalLpPool", kind: poolLp, p: a.P}, nil
	}})
}
