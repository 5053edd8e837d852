package math

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// where is ONNX Where: out = cond ? x : y with three-way broadcasting. It
// moves elements by size, so it serves every type.
type where struct{}

func (where) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs("Where", in, 3, 3); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && dt != tensor.Bool {
		return nil, fmt.Errorf("%w: Where condition of type %v, want bool", ops.ErrBadInput, dt)
	}
	if err := sameDType("Where", in[1].Type.DType, in[2].Type.DType); err != nil {
		return nil, err
	}
	dt := in[1].Type.DType
	if dt == tensor.Undefined {
		dt = in[2].Type.DType
	}
	return inferBroadcast(dt, in...)
}

func (where) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors("Where", in, 3, 3); err != nil {
		return nil, err
	}
	c, x, y := in[0], in[1], in[2]
	if c.DType != tensor.Bool {
		return nil, fmt.Errorf("%w: Where condition of type %v, want bool", ops.ErrBadInput, c.DType)
	}
	if x.DType != y.DType {
		return nil, fmt.Errorf("%w: Where of %v and %v", ops.ErrBadInput, x.DType, y.DType)
	}
	out, err := broadcastOut(env, x.DType, c, x, y)
	if err != nil {
		return nil, err
	}
	p := newPlan(out.Shape, c.Shape, x.Shape, y.Shape)
	cond := elems[uint8](c)
	switch x.DType.Size() {
	case 0:
		whereLoop(p, cond, x.Strings, y.Strings, out.Strings)
	case 1:
		whereLoop(p, cond, elems[uint8](x), elems[uint8](y), elems[uint8](out))
	case 2:
		whereLoop(p, cond, elems[uint16](x), elems[uint16](y), elems[uint16](out))
	case 4:
		whereLoop(p, cond, elems[uint32](x), elems[uint32](y), elems[uint32](out))
	case 8:
		whereLoop(p, cond, elems[uint64](x), elems[uint64](y), elems[uint64](out))
	default:
		return nil, badType("Where", x.DType)
	}
	return env.One(out), nil
}

func whereLoop[T any](p *plan, c []uint8, x, y, dst []T) {
	sc, sx, sy := p.inner(0), p.inner(1), p.inner(2)
	p.parallel(func(o int, offs []int, cnt int) {
		d := dst[o : o+cnt]
		ic, ix, iy := offs[0], offs[1], offs[2]
		for i := range d {
			if c[ic+i*sc] != 0 {
				d[i] = x[ix+i*sx]
			} else {
				d[i] = y[iy+i*sy]
			}
		}
	})
}

// expandInto copies src broadcast to dst's shape (same type).
func expandInto(dst, src *tensor.Tensor) {
	p := newPlan(dst.Shape, src.Shape)
	switch src.DType.Size() {
	case 0:
		expandLoop(p, src.Strings, dst.Strings)
	case 1:
		expandLoop(p, elems[uint8](src), elems[uint8](dst))
	case 2:
		expandLoop(p, elems[uint16](src), elems[uint16](dst))
	case 4:
		expandLoop(p, elems[uint32](src), elems[uint32](dst))
	case 8:
		expandLoop(p, elems[uint64](src), elems[uint64](dst))
	}
}

func expandLoop[T any](p *plan, src, dst []T) {
	s := p.inner(0)
	p.parallel(func(o int, offs []int, cnt int) {
		d := dst[o : o+cnt]
		if s == 1 {
			copy(d, src[offs[0]:offs[0]+cnt])
			return
		}
		v := src[offs[0]]
		for i := range d {
			d[i] = v
		}
	})
}

func init() {
	ops.Register(ops.Def{Type: "Where", Traits: ops.HasFloat16, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return where{}, nil }})
}
