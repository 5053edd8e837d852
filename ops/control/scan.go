package control

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// scanOp is ONNX Scan. From opset 9 its inputs are N initial states and M
// scan inputs, each scanned along its own axis and direction; the body takes
// (states, one slice of each scan input) and returns (new states, K scan
// output elements), which are stacked along each output's axis. Opset 8's
// form has a leading optional sequence_lens input and a batch axis 0 on
// every input and output; the scan inputs are scanned along axis 1.
type scanOp struct {
	body    *ir.Graph
	opset8  bool
	n, m, k int // states, scan inputs, scan outputs
	inAxes  []int64
	inRev   []bool
	outAxes []int64
	outRev  []bool
}

func prepareScan(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseScanAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	body := a.Body
	k := &scanOp{body: body, opset8: a.Opset8, inAxes: a.InputAxes, outAxes: a.OutputAxes}
	inDirs, outDirs := a.InputDirections, a.OutputDirections
	k.m = int(a.NumScanInputs)
	nIn := len(n.Inputs)
	if k.opset8 {
		nIn-- // sequence_lens
	}
	if nIn < k.m {
		return nil, fmt.Errorf("%w: Scan has %d state and scan inputs, num_scan_inputs is %d", ops.ErrBadInput, nIn, k.m)
	}
	k.n = nIn - k.m
	if len(body.Inputs) != k.n+k.m {
		return nil, badAttr("body", "takes %d inputs, the node passes %d states and %d scan inputs", len(body.Inputs), k.n, k.m)
	}
	k.k = len(body.Outputs) - k.n
	if k.k < 0 {
		return nil, badAttr("body", "returns %d outputs, fewer than its %d states", len(body.Outputs), k.n)
	}
	if len(n.Outputs) > k.n+k.k {
		return nil, fmt.Errorf("%w: Scan has %d outputs, its body yields %d", ops.ErrBadInput, len(n.Outputs), k.n+k.k)
	}
	dirs := func(name string, d []int64, cnt int) ([]bool, error) {
		if d == nil {
			return make([]bool, cnt), nil
		}
		if len(d) != cnt {
			return nil, badAttr(name, "has %d entries, want %d", len(d), cnt)
		}
		out := make([]bool, cnt)
		for i, v := range d {
			if v != 0 && v != 1 {
				return nil, badAttr(name, "entry %d is %d, want 0 (forward) or 1 (reverse)", i, v)
			}
			out[i] = v == 1
		}
		return out, nil
	}
	dirName := "scan_input_directions"
	if k.opset8 {
		dirName = "directions"
	}
	if k.inRev, err = dirs(dirName, inDirs, k.m); err != nil {
		return nil, err
	}
	if k.outRev, err = dirs("scan_output_directions", outDirs, k.k); err != nil {
		return nil, err
	}
	axes := func(name string, ax []int64, cnt int) ([]int64, error) {
		if ax == nil {
			return make([]int64, cnt), nil
		}
		if len(ax) != cnt {
			return nil, badAttr(name, "has %d entries, want %d", len(ax), cnt)
		}
		return ax, nil
	}
	if k.inAxes, err = axes("scan_input_axes", k.inAxes, k.m); err != nil {
		return nil, err
	}
	if k.outAxes, err = axes("scan_output_axes", k.outAxes, k.k); err != nil {
		return nil, err
	}
	if k.opset8 {
		for i := range k.inAxes {
			k.inAxes[i] = 1
		}
	}
	return k, nil
}

// normAxis maps axis in [-rank, rank) to [0, rank).
func normAxis(what string, axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, badInput("Scan: %s axis %d is out of range for rank %d", what, axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// dropDim returns s without dim i (nil stays nil).
func dropDim(s ir.Shape, i int) ir.Shape {
	if s == nil {
		return nil
	}
	out := make(ir.Shape, 0, len(s)-1)
	out = append(out, s[:i]...)
	return append(out, s[i+1:]...)
}

// insertDim returns s with d inserted at axis (of the result's rank r+1,
// negative counting from the end); nil when s is nil.
func insertDim(s ir.Shape, axis int64, d ir.Dim) (ir.Shape, error) {
	if s == nil {
		return nil, nil
	}
	ax, err := normAxis("scan output", axis, len(s)+1)
	if err != nil {
		return nil, err
	}
	out := make(ir.Shape, 0, len(s)+1)
	out = append(out, s[:ax]...)
	out = append(out, d)
	return append(out, s[ax:]...), nil
}

func (k *scanOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	off := 0
	if k.opset8 {
		off = 1
		if len(in) > 0 && in[0] != nil {
			if dt := in[0].Type.DType; dt != tensor.Undefined && dt != tensor.Int32 && dt != tensor.Int64 {
				return nil, badInput("Scan: sequence_lens is %v, want int32", dt)
			}
		}
	}
	if len(in) != off+k.n+k.m {
		return nil, badInput("Scan: %d inputs, want %d", len(in), off+k.n+k.m)
	}
	for i, v := range in[off:] {
		if v == nil {
			return nil, errNotTensor("Scan", fmt.Sprintf("input %d", off+i))
		}
	}
	batch := ir.U()
	seq := ir.U()
	bin := make([]ir.Type, k.n+k.m)
	for i := 0; i < k.n; i++ {
		t := in[off+i].Type
		if k.opset8 {
			if t.Shape.Rank() == 0 {
				return nil, badInput("Scan: state %d is a scalar, opset 8 needs a batch axis", i)
			}
			if t.Shape != nil {
				batch = t.Shape[0]
				t.Shape = t.Shape[1:]
			}
		}
		bin[i] = carriedType(k.body.Inputs[i].Type, t)
	}
	for j := 0; j < k.m; j++ {
		t := in[off+k.n+j].Type
		if t.Shape != nil {
			ax, err := normAxis(fmt.Sprintf("scan input %d", j), k.inAxes[j], len(t.Shape))
			if err != nil {
				return nil, err
			}
			if !seq.Known() && seq.Sym == "" {
				seq = t.Shape[ax]
			}
			if k.opset8 {
				if !batch.Known() && batch.Sym == "" {
					batch = t.Shape[0]
				}
				t.Shape = t.Shape[2:]
			} else {
				t.Shape = dropDim(t.Shape, ax)
			}
		}
		bin[k.n+j] = t
	}
	bout, err := inferBody("Scan", k.body, bin)
	if err != nil {
		return nil, err
	}
	out := make([]ir.Type, k.n+k.k)
	for i := 0; i < k.n; i++ {
		st := in[off+i].Type
		if k.opset8 && st.Shape != nil {
			st.Shape = st.Shape[1:]
		}
		t, err := joinType(st, bout[i])
		if err != nil {
			return nil, fmt.Errorf("Scan state %d: %w", i, err)
		}
		if k.opset8 && t.Shape != nil {
			t.Shape = append(ir.Shape{batch}, t.Shape...)
		}
		out[i] = t
	}
	for j := 0; j < k.k; j++ {
		t := bout[k.n+j]
		var s ir.Shape
		if k.opset8 {
			if t.Shape != nil {
				s = append(ir.Shape{batch, seq}, t.Shape...)
			}
		} else if s, err = insertDim(t.Shape, k.outAxes[j], seq); err != nil {
			return nil, err
		}
		out[k.n+j] = ir.Type{DType: t.DType, Shape: s}
	}
	return out, nil
}

func (k *scanOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if env == nil || env.RunGraph == nil || env.Ctx == nil {
		return nil, badInput("Scan: no subgraph runner (the node must run inside an engine)")
	}
	off := 0
	if k.opset8 {
		off = 1
	}
	if len(in) != off+k.n+k.m {
		return nil, badInput("Scan: %d inputs, want %d", len(in), off+k.n+k.m)
	}
	for i, t := range in[off:] {
		if err := checkTensor("Scan", fmt.Sprintf("input %d", off+i), t); err != nil {
			return nil, err
		}
	}
	if k.opset8 {
		return k.run8(env, in[0], in[1:1+k.n], in[1+k.n:])
	}
	states := append([]*tensor.Tensor(nil), in[:k.n]...)
	scanIn := in[k.n:]
	axes := make([]int, k.m)
	seq := -1
	for j, x := range scanIn {
		ax, err := normAxis(fmt.Sprintf("scan input %d", j), k.inAxes[j], x.Rank())
		if err != nil {
			return nil, err
		}
		axes[j] = ax
		if seq >= 0 && x.Shape[ax] != seq {
			return nil, badInput("Scan: scan input %d has %d elements along axis %d, scan input 0 has %d", j, x.Shape[ax], ax, seq)
		}
		seq = x.Shape[ax]
	}
	scans := k.stackers()
	args := make([]*tensor.Tensor, k.n+k.m)
	for t := 0; t < seq; t++ {
		if err := env.Ctx.Err(); err != nil {
			return nil, err
		}
		copy(args, states)
		for j, x := range scanIn {
			p := t
			if k.inRev[j] {
				p = seq - 1 - t
			}
			s, err := sliceAxis(x, axes[j], p)
			if err != nil {
				return nil, badInput("Scan: scan input %d: %v", j, err)
			}
			args[k.n+j] = s
		}
		outs, err := k.step(env, args, scans)
		if err != nil {
			return nil, err
		}
		copy(states, outs[:k.n])
	}
	res := make([]*tensor.Tensor, k.n+k.k)
	copy(res, states)
	for j := range scans {
		t, err := scans[j].stack(k.outAxes[j], k.outRev[j], k.body.Outputs[k.n+j].Type)
		if err != nil {
			return nil, err
		}
		res[k.n+j] = t
	}
	return res, nil
}

func (k *scanOp) stackers() []stacker {
	s := make([]stacker, k.k)
	for j := range s {
		s[j] = stacker{op: "Scan", what: fmt.Sprintf("scan output %d", j)}
	}
	return s
}

// step runs the body once and adds its scan outputs to scans.
func (k *scanOp) step(env *ops.Env, args []*tensor.Tensor, scans []stacker) ([]*tensor.Tensor, error) {
	outs, err := env.RunGraph(k.body, args)
	if err != nil {
		return nil, err
	}
	if len(outs) != k.n+k.k {
		return nil, badInput("Scan: body returned %d outputs, want %d", len(outs), k.n+k.k)
	}
	for i, o := range outs {
		if err := checkTensor("Scan", fmt.Sprintf("body output %d", i), o); err != nil {
			return nil, err
		}
	}
	for j := range scans {
		if err := scans[j].add(outs[k.n+j]); err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// run8 is Scan-8: every state and scan input has a leading batch axis, the
// scan inputs are scanned along axis 1 for sequence_lens[b] steps (all of
// it when sequence_lens is absent), and scan outputs are [batch, seq, ...],
// zero beyond a batch entry's length.
func (k *scanOp) run8(env *ops.Env, lens *tensor.Tensor, states0, scanIn []*tensor.Tensor) ([]*tensor.Tensor, error) {
	batch, seq := -1, -1
	for i, s := range states0 {
		if s.Rank() < 1 {
			return nil, badInput("Scan: state %d is a scalar, opset 8 needs a batch axis", i)
		}
		if batch >= 0 && s.Shape[0] != batch {
			return nil, badInput("Scan: state %d has batch %d, want %d", i, s.Shape[0], batch)
		}
		batch = s.Shape[0]
	}
	for j, x := range scanIn {
		if x.Rank() < 2 {
			return nil, badInput("Scan: scan input %d has rank %d, opset 8 needs [batch, sequence, ...]", j, x.Rank())
		}
		if batch >= 0 && x.Shape[0] != batch {
			return nil, badInput("Scan: scan input %d has batch %d, want %d", j, x.Shape[0], batch)
		}
		if seq >= 0 && x.Shape[1] != seq {
			return nil, badInput("Scan: scan input %d has sequence length %d, want %d", j, x.Shape[1], seq)
		}
		batch, seq = x.Shape[0], x.Shape[1]
	}
	lengths := make([]int, batch)
	for b := range lengths {
		lengths[b] = seq
	}
	if lens != nil {
		if err := checkTensor("Scan", "sequence_lens", lens); err != nil {
			return nil, err
		}
		if !lens.DType.IsInt() || lens.Len() != batch {
			return nil, badInput("Scan: sequence_lens is %v%v, want %d integers", lens.DType, lens.Shape, batch)
		}
		for b := range lengths {
			l := lens.Int(b)
			if l < 0 || l > int64(seq) {
				return nil, badInput("Scan: sequence_lens[%d] = %d is outside [0, %d]", b, l, seq)
			}
			lengths[b] = int(l)
		}
	}
	finals := make([]stacker, k.n)
	for i := range finals {
		finals[i] = stacker{op: "Scan", what: fmt.Sprintf("final state %d", i)}
	}
	items := make([][][]*tensor.Tensor, k.k) // [output][batch][step]
	for j := range items {
		items[j] = make([][]*tensor.Tensor, batch)
	}
	args := make([]*tensor.Tensor, k.n+k.m)
	states := make([]*tensor.Tensor, k.n)
	for b := 0; b < batch; b++ {
		for i, s := range states0 {
			st, err := sliceAxis(s, 0, b)
			if err != nil {
				return nil, badInput("Scan: state %d: %v", i, err)
			}
			states[i] = st
		}
		for t := 0; t < lengths[b]; t++ {
			if err := env.Ctx.Err(); err != nil {
				return nil, err
			}
			copy(args, states)
			for j, x := range scanIn {
				p := t
				if k.inRev[j] {
					p = lengths[b] - 1 - t
				}
				xb, err := sliceAxis(x, 0, b)
				if err == nil {
					args[k.n+j], err = sliceAxis(xb, 0, p)
				}
				if err != nil {
					return nil, badInput("Scan: scan input %d: %v", j, err)
				}
			}
			outs, err := k.step(env, args, nil)
			if err != nil {
				return nil, err
			}
			copy(states, outs[:k.n])
			for j := range items {
				items[j][b] = append(items[j][b], outs[k.n+j])
			}
		}
		for i, s := range states {
			if err := finals[i].add(s); err != nil {
				return nil, err
			}
		}
	}
	res := make([]*tensor.Tensor, k.n+k.k)
	for i := range finals {
		elem := k.body.Outputs[i].Type
		t, err := finals[i].stack(0, false, elem)
		if err != nil {
			return nil, err
		}
		res[i] = t
	}
	for j := range items {
		t, err := padStack(items[j], seq, k.body.Outputs[k.n+j].Type, j)
		if err != nil {
			return nil, err
		}
		res[k.n+j] = t
	}
	return res, nil
}

// padStack builds Scan-8's output [batch, seq, elem...] from per-batch,
// per-step elements, zero where a batch entry ran fewer than seq steps.
func padStack(items [][]*tensor.Tensor, seq int, elem ir.Type, j int) (*tensor.Tensor, error) {
	var first *tensor.Tensor
	for _, bs := range items {
		for _, it := range bs {
			if first == nil {
				first = it
			} else if it.DType != first.DType || !sameDims(it.Shape, first.Shape) {
				return nil, badInput("Scan: scan output %d is %v%v in one step and %v%v in another", j, it.DType, it.Shape, first.DType, first.Shape)
			}
		}
	}
	dt := elem.DType
	var es []int
	if first != nil {
		dt, es = first.DType, first.Shape
	} else {
		if dt == tensor.Undefined {
			return nil, badInput("Scan: scan output %d: no step ran and its element type is not known", j)
		}
		for _, d := range elem.Shape {
			es = append(es, max(int(d.Val), 0))
		}
	}
	shape := append([]int{len(items), seq}, es...)
	out, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, badInput("Scan: scan output %d: %v", j, err)
	}
	inner := tensor.NumElements(es)
	for b, bs := range items {
		for t, it := range bs {
			copyElems(out, (b*seq+t)*inner, it, 0, inner)
		}
	}
	return out, nil
}

func init() {
	ops.Register(ops.Def{Type: "Scan", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseScanAttrs(n, opset) }, Traits: ops.HasFloat16, Prepare: prepareScan})
}
