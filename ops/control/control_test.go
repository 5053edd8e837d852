package control

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// ifGraph: y = If(cond) then x else concat(x, x); with constCond the
// condition is an initializer.
func ifGraph(constCond *tensor.Tensor) *ir.Graph {
	b := ir.NewBuilder("if", 17)
	g := b.Graph()
	x := b.Input("x", tensor.Float32, ir.S("n"))
	var cond *ir.Value
	if constCond != nil {
		cond = b.Const("cond", constCond)
	} else {
		cond = b.Input("cond", tensor.Bool)
	}
	tb := subgraph("then", g)
	tb.Output(tb.Op("Identity", []*ir.Value{tb.Graph().Capture(x)}), "then_out")
	eb := subgraph("else", g)
	ex := eb.Graph().Capture(x)
	eb.Output(eb.Op("ctlConcat", []*ir.Value{ex, ex}), "else_out")
	y := b.Op("If", []*ir.Value{cond}, ir.GraphAttr("then_branch", tb.Graph()), ir.GraphAttr("else_branch", eb.Graph()))
	b.Output(y, "y")
	return g
}

func TestIf(t *testing.T) {
	x := f32([]float32{1, 2}, 2)
	for _, c := range []bool{true, false} {
		g := ifGraph(nil)
		out := runGraph(t, g, map[string]*tensor.Tensor{"x": x, "cond": boolScalar(c)})
		want := x
		if !c {
			want = f32([]float32{1, 2, 1, 2}, 4)
		}
		equal(t, "If", out["y"], want)
		// the branches give [n] and [?]: only the rank is certain
		if s := g.Outputs[0].Type.Shape; s.String() != "[?]" {
			t.Errorf("If output shape %v, want [?]", s)
		}
	}
}

func TestIfConstCond(t *testing.T) {
	for _, c := range []bool{true, false} {
		g := ifGraph(boolScalar(c))
		out := runGraph(t, g, map[string]*tensor.Tensor{"x": f32([]float32{3}, 1)})
		wantShape := "[n]"
		want := f32([]float32{3}, 1)
		if !c {
			wantShape = "[?]"
			want = f32([]float32{3, 3}, 2)
		}
		equal(t, "If", out["y"], want)
		if s := g.Outputs[0].Type.Shape.String(); s != wantShape {
			t.Errorf("cond %v: If output shape %s, want %s", c, s, wantShape)
		}
	}
}

func TestIfBadCond(t *testing.T) {
	b := ir.NewBuilder("if", 17)
	g := b.Graph()
	c := b.Input("c", tensor.Float32)
	tb := subgraph("then", g)
	tb.Output(tb.Const("a", f32([]float32{1}, 1)), "")
	eb := subgraph("else", g)
	eb.Output(eb.Const("b", f32([]float32{2}, 1)), "")
	b.Output(b.Op("If", []*ir.Value{c}, ir.GraphAttr("then_branch", tb.Graph()), ir.GraphAttr("else_branch", eb.Graph())), "y")
	if _, err := engine.New(g); !errors.Is(err, ops.ErrBadInput) {
		t.Fatalf("float cond: err = %v, want ErrBadInput", err)
	}
	// a branch without outputs for the node
	n := &ir.Node{OpType: "If", Inputs: []*ir.Value{c}, Outputs: []*ir.Value{{Name: "o1"}, {Name: "o2"}},
		Attrs: map[string]*ir.Attr{"then_branch": ir.GraphAttr("then_branch", tb.Graph()), "else_branch": ir.GraphAttr("else_branch", eb.Graph())}}
	if _, err := ops.Prepare(n, 17); !errors.Is(err, ops.ErrBadAttr) {
		t.Fatalf("2 outputs from 1-output branches: err = %v, want ErrBadAttr", err)
	}
	delete(n.Attrs, "else_branch")
	if _, err := ops.Prepare(n, 17); !errors.Is(err, ops.ErrBadAttr) {
		t.Fatalf("no else_branch: err = %v, want ErrBadAttr", err)
	}
}

// loopGraph: s = s0; for it := 0; it < M && cond; it++ { s += x; cond = it < limit;
// scan it, s }. hasM/hasCond leave those inputs out.
func loopGraph(hasM, hasCond bool) *ir.Graph {
	b := ir.NewBuilder("loop", 17)
	g := b.Graph()
	var m, cond *ir.Value
	if hasM {
		m = b.Input("M", tensor.Int64)
	}
	if hasCond {
		cond = b.Input("cond", tensor.Bool)
	}
	limit := b.Input("limit", tensor.Int64)
	x := b.Input("x", tensor.Float32, ir.D(2))
	s0 := b.Input("s0", tensor.Float32, ir.D(2))

	bb := subgraph("body", g)
	it := bb.Input("it", tensor.Int64)
	bb.Input("c", tensor.Bool)
	s := bb.Input("s", tensor.Float32, ir.D(2))
	s2 := bb.Op("ctlAdd", []*ir.Value{s, bb.Graph().Capture(x)})
	bb.Output(bb.Op("ctlLess", []*ir.Value{it, bb.Graph().Capture(limit)}), "c_out")
	bb.Output(s2, "s_out")
	bb.Output(bb.Op("Identity", []*ir.Value{it}), "it_scan")
	bb.Output(bb.Op("Identity", []*ir.Value{s2}), "s_scan")

	outs := b.OpN("Loop", 3, []*ir.Value{m, cond, s0}, ir.GraphAttr("body", bb.Graph()))
	b.Output(outs[0], "s_final")
	b.Output(outs[1], "its")
	b.Output(outs[2], "ss")
	return g
}

func TestLoop(t *testing.T) {
	x := f32([]float32{1, 10}, 2)
	s0 := f32([]float32{5, 6}, 2)
	cases := []struct {
		name          string
		hasM, hasCond bool
		m, limit      int64
		cond          bool
		count         int
	}{
		{"for", true, true, 5, 100, true, 5},
		{"for without cond", true, false, 4, 100, true, 4},
		{"break", true, true, 5, 2, true, 3},
		{"while", false, true, 0, 3, true, 4},
		{"neither", false, false, 0, 1, true, 2},
		{"zero trips", true, true, 0, 100, true, 0},
		{"negative M", true, true, -3, 100, true, 0},
		{"cond false", true, true, 5, 100, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := loopGraph(c.hasM, c.hasCond)
			in := map[string]*tensor.Tensor{"limit": i64Scalar(c.limit), "x": x, "s0": s0}
			if c.hasM {
				in["M"] = i64Scalar(c.m)
			}
			if c.hasCond {
				in["cond"] = boolScalar(c.cond)
			}
			out := runGraph(t, g, in)
			n := float32(c.count)
			equal(t, "s_final", out["s_final"], f32([]float32{5 + n, 6 + 10*n}, 2))
			its := make([]int64, c.count)
			ss := make([]float32, 0, 2*c.count)
			for k := range c.count {
				its[k] = int64(k)
				ss = append(ss, 5+float32(k+1), 6+10*float32(k+1))
			}
			equal(t, "its", out["its"], i64(its, c.count))
			equal(t, "ss", out["ss"], f32(ss, c.count, 2))
			for i, want := range []string{"float32[2]", "int64[?]", "float32[?,2]"} {
				if got := g.Outputs[i].Type.String(); got != want {
					t.Errorf("output %d type %s, want %s", i, got, want)
				}
			}
		})
	}
}

// TestLoopGrowing carries a value whose shape changes every iteration:
// inference must not pin it to the initial shape.
func TestLoopGrowing(t *testing.T) {
	for _, withScan := range []bool{false, true} {
		b := ir.NewBuilder("grow", 17)
		g := b.Graph()
		m := b.Const("M", i64Scalar(3))
		x := b.Input("x", tensor.Float32, ir.D(1))
		bb := subgraph("body", g)
		bb.Input("it", tensor.Int64)
		c := bb.Input("c", tensor.Bool)
		v := bb.Input("v", tensor.Float32, ir.U())
		v2 := bb.Op("ctlConcat", []*ir.Value{v, bb.Graph().Capture(x)})
		bb.Output(bb.Op("Identity", []*ir.Value{c}), "")
		bb.Output(v2, "v_out")
		nOut := 1
		if withScan {
			bb.Output(bb.Op("Identity", []*ir.Value{v2}), "scan")
			nOut = 2
		}
		outs := b.OpN("Loop", nOut, []*ir.Value{m, nil, x}, ir.GraphAttr("body", bb.Graph()))
		for _, o := range outs {
			b.Output(o, "")
		}
		e, err := engine.New(g)
		if err != nil {
			t.Fatal(err)
		}
		if s := g.Outputs[0].Type.Shape.String(); s != "[?]" {
			t.Errorf("final shape inferred %s, want [?]", s)
		}
		out, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": f32([]float32{7}, 1)})
		if withScan {
			if !errors.Is(err, ops.ErrBadInput) || !strings.Contains(err.Error(), "iteration") {
				t.Fatalf("scan outputs of different shapes: err = %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "v", out[g.Outputs[0].Name], f32([]float32{7, 7, 7, 7}, 4))
	}
}

// TestLoopCancel runs a loop with neither M nor cond, whose body always
// continues: only the context stops it.
func TestLoopCancel(t *testing.T) {
	b := ir.NewBuilder("forever", 17)
	g := b.Graph()
	x := b.Input("x", tensor.Float32, ir.D(1))
	bb := subgraph("body", g)
	bb.Input("it", tensor.Int64)
	c := bb.Input("c", tensor.Bool)
	v := bb.Input("v", tensor.Float32, ir.D(1))
	bb.Output(bb.Op("Identity", []*ir.Value{c}), "")
	bb.Output(bb.Op("ctlAdd", []*ir.Value{v, v}), "")
	b.Output(b.Op("Loop", []*ir.Value{nil, nil, x}, ir.GraphAttr("body", bb.Graph())), "y")
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = e.Run(ctx, map[string]*tensor.Tensor{"x": f32([]float32{1}, 1)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
}

func TestLoopBad(t *testing.T) {
	bodyWith := func(nIn, nOut int) *ir.Graph {
		bb := ir.NewBuilder("body", 17)
		var last *ir.Value
		for i := range nIn {
			last = bb.Input("in"+string(rune('a'+i)), tensor.Bool)
		}
		for range nOut {
			bb.Output(bb.Op("Identity", []*ir.Value{last}), "")
		}
		return bb.Graph()
	}
	node := func(body *ir.Graph, in []*ir.Value, nOut int) *ir.Node {
		n := &ir.Node{OpType: "Loop", Inputs: in, Attrs: map[string]*ir.Attr{"body": ir.GraphAttr("body", body)}}
		for range nOut {
			n.Outputs = append(n.Outputs, &ir.Value{})
		}
		return n
	}
	v := &ir.Value{Name: "v", Type: ir.Type{DType: tensor.Bool, Shape: ir.Scalar()}}
	for _, c := range []struct {
		name string
		n    *ir.Node
		want error
	}{
		{"no body", &ir.Node{OpType: "Loop", Inputs: []*ir.Value{nil, nil}, Attrs: map[string]*ir.Attr{}}, ops.ErrBadAttr},
		{"body of 1 input", node(bodyWith(1, 1), []*ir.Value{nil, nil}, 0), ops.ErrBadAttr},
		{"too few body outputs", node(bodyWith(3, 1), []*ir.Value{nil, nil, v}, 1), ops.ErrBadAttr},
		{"input count", node(bodyWith(3, 2), []*ir.Value{nil, nil}, 1), ops.ErrBadInput},
		{"output count", node(bodyWith(2, 1), []*ir.Value{nil, nil}, 1), ops.ErrBadInput},
	} {
		if _, err := ops.Prepare(c.n, 17); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// a missing loop-carried value (what an empty optional would be)
	k, err := ops.Prepare(node(bodyWith(3, 2), []*ir.Value{nil, nil, nil}, 1), 17)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Infer([]*ir.Value{nil, nil, nil}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("Infer of a missing carried value: err = %v", err)
	}
	env := &ops.Env{Ctx: context.Background(), RunGraph: func(*ir.Graph, []*tensor.Tensor) ([]*tensor.Tensor, error) {
		return []*tensor.Tensor{boolScalar(true)}, nil // too few outputs
	}}
	if _, err := k.Run(env, []*tensor.Tensor{nil, nil, nil}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("Run with a missing carried value: err = %v", err)
	}
	if _, err := k.Run(env, []*tensor.Tensor{i64Scalar(2), nil, boolScalar(true)}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("body returning too few outputs: err = %v", err)
	}
	if _, err := k.Run(env, []*tensor.Tensor{f32([]float32{1, 2}, 2), nil, boolScalar(true)}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("M of two floats: err = %v", err)
	}
	if _, err := k.Run(env, []*tensor.Tensor{nil, f32(nil, 0), boolScalar(true)}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("empty cond: err = %v", err)
	}
	if _, err := k.Run(&ops.Env{}, []*tensor.Tensor{nil, nil, boolScalar(true)}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("no runner: err = %v", err)
	}
}

// scanGraph: a Scan-9 with one state s [2] and two scan inputs, x along axis
// 0 forward and y along axis 1 reversed; the body returns s + x + y and
// scans s+x+y (axis 0, forward) and x*y (axis -1, reversed).
func scanGraph(seq ir.Dim) *ir.Graph {
	b := ir.NewBuilder("scan", 17)
	g := b.Graph()
	s0 := b.Input("s0", tensor.Float32, ir.D(2))
	x := b.Input("x", tensor.Float32, seq, ir.D(2))
	y := b.Input("y", tensor.Float32, ir.D(2), seq)
	bb := subgraph("body", g)
	s := bb.Input("s", tensor.Float32, ir.D(2))
	xs := bb.Input("xs", tensor.Float32, ir.D(2))
	ys := bb.Input("ys", tensor.Float32, ir.D(2))
	s2 := bb.Op("ctlAdd", []*ir.Value{bb.Op("ctlAdd", []*ir.Value{s, xs}), ys})
	bb.Output(s2, "s_out")
	bb.Output(bb.Op("Identity", []*ir.Value{s2}), "sum_scan")
	bb.Output(bb.Op("ctlMul", []*ir.Value{xs, ys}), "prod_scan")
	outs := b.OpN("Scan", 3, []*ir.Value{s0, x, y}, ir.GraphAttr("body", bb.Graph()),
		ir.IntAttr("num_scan_inputs", 2), ir.IntsAttr("scan_input_axes", 0, -1),
		ir.IntsAttr("scan_input_directions", 0, 1), ir.IntsAttr("scan_output_axes", 0, -1),
		ir.IntsAttr("scan_output_directions", 0, 1))
	for i, name := range []string{"s", "sums", "prods"} {
		b.Output(outs[i], name)
	}
	return g
}

func TestScan(t *testing.T) {
	const T = 3
	xv := []float32{1, 2, 3, 4, 5, 6}       // [T,2]
	yv := []float32{10, 20, 30, 40, 50, 60} // [2,T]
	// reference loop
	s := []float32{0.5, -0.5}
	sums := make([]float32, T*2)
	prods := make([]float32, 2*T)
	for it := range T {
		p := T - 1 - it // y is read backwards
		for j := range 2 {
			xe, ye := xv[it*2+j], yv[j*T+p]
			s[j] += xe + ye
			sums[it*2+j] = s[j]
			prods[j*T+(T-1-it)] = xe * ye // axis 1, prepended
		}
	}
	for _, seq := range []ir.Dim{ir.D(T), ir.S("T")} {
		g := scanGraph(seq)
		out := runGraph(t, g, map[string]*tensor.Tensor{
			"s0": f32([]float32{0.5, -0.5}, 2), "x": f32(xv, T, 2), "y": f32(yv, 2, T)})
		equal(t, "s", out["s"], f32(s, 2))
		equal(t, "sums", out["sums"], f32(sums, T, 2))
		equal(t, "prods", out["prods"], f32(prods, 2, T))
		want := []string{"float32[2]", "float32[" + seq.String() + ",2]", "float32[2," + seq.String() + "]"}
		for i, w := range want {
			if got := g.Outputs[i].Type.String(); got != w {
				t.Errorf("output %d type %s, want %s", i, got, w)
			}
		}
	}
	// sequences of different lengths
	g := scanGraph(ir.U())
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Run(context.Background(), map[string]*tensor.Tensor{
		"s0": f32([]float32{0, 0}, 2), "x": f32(xv, T, 2), "y": f32(yv[:4], 2, 2)})
	if !errors.Is(err, ops.ErrBadInput) {
		t.Fatalf("different lengths: err = %v, want ErrBadInput", err)
	}
	// zero-length sequence: states pass through, scan outputs are empty
	out, err := e.Run(context.Background(), map[string]*tensor.Tensor{
		"s0": f32([]float32{1, 2}, 2), "x": f32(nil, 0, 2), "y": f32(nil, 2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "s", out["s"], f32([]float32{1, 2}, 2))
	equal(t, "sums", out["sums"], f32(nil, 0, 2))
	equal(t, "prods", out["prods"], f32(nil, 2, 0))
}

// TestScan8 checks opset 8's batched form with sequence_lens and a reversed
// scan input.
func TestScan8(t *testing.T) {
	for _, withLens := range []bool{false, true} {
		b := ir.NewBuilder("scan8", 8)
		g := b.Graph()
		var lens *ir.Value
		if withLens {
			lens = b.Input("lens", tensor.Int32, ir.D(2))
		}
		s0 := b.Input("s0", tensor.Float32, ir.S("B"), ir.D(1))
		x := b.Input("x", tensor.Float32, ir.S("B"), ir.D(3), ir.D(1))
		bb := subgraph("body", g)
		s := bb.Input("s", tensor.Float32, ir.D(1))
		xs := bb.Input("xs", tensor.Float32, ir.D(1))
		s2 := bb.Op("ctlAdd", []*ir.Value{bb.Op("ctlAdd", []*ir.Value{s, s}), xs}) // s = 2s + x
		bb.Output(s2, "")
		bb.Output(bb.Op("Identity", []*ir.Value{s2}), "")
		outs := b.OpN("Scan", 2, []*ir.Value{lens, s0, x}, ir.GraphAttr("body", bb.Graph()),
			ir.IntAttr("num_scan_inputs", 1), ir.IntsAttr("directions", 1))
		b.Output(outs[0], "s")
		b.Output(outs[1], "scan")
		in := map[string]*tensor.Tensor{
			"s0": f32([]float32{0, 100}, 2, 1),
			"x":  f32([]float32{1, 2, 3, 4, 5, 6}, 2, 3, 1),
		}
		lengths := []int{3, 3}
		if withLens {
			lt := tensor.New(tensor.Int32, 2)
			copy(lt.Int32s(), []int32{3, 2})
			in["lens"] = lt
			lengths = []int{3, 2}
		}
		out := runGraph(t, g, in)
		xv := in["x"].Float32s()
		st := []float32{0, 100}
		scan := make([]float32, 6)
		for bi := range 2 {
			for it := range lengths[bi] {
				p := lengths[bi] - 1 - it
				st[bi] = 2*st[bi] + xv[bi*3+p]
				scan[bi*3+it] = st[bi]
			}
		}
		equal(t, "s", out["s"], f32(st, 2, 1))
		equal(t, "scan", out["scan"], f32(scan, 2, 3, 1))
		for i, w := range []string{"float32[B,1]", "float32[B,3,1]"} {
			if got := g.Outputs[i].Type.String(); got != w {
				t.Errorf("output %d type %s, want %s", i, got, w)
			}
		}
	}
}

func TestScanBad(t *testing.T) {
	body := func(nIn, nOut int) *ir.Graph {
		bb := ir.NewBuilder("body", 17)
		var last *ir.Value
		for i := range nIn {
			last = bb.Input("in"+string(rune('a'+i)), tensor.Float32, ir.D(1))
		}
		for range nOut {
			bb.Output(bb.Op("Identity", []*ir.Value{last}), "")
		}
		return bb.Graph()
	}
	v := func() *ir.Value { return &ir.Value{Name: "v"} }
	node := func(g *ir.Graph, nIn, nOut int, attrs ...*ir.Attr) *ir.Node {
		n := &ir.Node{OpType: "Scan", Attrs: map[string]*ir.Attr{"body": ir.GraphAttr("body", g)}}
		for range nIn {
			n.Inputs = append(n.Inputs, v())
		}
		for range nOut {
			n.Outputs = append(n.Outputs, v())
		}
		for _, a := range attrs {
			n.Attrs[a.Name] = a
		}
		return n
	}
	for _, c := range []struct {
		name  string
		n     *ir.Node
		opset int64
		want  error
	}{
		{"no num_scan_inputs", node(body(2, 2), 2, 2), 11, ops.ErrBadAttr},
		{"num_scan_inputs too big", node(body(2, 2), 2, 2, ir.IntAttr("num_scan_inputs", 3)), 11, ops.ErrBadInput},
		{"body inputs", node(body(1, 2), 2, 2, ir.IntAttr("num_scan_inputs", 1)), 11, ops.ErrBadAttr},
		{"body outputs", node(body(2, 0), 2, 0, ir.IntAttr("num_scan_inputs", 1)), 11, ops.ErrBadAttr},
		{"directions", node(body(2, 2), 2, 2, ir.IntAttr("num_scan_inputs", 1), ir.IntsAttr("scan_input_directions", 2)), 11, ops.ErrBadAttr},
		{"axes count", node(body(2, 2), 2, 2, ir.IntAttr("num_scan_inputs", 1), ir.IntsAttr("scan_output_axes", 0, 1)), 11, ops.ErrBadAttr},
		{"node outputs", node(body(2, 2), 2, 3, ir.IntAttr("num_scan_inputs", 1)), 11, ops.ErrBadInput},
		{"opset 8 directions", node(body(2, 2), 3, 2, ir.IntAttr("num_scan_inputs", 1), ir.IntsAttr("directions", 0, 1)), 8, ops.ErrBadAttr},
	} {
		if _, err := ops.Prepare(c.n, c.opset); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// run-time checks, with a body runner that echoes its inputs
	env := &ops.Env{Ctx: context.Background(), RunGraph: func(_ *ir.Graph, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
		return in, nil
	}}
	k, err := ops.Prepare(node(body(2, 2), 2, 2, ir.IntAttr("num_scan_inputs", 1), ir.IntsAttr("scan_input_axes", 2)), 11)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Run(env, []*tensor.Tensor{f32([]float32{1}, 1), f32([]float32{1, 2}, 2, 1)}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("axis out of range: err = %v", err)
	}
	if _, err := k.Run(env, []*tensor.Tensor{nil, f32([]float32{1, 2}, 2, 1)}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("missing state: err = %v", err)
	}
	if _, err := k.Run(env, []*tensor.Tensor{f32([]float32{1}, 1), {DType: tensor.Float32, Shape: []int{4, 4}, Data: make([]byte, 4)}}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("short data: err = %v", err)
	}
	k8, err := ops.Prepare(node(body(2, 2), 3, 2, ir.IntAttr("num_scan_inputs", 1)), 8)
	if err != nil {
		t.Fatal(err)
	}
	lens := tensor.New(tensor.Int32, 1)
	lens.Int32s()[0] = 5
	for name, in := range map[string][]*tensor.Tensor{
		"length beyond sequence": {lens, f32([]float32{1}, 1, 1), f32([]float32{1, 2}, 1, 2, 1)},
		"batch mismatch":         {nil, f32([]float32{1, 2}, 2, 1), f32([]float32{1, 2}, 1, 2, 1)},
		"scan input rank 1":      {nil, f32([]float32{1}, 1, 1), f32([]float32{1, 2}, 2)},
		"scalar state":           {nil, f32([]float32{1}), f32([]float32{1, 2}, 1, 2, 1)},
	} {
		if _, err := k8.Run(env, in); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("opset 8 %s: err = %v", name, err)
		}
	}
}
