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

// poolOp is ONNX MaxPool, AveragePool and LpPool over N-D windows. Its Run
// is the reference: every window reduced by a plain loop, planes over the
// cores. The CPU registry (device/cpu/kernels) runs the common 1-D and 2-D
// MaxPool and AveragePool faster, with the windows of PoolWindows.
type poolOp struct {
	name         string
	kind         poolKind
	win          window
	includePad   bool
	storageOrder int
	p            float64
	indices      bool
	shapes       poolGeomCache // the windows and output shape of the last shape
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

// geometry checks input shape x against the window and returns the
// resolved window and the output shape (cached for the last shape).
func (k *poolOp) geometry(x []int) (*PoolGeometry, []int, error) {
	if len(x) != len(k.win.kernel)+2 {
		return nil, nil, badInput("%s input %v for kernel_shape %v", k.name, x, k.win.kernel)
	}
	if len(k.win.kernel) > 3 {
		return nil, nil, badInput("%s over %d spatial dims: at most 3 are supported", k.name, len(k.win.kernel))
	}
	if e := k.shapes.get(x); e != nil {
		return e.g, e.out, nil
	}
	rg, err := k.win.resolve(x[2:], nil)
	if err != nil {
		return nil, nil, err
	}
	g := poolGeometry(rg)
	out := append([]int{x[0], x[1]}, g.Out...)
	k.shapes.put(x, g, out)
	return g, out, nil
}

func (k *poolOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs(k.name, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	g, outShape, err := k.geometry(x.Shape)
	if err != nil {
		return nil, err
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
		pool(k, g, planes, x.Float32s(), y.Float32s(), idx)
	case tensor.Float64:
		pool(k, g, planes, x.Float64s(), y.Float64s(), idx)
	case tensor.Float16, tensor.BFloat16:
		yf := make([]float32, y.Len())
		pool(k, g, planes, toFloat32(x), yf, idx)
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
// argmax indices for MaxPool when idx is not nil): the reference loop.
func pool[T ops.Number](k *poolOp, g *PoolGeometry, planes int, x, y []T, idx []int64) {
	sp, in, dil := g.Spans()
	inSize := in[0] * in[1] * in[2]
	outSize := len(sp[0]) * len(sp[1]) * len(sp[2])
	r := g.Rank()
	// column-major strides for storage_order 1
	var cm [3]int
	acc := 1
	for d := 3 - r; d < 3; d++ {
		cm[d] = acc
		acc *= in[d]
	}
	low := lowest[T]()
	grain := max(1, (1<<15)/max(1, outSize*len(g.Kernel)))
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
							for j0 := s0.Lo; j0 < s0.Hi; j0++ {
								r0 := (s0.Start + j0*dil[0]) * in[1]
								for j1 := s1.Lo; j1 < s1.Hi; j1++ {
									r1 := (r0 + s1.Start + j1*dil[1]) * in[2]
									for j2 := s2.Lo; j2 < s2.Hi; j2++ {
										p := r1 + s2.Start + j2*dil[2]
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
							for j0 := s0.Lo; j0 < s0.Hi; j0++ {
								r0 := (s0.Start + j0*dil[0]) * in[1]
								for j1 := s1.Lo; j1 < s1.Hi; j1++ {
									r1 := (r0 + s1.Start + j1*dil[1]) * in[2]
									for j2 := s2.Lo; j2 < s2.Hi; j2++ {
										sum += xp[r1+s2.Start+j2*dil[2]]
									}
								}
							}
							n := (s0.Hi - s0.Lo) * (s1.Hi - s1.Lo) * (s2.Hi - s2.Lo)
							if k.includePad {
								n = s0.Count * s1.Count * s2.Count
							}
							if n > 0 {
								yp[o] = sum / T(n)
							} else {
								yp[o] = 0 // the output may not be zeroed (ops.NewOutput)
							}
						case poolLp:
							var sum float64
							for j0 := s0.Lo; j0 < s0.Hi; j0++ {
								r0 := (s0.Start + j0*dil[0]) * in[1]
								for j1 := s1.Lo; j1 < s1.Hi; j1++ {
									r1 := (r0 + s1.Start + j1*dil[1]) * in[2]
									for j2 := s2.Lo; j2 < s2.Hi; j2++ {
										v := math.Abs(float64(xp[r1+s2.Start+j2*dil[2]]))
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
// one window covering all spatial dims. Its Run is the reference; the CPU
// registry (device/cpu/kernels) runs float32 GlobalAveragePool and
// GlobalMaxPool with vector kernels.
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
