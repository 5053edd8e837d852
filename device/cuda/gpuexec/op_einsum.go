package gpuexec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// einsumKernels is Einsum of one to three operands, every equation form
// (batched matrix products, transposes, reductions, outer products,
// diagonals through repeated labels, "..." broadcasting, implicit
// outputs). A float32 product of two operands whose labels each operand
// lays out as [batch, M, K] and [batch, K, N] (attention's "bhid,bhjd->
// bhij", "bij,bjk->bik", "ij,kj->ik", matrix-vector forms) runs as one
// strided batched product (gemm_f32/gemm_f16, op_gemm.go's tiled kernel);
// the rest as one sum of products per output element (kernels/
// op_einsum.cu): a thread per element, or a block per element for few
// outputs over long contractions. More than three operands stay on the
// CPU.
var einsumKernels = []kernelDef{
	{op: "Einsum", check: einsumCheck, emit: (*compiler).einsum},
}

// einsumTerm is one term of an equation: its letter labels (0..51) and
// where "..." is (-1: absent).
type einsumTerm struct {
	labels []int
	ell    int
}

// einsumEq is a parsed equation; out is nil for an implicit output.
type einsumEq struct {
	in  []einsumTerm
	out *einsumTerm
}

// einsumEllipsis is the first label of the dims an ellipsis covers.
const einsumEllipsis = 52

func parseEinsumTerm(s string) (einsumTerm, error) {
	t := einsumTerm{ell: -1}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			if t.ell >= 0 || !strings.HasPrefix(s[i:], "...") {
				return t, fmt.Errorf("%w: Einsum term %q", ErrGraph, s)
			}
			t.ell = len(t.labels)
			i += 2
		case c >= 'a' && c <= 'z':
			t.labels = append(t.labels, int(c-'a'))
		case c >= 'A' && c <= 'Z':
			t.labels = append(t.labels, 26+int(c-'A'))
		default:
			return t, fmt.Errorf("%w: Einsum term %q", ErrGraph, s)
		}
	}
	return t, nil
}

func parseEinsum(n *ir.Node) (einsumEq, error) {
	a, err := ops.ParseEinsumAttrs(n, ops.MaxOpset) // Einsum's attributes do not change with the opset
	if err != nil {
		return einsumEq{}, err
	}
	eq := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' {
			return -1
		}
		return r
	}, a.Equation)
	lhs, rhs, explicit := strings.Cut(eq, "->")
	var e einsumEq
	for _, s := range strings.Split(lhs, ",") {
		t, err := parseEinsumTerm(s)
		if err != nil {
			return e, err
		}
		e.in = append(e.in, t)
	}
	if explicit {
		t, err := parseEinsumTerm(rhs)
		if err != nil {
			return e, err
		}
		e.out = &t
	}
	return e, nil
}

func einsumCheck(n *ir.Node) error {
	e, err := parseEinsum(n)
	if err != nil {
		return err
	}
	if len(e.in) != len(n.Inputs) {
		return fmt.Errorf("%w: Einsum equation of %d terms for %d inputs", ErrGraph, len(e.in), len(n.Inputs))
	}
	if len(e.in) > 3 {
		return fmt.Errorf("%w: Einsum of %d operands (at most 3 have a CUDA implementation)", ErrUnsupported, len(e.in))
	}
	if err := typeIn(n, 0, tensor.Float32, tensor.Float64, tensor.Int32, tensor.Int64); err != nil {
		return err
	}
	return sameTypeIn(n, 1, 2)
}

// expand gives a term's label per dim of an operand of rank r, an
// ellipsis covering ell dims (labels einsumEllipsis+j, aligned on the
// right across operands).
func (t einsumTerm) expand(r, ell int) ([]int, error) {
	if t.ell < 0 {
		if r != len(t.labels) {
			return nil, fmt.Errorf("%w: Einsum term of %d labels for rank %d", ErrGraph, len(t.labels), r)
		}
		return t.labels, nil
	}
	k := r - len(t.labels)
	if k < 0 || k > ell {
		return nil, fmt.Errorf("%w: Einsum term of %d labels and \"...\" for rank %d", ErrGraph, len(t.labels), r)
	}
	out := slices.Clone(t.labels[:t.ell])
	for j := range k {
		out = append(out, einsumEllipsis+ell-k+j)
	}
	return append(out, t.labels[t.ell:]...), nil
}

// einsumPlan is an equation bound to its operands' dims: each operand's
// label per dim, the output's labels and every label's extent.
type einsumPlan struct {
	labels [][]int
	out    []int
	ext    map[int]int64
	dims   [][]int
}

// bind expands the equation for the operands' dims and the output's.
func (e einsumEq) bind(dims [][]int, yd []int) (*einsumPlan, error) {
	ell := 0
	for i, t := range e.in {
		if t.ell >= 0 {
			ell = max(ell, len(dims[i])-len(t.labels))
		}
	}
	p := &einsumPlan{ext: map[int]int64{}, dims: dims}
	for i, t := range e.in {
		ls, err := t.expand(len(dims[i]), ell)
		if err != nil {
			return nil, err
		}
		p.labels = append(p.labels, ls)
		for j, l := range ls {
			d := int64(dims[i][j])
			switch old, ok := p.ext[l]; {
			case !ok || old == 1:
				p.ext[l] = d
			case d != 1 && d != old:
				return nil, fmt.Errorf("%w: Einsum label of sizes %d and %d", ErrGraph, old, d)
			}
		}
	}
	if e.out != nil {
		out, err := e.out.expand(len(yd), ell)
		if err != nil {
			return nil, err
		}
		p.out = out
	} else { // the ellipsis, then the letters used once, in ASCII order
		count := map[int]int{}
		for _, ls := range p.labels {
			for _, l := range ls {
				count[l]++
			}
		}
		for j := range ell {
			p.out = append(p.out, einsumEllipsis+j)
		}
		var once []int
		for l, k := range count {
			if k == 1 && l < einsumEllipsis {
				once = append(once, l)
			}
		}
		ascii := func(l int) int {
			if l < 26 {
				return 'a' + l
			}
			return 'A' + l - 26
		}
		slices.SortFunc(once, func(a, b int) int { return ascii(a) - ascii(b) })
		p.out = append(p.out, once...)
	}
	if len(p.out) != len(yd) {
		return nil, fmt.Errorf("%w: Einsum output of %d labels for rank %d", ErrGraph, len(p.out), len(yd))
	}
	for i, l := range p.out {
		e, ok := p.ext[l]
		if !ok || e != int64(yd[i]) || slices.Index(p.out, l) != i {
			return nil, fmt.Errorf("%w: Einsum output dim %d of %d", ErrGraph, i, yd[i])
		}
	}
	return p, nil
}

// strides is operand i's stride for label l: the sum over the dims it
// labels (a diagonal when it repeats), 0 where it has none or broadcasts.
func (p *einsumPlan) strides(i, l int) int64 {
	ls := p.labels[i]
	var sum int64
	s := int64(1)
	for j := len(ls) - 1; j >= 0; j-- {
		if ls[j] == l && p.dims[i][j] != 1 {
			sum += s
		}
		s *= int64(p.dims[i][j])
	}
	return sum
}

// einsumMeta lays out the kernel's meta array for the operands' dims and
// the output's, and returns it with the number of output and contracted
// index combinations.
func einsumMeta(e einsumEq, dims [][]int, yd []int) (meta []int64, total, K int64, err error) {
	p, err := e.bind(dims, yd)
	if err != nil {
		return nil, 0, 0, err
	}
	total, K = 1, 1
	for _, l := range p.out {
		total *= p.ext[l]
	}
	var contracted []int
	for l := range p.ext {
		if !slices.Contains(p.out, l) {
			contracted = append(contracted, l)
		}
	}
	slices.Sort(contracted)
	for _, l := range contracted {
		K *= p.ext[l]
	}
	order := append(slices.Clone(p.out), contracted...)
	meta = []int64{int64(len(p.out)), int64(len(contracted)), int64(len(e.in))}
	for _, l := range order {
		meta = append(meta, p.ext[l])
	}
	for i := range p.labels {
		for _, l := range order {
			meta = append(meta, p.strides(i, l))
		}
	}
	return meta, total, K, nil
}

// einsumGEMM is an Einsum of two operands as one strided batched product
// (gemm_f32/gemm_f16): Y[batch, M, N] = A[batch, M, K] B[batch, K, N],
// each of batch, M, N and K a run of labels that every operand holding
// them strides through as one dim.
type einsumGEMM struct {
	swap           bool // the output's rows come from the second operand
	batch, m, n, k int
	sAb, sAm, sAk  int64
	sBb, sBk, sBn  int64
}

// asGEMM finds the product form of a two-operand equation: every label in
// the output and both operands (batch), in the output and one operand (M
// or N), or in both operands only (K); the output ordered batch, M, N; no
// diagonals or broadcasting. ok is false for other forms (the direct
// kernel runs them).
func (p *einsumPlan) asGEMM() (g einsumGEMM, ok bool) {
	if len(p.labels) != 2 {
		return g, false
	}
	in := func(i, l int) bool { return slices.Contains(p.labels[i], l) }
	for i, ls := range p.labels {
		for j, l := range ls {
			if slices.Index(ls, l) != j || int64(p.dims[i][j]) != p.ext[l] {
				return g, false // a diagonal, or a broadcast dim
			}
			if !in(1-i, l) && !slices.Contains(p.out, l) {
				return g, false // summed over in one operand alone
			}
		}
	}
	// the output: batch labels, then the rows' operand's, then the other's
	var batch, rows, cols []int
	first := -1
	for _, l := range p.out {
		a, b := in(0, l), in(1, l)
		switch {
		case a && b:
			if len(rows)+len(cols) > 0 {
				return g, false
			}
			batch = append(batch, l)
		case a || b:
			o := 0
			if b {
				o = 1
			}
			if first < 0 {
				first = o
			}
			if o == first {
				if len(cols) > 0 {
					return g, false
				}
				rows = append(rows, l)
			} else {
				cols = append(cols, l)
			}
		default:
			return g, false
		}
	}
	if first < 0 {
		first = 0
	}
	g.swap = first == 1
	A, B := first, 1-first
	var ks []int
	for _, l := range p.labels[A] {
		if in(B, l) && !slices.Contains(p.out, l) {
			ks = append(ks, l)
		}
	}
	// run merges a run of labels in operand i into one dim: its extent
	// and stride, when the operand lays them out as one.
	run := func(i int, ls []int) (ext, stride int64, ok bool) {
		ext, stride = 1, 0
		for j := len(ls) - 1; j >= 0; j-- {
			st := p.strides(i, ls[j])
			if j == len(ls)-1 {
				stride = st
			} else if st != stride*ext {
				return 0, 0, false
			}
			ext *= p.ext[ls[j]]
		}
		return ext, stride, true
	}
	bA, sAb, ok1 := run(A, batch)
	_, sBb, ok2 := run(B, batch)
	m, sAm, ok3 := run(A, rows)
	n, sBn, ok4 := run(B, cols)
	// K's labels in A's order; B must hold them in the same order
	var ksB []int
	for _, l := range p.labels[B] {
		if slices.Contains(ks, l) {
			ksB = append(ksB, l)
		}
	}
	k, sAk, ok5 := run(A, ks)
	_, sBk, ok6 := run(B, ks)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !slices.Equal(ks, ksB) {
		return g, false
	}
	if gemmFits(int(bA), int(m), int(n)) != nil || m > 1<<30 || n > 1<<30 || k > 1<<30 {
		return g, false
	}
	return einsumGEMM{swap: g.swap, batch: int(bA), m: int(m), n: int(n), k: int(k), sAb: sAb, sAm: sAm, sAk: sAk, sBb: sBb, sBk: sBk, sBn: sBn}, true
}

func (c *compiler) einsum(s *step) error {
	n := s.node
	e, err := parseEinsum(n)
	if err != nil {
		return err
	}
	var dims [][]int
	var refs [3]*ref
	for i, v := range n.Inputs {
		d, err := c.dims(v)
		if err != nil {
			return err
		}
		r, err := c.ref(v)
		if err != nil {
			return err
		}
		dims, refs[i] = append(dims, d), &r
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	meta, total, K, err := einsumMeta(e, dims, yd)
	if err != nil {
		return err
	}
	sfx, err := c.suffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	if total == 0 {
		return nil
	}
	if dtypeOf(n.Inputs[0]) == tensor.Float32 && len(dims) == 2 {
		p, err := e.bind(dims, yd)
		if err != nil {
			return err
		}
		if g, ok := p.asGEMM(); ok { // a product: the tiled kernel
			a, b := *refs[0], *refs[1]
			if g.swap {
				a, b = b, a
			}
			s.launches = []launch{gemmLaunch(c.fk("gemm"), yr, a, b, nil, g.batch, g.m, g.n, g.k, g.sAb, g.sAm, g.sAk, g.sBb, g.sBk, g.sBn, 0, 0, 1, 0, activation{})}
			return nil
		}
	}
	m := c.meta(meta)
	args := []arg{pArg(yr), optArg(refs[0]), optArg(refs[1]), optArg(refs[2]), pArg(m), lArg(total), lArg(K)}
	if K >= 256 && total < 4096 { // few outputs over long sums: a block each
		s.launches = []launch{rowsLaunch("einsum_rows_"+sfx, total, 256, 0, args...)}
		return nil
	}
	s.launches = []launch{elemLaunch("einsum_"+sfx, total, args...)}
	return nil
}
