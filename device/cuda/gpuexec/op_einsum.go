package gpuexec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// einsumKernels is Einsum of one to three operands: every equation form
// (batched matrix products, transposes, reductions, outer products,
// diagonals through repeated labels, "..." broadcasting, implicit
// outputs) as one sum of products per output element (kernels/
// op_einsum.cu): a thread per element, or a block per element for few
// outputs over long contractions. Its speed is that of a direct loop, not
// of cuBLASLt: the forms exported models use (attention's "bhid,bhjd->
// bhij") are small. More than three operands stay on the CPU.
var einsumKernels = []kernelDef{
	{op: "Einsum", check: einsumCheck, emit: (*compiler).einsum, unchecked: true},
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
	a := ops.AttrsOf(n)
	eq := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' {
			return -1
		}
		return r
	}, a.String("equation", ""))
	if err := a.Err(); err != nil {
		return einsumEq{}, err
	}
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

// einsumMeta lays out the kernel's meta array for the operands' dims and
// the output's, and returns it with the number of output and contracted
// index combinations.
func einsumMeta(e einsumEq, dims [][]int, yd []int) (meta []int64, total, K int64, err error) {
	ell := 0
	for i, t := range e.in {
		if t.ell >= 0 {
			ell = max(ell, len(dims[i])-len(t.labels))
		}
	}
	ext := map[int]int64{}
	var labels [][]int
	for i, t := range e.in {
		ls, err := t.expand(len(dims[i]), ell)
		if err != nil {
			return nil, 0, 0, err
		}
		labels = append(labels, ls)
		for j, l := range ls {
			d := int64(dims[i][j])
			switch old, ok := ext[l]; {
			case !ok || old == 1:
				ext[l] = d
			case d != 1 && d != old:
				return nil, 0, 0, fmt.Errorf("%w: Einsum label of sizes %d and %d", ErrGraph, old, d)
			}
		}
	}
	var out []int
	if e.out != nil {
		if out, err = e.out.expand(len(yd), ell); err != nil {
			return nil, 0, 0, err
		}
	} else { // the ellipsis, then the letters used once, in ASCII order
		count := map[int]int{}
		for _, ls := range labels {
			for _, l := range ls {
				count[l]++
			}
		}
		for j := range ell {
			out = append(out, einsumEllipsis+j)
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
		out = append(out, once...)
	}
	if len(out) != len(yd) {
		return nil, 0, 0, fmt.Errorf("%w: Einsum output of %d labels for rank %d", ErrGraph, len(out), len(yd))
	}
	total, K = 1, 1
	order := slices.Clone(out)
	for i, l := range out {
		e, ok := ext[l]
		if !ok || e != int64(yd[i]) || slices.Index(out, l) != i {
			return nil, 0, 0, fmt.Errorf("%w: Einsum output dim %d of %d", ErrGraph, i, yd[i])
		}
		total *= e
	}
	var contracted []int
	for l := range ext {
		if !slices.Contains(out, l) {
			contracted = append(contracted, l)
		}
	}
	slices.Sort(contracted)
	for _, l := range contracted {
		K *= ext[l]
	}
	order = append(order, contracted...)
	meta = []int64{int64(len(out)), int64(len(contracted)), int64(len(e.in))}
	for _, l := range order {
		meta = append(meta, ext[l])
	}
	for i, ls := range labels {
		st := make([]int64, len(ls))
		s := int64(1)
		for j := len(ls) - 1; j >= 0; j-- {
			st[j] = s
			s *= int64(dims[i][j])
		}
		for _, l := range order {
			var sum int64
			for j, lj := range ls {
				if lj == l && dims[i][j] != 1 {
					sum += st[j]
				}
			}
			meta = append(meta, sum)
		}
	}
	return meta, total, K, nil
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
	m := c.meta(meta)
	args := []arg{pArg(yr), optArg(refs[0]), optArg(refs[1]), optArg(refs[2]), pArg(m), lArg(total), lArg(K)}
	if K >= 256 && total < 4096 { // few outputs over long sums: a block each
		s.launches = []launch{rowsLaunch("einsum_rows_"+sfx, total, 256, 0, args...)}
		return nil
	}
	s.launches = []launch{elemLaunch("einsum_"+sfx, total, args...)}
	return nil
}
