package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// qmatmulKernels are the ONNX 8-bit matrix products: MatMulInteger (int32
// out) and QLinearMatMul (requantized to int8 or uint8), int8 or uint8
// operands, zero points and scales per tensor, per row of A or per column
// of B, read on the device (kernels/op_qmatmul.cu, a thread per output,
// int32 accumulation). Batches as MatMul's: one B for all, equal batch
// dims, or one A for all.
var qmatmulKernels = []kernelDef{
	{op: "MatMulInteger", inputs: 2, check: qmatmulCheck, emit: (*compiler).qmatmul},
	{op: "QLinearMatMul", inputs: 7, check: qmatmulCheck, emit: (*compiler).qmatmul},
}

var eightBit = []tensor.DType{tensor.Int8, tensor.Uint8}

// qmatmulIn are the positions of A, B, their zero points and (QLinear)
// the scales and the output's zero point.
type qmatmulIn struct{ a, b, az, bz, as, bs, ys, yz int }

func qmatmulInputs(n *ir.Node) qmatmulIn {
	if n.OpType == "MatMulInteger" {
		return qmatmulIn{a: 0, b: 1, az: 2, bz: 3, as: -1, bs: -1, ys: -1, yz: -1}
	}
	return qmatmulIn{a: 0, as: 1, az: 2, b: 3, bs: 4, bz: 5, ys: 6, yz: 7}
}

func qmatmulCheck(n *ir.Node) error {
	p := qmatmulInputs(n)
	for _, i := range []int{p.a, p.b, p.yz} {
		if i < 0 {
			continue
		}
		if err := typeIn(n, i, eightBit...); err != nil {
			return err
		}
	}
	if err := sameTypeIn(n, p.az); err != nil {
		return err
	}
	if v := input(n, p.bz); v != nil && dtypeOf(v) != dtypeOf(n.Inputs[p.b]) {
		return fmt.Errorf("%w: %s b_zero_point is %v, B %v", ErrUnsupported, n.OpType, dtypeOf(v), dtypeOf(n.Inputs[p.b]))
	}
	if p.as >= 0 {
		return float32In(n, p.as, p.bs, p.ys)
	}
	return nil
}

func (c *compiler) qmatmul(s *step) error {
	n := s.node
	p := qmatmulInputs(n)
	ad, err := c.dims(n.Inputs[p.a])
	if err != nil {
		return err
	}
	bd, err := c.dims(n.Inputs[p.b])
	if err != nil {
		return err
	}
	if len(ad) == 0 || len(bd) == 0 {
		return fmt.Errorf("%w: %s of a scalar", ErrGraph, n.OpType)
	}
	a2, b2 := ad, bd
	if len(a2) == 1 {
		a2 = []int{1, a2[0]}
	}
	if len(b2) == 1 {
		b2 = []int{b2[0], 1}
	}
	M, K, N := a2[len(a2)-2], a2[len(a2)-1], b2[len(b2)-1]
	if b2[len(b2)-2] != K {
		return fmt.Errorf("%w: %s of %v and %v", ErrGraph, n.OpType, ad, bd)
	}
	mrow := M
	aBatch, bBatch := a2[:len(a2)-2], b2[:len(b2)-2]
	var batch int64
	var sAb, sBb int64
	switch {
	case prod(bBatch) == 1:
		M *= int(prod(aBatch)) // one B: A's batch folded into its rows
		batch = 1
	case sameDims(aBatch, bBatch):
		batch = prod(aBatch)
		sAb, sBb = int64(M)*int64(K), int64(K)*int64(N)
	case prod(aBatch) == 1:
		batch = prod(bBatch)
		sBb = int64(K) * int64(N)
	default:
		return fmt.Errorf("%w: %s broadcasting %v against %v", ErrUnsupported, n.OpType, ad, bd)
	}
	refAt := func(i int) (*ref, int, error) {
		if i < 0 || input(n, i) == nil {
			return nil, 0, nil
		}
		v := input(n, i)
		r, err := c.ref(v)
		if err != nil {
			return nil, 0, err
		}
		d, err := c.dims(v)
		if err != nil {
			return nil, 0, err
		}
		return &r, int(prod(d)), nil
	}
	var refs [8]*ref
	var counts [8]int
	for i, at := range []int{p.a, p.b, p.az, p.bz, p.as, p.bs, p.ys, p.yz} {
		if refs[i], counts[i], err = refAt(at); err != nil {
			return err
		}
	}
	for i, want := range []int{2: mrow, 3: N, 4: mrow, 5: N, 6: 1, 7: 1} {
		if i >= 2 && refs[i] != nil && counts[i] != 1 && counts[i] != want {
			return fmt.Errorf("%w: %s zero point or scale of %d elements (want 1 or %d)", ErrGraph, n.OpType, counts[i], want)
		}
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	ydt := 0 // int32
	if p.yz >= 0 {
		switch dtypeOf(n.Outputs[0]) {
		case tensor.Int8:
			ydt = 1
		case tensor.Uint8:
			ydt = 2
		default:
			return fmt.Errorf("%w: QLinearMatMul to %v", ErrGraph, dtypeOf(n.Outputs[0]))
		}
	}
	sfx := map[tensor.DType]string{tensor.Int8: "i8", tensor.Uint8: "u8"}
	k := "qmatmul_" + sfx[dtypeOf(n.Inputs[p.a])] + sfx[dtypeOf(n.Inputs[p.b])] + "_f32"
	if c.half {
		k = k[:len(k)-3] + "f16"
	}
	total := batch * int64(M) * int64(N)
	if total == 0 {
		return nil
	}
	s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(*refs[0]), pArg(*refs[1]), optArg(refs[2]), optArg(refs[3]),
		optArg(refs[4]), optArg(refs[5]), optArg(refs[6]), optArg(refs[7]), iArg(ydt), lArg(batch), iArg(M), iArg(N), iArg(K),
		lArg(sAb), lArg(sBb), iArg(mrow), iArg(counts[2]), iArg(counts[3]), iArg(counts[4]), iArg(counts[5]))}
	return nil
}
