package nn

import (
	"sort"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Labels of an einsum equation: letters are 0..51, the dims covered by an
// ellipsis are ellBase+j (j counted so that ellipses align on the right).
const ellBase = 52

// einsumOp is ONNX Einsum: a sum of products over labelled axes, with
// explicit or implicit output, ellipsis broadcasting and repeated labels
// (diagonals).
type einsumOp struct {
	eq      string
	inputs  []einTerm
	out     einTerm
	explict bool
}

// einTerm is one side of the equation: its letter labels, with the
// position of "..." (-1 when absent).
type einTerm struct {
	letters []int
	ell     int
}

func letterLabel(c byte) int {
	switch {
	case c >= 'a' && c <= 'z':
		return int(c - 'a')
	case c >= 'A' && c <= 'Z':
		return 26 + int(c-'A')
	}
	return -1
}

// parseTerm parses one term of an equation.
func parseTerm(s string) (einTerm, bool) {
	t := einTerm{ell: -1}
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			if t.ell >= 0 || !strings.HasPrefix(s[i:], "...") {
				return t, false
			}
			t.ell = len(t.letters)
			i += 2
			continue
		}
		l := letterLabel(s[i])
		if l < 0 {
			return t, false
		}
		t.letters = append(t.letters, l)
	}
	return t, true
}

func einsumAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseEinsumAttrs(n, opset) }

func prepareEinsum(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseEinsumAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	eq := a.Equation
	bad := func(format string, args ...any) error { // the equation's syntax, checked here
		f := ops.AttrsOf(n)
		f.Fail("equation", format, args...)
		return f.Err()
	}
	k := &einsumOp{eq: eq}
	s := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' {
			return -1
		}
		return r
	}, eq)
	lhs, rhs, explicit := strings.Cut(s, "->")
	k.explict = explicit
	for _, ts := range strings.Split(lhs, ",") {
		t, ok := parseTerm(ts)
		if !ok {
			return nil, bad("cannot parse term %q of %q", ts, eq)
		}
		k.inputs = append(k.inputs, t)
	}
	if explicit {
		t, ok := parseTerm(rhs)
		if !ok {
			return nil, bad("cannot parse output %q of %q", rhs, eq)
		}
		seen := map[int]bool{}
		for _, l := range t.letters {
			if seen[l] {
				return nil, bad("output label repeated in %q", eq)
			}
			seen[l] = true
		}
		k.out = t
	} else {
		count := map[int]int{}
		anyEll := false
		for _, t := range k.inputs {
			for _, l := range t.letters {
				count[l]++
			}
			anyEll = anyEll || t.ell >= 0
		}
		t := einTerm{ell: -1}
		if anyEll {
			t.ell = 0
		}
		for l, c := range count {
			if c == 1 {
				t.letters = append(t.letters, l)
			}
		}
		// ASCII order: upper case (26..51) before lower case (0..25)
		sort.Slice(t.letters, func(i, j int) bool {
			return asciiOf(t.letters[i]) < asciiOf(t.letters[j])
		})
		k.out = t
	}
	return k, nil
}

func asciiOf(l int) int {
	if l < 26 {
		return 'a' + l
	}
	return 'A' + l - 26
}

// labels expands a term over an operand of the given rank into one label
// per dim; ellRank is the largest ellipsis rank of all operands.
func (t einTerm) labels(rank, ellRank int) ([]int, bool) {
	if t.ell < 0 {
		if rank != len(t.letters) {
			return nil, false
		}
		return append([]int{}, t.letters...), true
	}
	e := rank - len(t.letters)
	if e < 0 {
		return nil, false
	}
	out := append([]int{}, t.letters[:t.ell]...)
	for j := 0; j < e; j++ {
		out = append(out, ellBase+ellRank-e+j)
	}
	return append(out, t.letters[t.ell:]...), true
}

// plan resolves the labels of every operand and of the output for the
// given input ranks.
func (k *einsumOp) plan(ranks []int) (ins [][]int, out []int, err error) {
	if len(ranks) != len(k.inputs) {
		return nil, nil, badInput("Einsum %q has %d terms, got %d inputs", k.eq, len(k.inputs), len(ranks))
	}
	ellRank := 0
	for i, t := range k.inputs {
		if t.ell >= 0 {
			ellRank = max(ellRank, ranks[i]-len(t.letters))
		}
	}
	for i, t := range k.inputs {
		l, ok := t.labels(ranks[i], ellRank)
		if !ok {
			return nil, nil, badInput("Einsum term %d of %q does not fit rank %d", i, k.eq, ranks[i])
		}
		ins = append(ins, l)
	}
	out, _ = k.out.labels(len(k.out.letters)+ellRank*b2i(k.out.ell >= 0), ellRank)
	present := map[int]bool{}
	for _, l := range ins {
		for _, x := range l {
			present[x] = true
		}
	}
	for _, x := range out {
		if !present[x] {
			return nil, nil, badInput("Einsum output label of %q is not in any input", k.eq)
		}
	}
	return ins, out, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (k *einsumOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) == 0 || in[0] == nil {
		return nil, badInput("Einsum has no inputs")
	}
	ranks := make([]int, len(in))
	for i, v := range in {
		if v == nil || v.Type.Shape == nil {
			return []ir.Type{{DType: in[0].Type.DType}}, nil
		}
		ranks[i] = len(v.Type.Shape)
	}
	ins, out, err := k.plan(ranks)
	if err != nil {
		return nil, err
	}
	dims := map[int]ir.Dim{}
	for i, ls := range ins {
		for j, l := range ls {
			d := in[i].Type.Shape[j]
			old, ok := dims[l]
			switch {
			case !ok || (old.Known() && old.Val == 1):
				dims[l] = d
			case d.Known() && d.Val == 1:
			case old.Known() && d.Known() && old.Val != d.Val:
				return nil, badInput("Einsum %q: label sizes %d and %d differ", k.eq, old.Val, d.Val)
			case !old.Known() && d.Known():
				dims[l] = d
			}
		}
	}
	s := make(ir.Shape, len(out))
	for i, l := range out {
		s[i] = dims[l]
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: s}}, nil
}

func (k *einsumOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) == 0 {
		return nil, badInput("Einsum has no inputs")
	}
	ranks := make([]int, len(in))
	for i, t := range in {
		if t == nil {
			return nil, badInput("Einsum input %d is missing", i)
		}
		if t.DType != in[0].DType {
			return nil, badInput("Einsum of %v and %v", in[0].DType, t.DType)
		}
		ranks[i] = t.Rank()
	}
	ins, out, err := k.plan(ranks)
	if err != nil {
		return nil, err
	}
	sizes := map[int]int{}
	for i, ls := range ins {
		for j, l := range ls {
			d := in[i].Shape[j]
			if old, ok := sizes[l]; ok && old != d && old != 1 && d != 1 {
				return nil, badInput("Einsum %q: label sizes %d and %d differ", k.eq, old, d)
			}
			if old, ok := sizes[l]; !ok || old == 1 {
				sizes[l] = d
			}
		}
	}
	outShape := make([]int, len(out))
	for i, l := range out {
		outShape[i] = sizes[l]
	}
	if _, err := checkedNumel(outShape); err != nil {
		return nil, err
	}
	dt := in[0].DType
	switch dt {
	case tensor.Float32:
		return einsumTyped[float32](dt, in, ins, out, outShape)
	case tensor.Float64:
		return einsumTyped[float64](dt, in, ins, out, outShape)
	case tensor.Int32:
		return einsumTyped[int32](dt, in, ins, out, outShape)
	case tensor.Int64:
		return einsumTyped[int64](dt, in, ins, out, outShape)
	case tensor.Uint32:
		return einsumTyped[uint32](dt, in, ins, out, outShape)
	case tensor.Uint64:
		return einsumTyped[uint64](dt, in, ins, out, outShape)
	case tensor.Float16, tensor.BFloat16:
		ops32 := make([]einOperand[float32], len(in))
		for i, t := range in {
			ops32[i] = einOperand[float32]{data: toFloat32(t), shape: t.Shape, labels: ins[i]}
		}
		r := einsum(ops32, out)
		return one(fromFloat32(dt, outShape, r.data))
	case tensor.Int8, tensor.Int16, tensor.Uint8, tensor.Uint16:
		o64 := make([]einOperand[int64], len(in))
		for i, t := range in {
			o64[i] = einOperand[int64]{data: t.Ints(), shape: t.Shape, labels: ins[i]}
		}
		r := einsum(o64, out)
		y, err := makeOut(dt, outShape)
		if err != nil {
			return nil, err
		}
		for i, v := range r.data {
			switch dt {
			case tensor.Int8:
				y.Int8s()[i] = int8(v)
			case tensor.Int16:
				y.Int16s()[i] = int16(v)
			case tensor.Uint8:
				y.Uint8s()[i] = uint8(v)
			case tensor.Uint16:
				y.Uint16s()[i] = uint16(v)
			}
		}
		return []*tensor.Tensor{y}, nil
	}
	return nil, badInput("Einsum of %v", dt)
}

func einsumTyped[T ops.Number](dt tensor.DType, in []*tensor.Tensor, ins [][]int, out, outShape []int) ([]*tensor.Tensor, error) {
	opsT := make([]einOperand[T], len(in))
	for i, t := range in {
		opsT[i] = einOperand[T]{data: elems[T](t)[:t.Len()], shape: t.Shape, labels: ins[i]}
	}
	r := einsum(opsT, out)
	y, err := makeOut(dt, outShape)
	if err != nil {
		return nil, err
	}
	copy(elems[T](y), r.data)
	return []*tensor.Tensor{y}, nil
}

// einOperand is a dense tensor with one label per dim.
type einOperand[T ops.Number] struct {
	data   []T
	shape  []int
	labels []int
}

func indexOf(ls []int, l int) int {
	for i, x := range ls {
		if x == l {
			return i
		}
	}
	return -1
}

// einsum evaluates the contraction of operands into the output labels.
func einsum[T ops.Number](operands []einOperand[T], out []int) einOperand[T] {
	for i := range operands {
		operands[i] = diagonal(operands[i])
	}
	// needed(l, skip) reports whether label l is used by the output or
	// by an operand other than those at positions in skip.
	needed := func(l int, from int, except int) bool {
		if indexOf(out, l) >= 0 {
			return true
		}
		for j := from; j < len(operands); j++ {
			if j != except && indexOf(operands[j].labels, l) >= 0 {
				return true
			}
		}
		return false
	}
	for i := range operands {
		var drop []int
		for d, l := range operands[i].labels {
			if !needed(l, 0, i) {
				drop = append(drop, d)
			}
		}
		operands[i] = sumAxes(operands[i], drop)
	}
	acc := operands[0]
	for i := 1; i < len(operands); i++ {
		var keep []int
		for _, l := range acc.labels {
			if needed(l, i+1, -1) {
				keep = append(keep, l)
			}
		}
		for _, l := range operands[i].labels {
			if needed(l, i+1, -1) && indexOf(keep, l) < 0 {
				keep = append(keep, l)
			}
		}
		acc = contract(acc, operands[i], keep)
	}
	var drop []int
	for d, l := range acc.labels {
		if indexOf(out, l) < 0 {
			drop = append(drop, d)
		}
	}
	acc = sumAxes(acc, drop)
	perm := make([]int, len(out))
	for i, l := range out {
		perm[i] = indexOf(acc.labels, l)
	}
	return transpose(acc, perm)
}

// diagonal removes repeated labels of x by taking the diagonal.
func diagonal[T ops.Number](x einOperand[T]) einOperand[T] {
	var labels, shape []int
	for d, l := range x.labels {
		if indexOf(labels, l) < 0 {
			labels = append(labels, l)
			shape = append(shape, x.shape[d])
		}
	}
	if len(labels) == len(x.labels) {
		return x
	}
	st := tensor.Strides(x.shape)
	// stride of each unique label: the sum of the strides of its dims
	ust := make([]int, len(labels))
	for d, l := range x.labels {
		ust[indexOf(labels, l)] += st[d]
	}
	n := tensor.NumElements(shape)
	data := make([]T, n)
	coord := make([]int, len(shape))
	off := 0
	for i := 0; i < n; i++ {
		data[i] = x.data[off]
		for d := len(shape) - 1; d >= 0; d-- {
			coord[d]++
			off += ust[d]
			if coord[d] < shape[d] {
				break
			}
			off -= ust[d] * shape[d]
			coord[d] = 0
		}
	}
	return einOperand[T]{data: data, shape: shape, labels: labels}
}

// sumAxes sums x over the given dims (ascending).
func sumAxes[T ops.Number](x einOperand[T], axes []int) einOperand[T] {
	if len(axes) == 0 {
		return x
	}
	var shape, labels []int
	red := make([]bool, len(x.shape))
	for _, a := range axes {
		red[a] = true
	}
	for d := range x.shape {
		if !red[d] {
			shape = append(shape, x.shape[d])
			labels = append(labels, x.labels[d])
		}
	}
	// output strides mapped onto the input dims (0 for summed dims)
	ost := tensor.Strides(shape)
	st := make([]int, len(x.shape))
	j := 0
	for d := range x.shape {
		if !red[d] {
			st[d] = ost[j]
			j++
		}
	}
	data := make([]T, tensor.NumElements(shape))
	coord := make([]int, len(x.shape))
	off := 0
	for _, v := range x.data {
		data[off] += v
		for d := len(coord) - 1; d >= 0; d-- {
			coord[d]++
			off += st[d]
			if coord[d] < x.shape[d] {
				break
			}
			off -= st[d] * x.shape[d]
			coord[d] = 0
		}
	}
	return einOperand[T]{data: data, shape: shape, labels: labels}
}

// transpose permutes the dims of x: dim i of the result is dim perm[i].
func transpose[T ops.Number](x einOperand[T], perm []int) einOperand[T] {
	identity := true
	for i, p := range perm {
		if p != i {
			identity = false
		}
	}
	if identity && len(perm) == len(x.shape) {
		return x
	}
	st := tensor.Strides(x.shape)
	shape := make([]int, len(perm))
	labels := make([]int, len(perm))
	pst := make([]int, len(perm))
	for i, p := range perm {
		shape[i], labels[i], pst[i] = x.shape[p], x.labels[p], st[p]
	}
	n := tensor.NumElements(shape)
	data := make([]T, n)
	coord := make([]int, len(shape))
	off := 0
	for i := 0; i < n; i++ {
		data[i] = x.data[off]
		for d := len(shape) - 1; d >= 0; d-- {
			coord[d]++
			off += pst[d]
			if coord[d] < shape[d] {
				break
			}
			off -= pst[d] * shape[d]
			coord[d] = 0
		}
	}
	return einOperand[T]{data: data, shape: shape, labels: labels}
}

// expand broadcasts dim d of x (of size 1) to size n.
func expand[T ops.Number](x einOperand[T], d, n int) einOperand[T] {
	shape := append([]int{}, x.shape...)
	shape[d] = n
	outer := tensor.NumElements(x.shape[:d])
	inner := tensor.NumElements(x.shape[d+1:])
	data := make([]T, outer*n*inner)
	for o := 0; o < outer; o++ {
		src := x.data[o*inner : (o+1)*inner]
		for j := 0; j < n; j++ {
			copy(data[(o*n+j)*inner:], src)
		}
	}
	return einOperand[T]{data: data, shape: shape, labels: x.labels}
}

// contract multiplies a and b, summing the labels they share that are not
// in keep, as a batched matrix product.
func contract[T ops.Number](a, b einOperand[T], keep []int) einOperand[T] {
	// broadcast size-1 dims against the other operand
	for d, l := range a.labels {
		if j := indexOf(b.labels, l); j >= 0 && a.shape[d] != b.shape[j] {
			if a.shape[d] == 1 {
				a = expand(a, d, b.shape[j])
			} else {
				b = expand(b, j, a.shape[d])
			}
		}
	}
	// sum labels of one side that are neither shared nor kept
	var da, db []int
	for d, l := range a.labels {
		if indexOf(b.labels, l) < 0 && indexOf(keep, l) < 0 {
			da = append(da, d)
		}
	}
	for d, l := range b.labels {
		if indexOf(a.labels, l) < 0 && indexOf(keep, l) < 0 {
			db = append(db, d)
		}
	}
	a, b = sumAxes(a, da), sumAxes(b, db)
	var batch, aOnly, bOnly, sum []int
	for _, l := range a.labels {
		switch {
		case indexOf(b.labels, l) < 0:
			aOnly = append(aOnly, l)
		case indexOf(keep, l) >= 0:
			batch = append(batch, l)
		default:
			sum = append(sum, l)
		}
	}
	for _, l := range b.labels {
		if indexOf(a.labels, l) < 0 {
			bOnly = append(bOnly, l)
		}
	}
	size := func(x einOperand[T], ls []int) int {
		n := 1
		for _, l := range ls {
			n *= x.shape[indexOf(x.labels, l)]
		}
		return n
	}
	perm := func(x einOperand[T], groups ...[]int) []int {
		var p []int
		for _, g := range groups {
			for _, l := range g {
				p = append(p, indexOf(x.labels, l))
			}
		}
		return p
	}
	at := transpose(a, perm(a, batch, aOnly, sum))
	bt := transpose(b, perm(b, batch, sum, bOnly))
	nb, m, k, n := size(a, batch), size(a, aOnly), size(a, sum), size(b, bOnly)
	data := make([]T, nb*m*n)
	p := &MatMulPlan{M: m, N: n, K: k, AOff: make([]int, nb), BOff: make([]int, nb)}
	for i := 0; i < nb; i++ {
		p.AOff[i], p.BOff[i] = i*m*k, i*k*n
	}
	RunMatMul(p, at.data, bt.data, data)
	var labels, shape []int
	for _, g := range [][]int{batch, aOnly} {
		for _, l := range g {
			labels = append(labels, l)
			shape = append(shape, a.shape[indexOf(a.labels, l)])
		}
	}
	for _, l := range bOnly {
		labels = append(labels, l)
		shape = append(shape, b.shape[indexOf(b.labels, l)])
	}
	return einOperand[T]{data: data, shape: shape, labels: labels}
}

func init() {
	ops.Register(ops.Def{Type: "Einsum", Attrs: einsumAttrs, Prepare: prepareEinsum})
}
