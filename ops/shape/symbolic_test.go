package shape

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// graphBuilder builds small graphs for inference tests.
type graphBuilder struct {
	g *ir.Graph
	n int
}

func newGraph(opset int64) *graphBuilder {
	return &graphBuilder{g: &ir.Graph{Opsets: map[string]int64{"": opset}}}
}

func (b *graphBuilder) input(name string, dt tensor.DType, s ir.Shape) *ir.Value {
	v := &ir.Value{Name: name, Type: ir.Type{DType: dt, Shape: s}}
	b.g.Inputs = append(b.g.Inputs, v)
	return v
}

func (b *graphBuilder) ints(name string, vals ...int64) *ir.Value {
	v := &ir.Value{Name: name, Const: tensor.FromInt64(vals, len(vals))}
	b.g.Initializers = append(b.g.Initializers, v)
	return v
}

func (b *graphBuilder) scalar(name string, val int64) *ir.Value {
	t := tensor.New(tensor.Int64)
	t.Int64s()[0] = val
	v := &ir.Value{Name: name, Const: t}
	b.g.Initializers = append(b.g.Initializers, v)
	return v
}

func (b *graphBuilder) node(op string, in []*ir.Value, attrs ...*ir.Attr) *ir.Value {
	b.n++
	out := &ir.Value{Name: op + "_out" + string(rune('0'+b.n))}
	n := &ir.Node{Name: op, OpType: op, Inputs: in, Outputs: []*ir.Value{out}, Attrs: map[string]*ir.Attr{}}
	for _, a := range attrs {
		n.Attrs[a.Name] = a
	}
	b.g.Nodes = append(b.g.Nodes, n)
	return out
}

func (b *graphBuilder) infer(t *testing.T) {
	t.Helper()
	if _, err := ops.InferGraph(b.g); err != nil {
		t.Fatal(err)
	}
}

func attrInts(name string, v ...int64) *ir.Attr {
	return &ir.Attr{Name: name, Type: ir.AttrInts, Ints: v}
}

func attrInt(name string, v int64) *ir.Attr { return &ir.Attr{Name: name, Type: ir.AttrInt, I: v} }

func wantShape(t *testing.T, what string, got ir.Shape, want string) {
	t.Helper()
	if got.String() != want {
		t.Errorf("%s: shape %v, want %s", what, got, want)
	}
}

func wantDims(t *testing.T, what string, got []ir.Dim, want string) {
	t.Helper()
	if ir.Shape(got).String() != want {
		t.Errorf("%s: shape value %v, want %s", what, ir.Shape(got), want)
	}
}

// TestSymbolicReshapeChain is the PyTorch export pattern
// Shape -> Gather -> Unsqueeze -> Concat -> Reshape (and -> Transpose).
func TestSymbolicReshapeChain(t *testing.T) {
	for _, opset := range []int64{11, 13, 17} {
		b := newGraph(opset)
		x := b.input("x", tensor.Float32, ir.Shape{ir.S("batch"), ir.S("seq"), ir.D(128)})
		s := b.node("Shape", []*ir.Value{x})
		g0 := b.node("Gather", []*ir.Value{s, b.scalar("zero", 0)}, attrInt("axis", 0))
		g1 := b.node("Gather", []*ir.Value{s, b.scalar("one", 1)}, attrInt("axis", 0))
		unsq := func(v *ir.Value, name string) *ir.Value {
			if opset < 13 {
				return b.node("Unsqueeze", []*ir.Value{v}, attrInts("axes", 0))
			}
			return b.node("Unsqueeze", []*ir.Value{v, b.ints(name, 0)})
		}
		u0, u1 := unsq(g0, "ax0"), unsq(g1, "ax1")
		cat := b.node("Concat", []*ir.Value{u0, u1, b.ints("heads", 4, 32)}, attrInt("axis", 0))
		r := b.node("Reshape", []*ir.Value{x, cat})
		tr := b.node("Transpose", []*ir.Value{r}, attrInts("perm", 0, 2, 1, 3))
		// the same with -1 for the sequence: Concat(batch, [-1, 4, 32])
		cat2 := b.node("Concat", []*ir.Value{u0, b.ints("rest", -1, 4, 32)}, attrInt("axis", 0))
		r2 := b.node("Reshape", []*ir.Value{x, cat2})
		cos := b.node("ConstantOfShape", []*ir.Value{cat})
		b.infer(t)

		wantDims(t, "Shape", s.ShapeValue, "[batch,seq,128]")
		wantDims(t, "Gather 0", g0.ShapeValue, "[batch]")
		wantShape(t, "Gather 0", g0.Type.Shape, "[]")
		wantDims(t, "Unsqueeze", u1.ShapeValue, "[seq]")
		wantShape(t, "Unsqueeze", u1.Type.Shape, "[1]")
		wantDims(t, "Concat", cat.ShapeValue, "[batch,seq,4,32]")
		wantShape(t, "Concat", cat.Type.Shape, "[4]")
		wantShape(t, "Reshape", r.Type.Shape, "[batch,seq,4,32]")
		wantShape(t, "Transpose", tr.Type.Shape, "[batch,4,seq,32]")
		wantShape(t, "Reshape -1", r2.Type.Shape, "[batch,seq,4,32]")
		wantShape(t, "ConstantOfShape", cos.Type.Shape, "[batch,seq,4,32]")
		if cos.Type.DType != tensor.Float32 {
			t.Errorf("ConstantOfShape type %v", cos.Type.DType)
		}
	}
}

// TestSymbolicExpandChain is Shape -> Slice -> Concat -> Expand, plus Tile,
// Flatten, Size and Squeeze of shape values.
func TestSymbolicExpandChain(t *testing.T) {
	b := newGraph(17)
	x := b.input("x", tensor.Float32, ir.Shape{ir.S("batch"), ir.S("seq"), ir.D(128)})
	y := b.input("y", tensor.Float32, ir.Shape{ir.D(1), ir.D(1), ir.D(32)})
	s := b.node("Shape", []*ir.Value{x})
	sl := b.node("Slice", []*ir.Value{s, b.ints("st", 0), b.ints("en", 2)})
	cat := b.node("Concat", []*ir.Value{sl, b.ints("c32", 32)}, attrInt("axis", 0))
	ex := b.node("Expand", []*ir.Value{y, cat})
	last := b.node("Slice", []*ir.Value{s, b.ints("st2", -1), b.ints("en2", 1<<62)})
	rev := b.node("Slice", []*ir.Value{s, b.ints("st3", -1), b.ints("en3", -1<<62), b.ints("ax3", 0), b.ints("sp3", -1)})
	sq := b.node("Squeeze", []*ir.Value{last, b.ints("ax", 0)})
	tile := b.node("Tile", []*ir.Value{y, b.node("Concat", []*ir.Value{b.ints("one", 1), sl}, attrInt("axis", 0))})
	fl := b.node("Flatten", []*ir.Value{x}, attrInt("axis", 2))
	sz := b.node("Size", []*ir.Value{x})
	s15 := b.node("Shape", []*ir.Value{x}, attrInt("start", 1))
	pad := b.node("Pad", []*ir.Value{x, b.ints("pads", 0, 0, 1, 0, 0, 2)})
	b.infer(t)

	wantDims(t, "Slice", sl.ShapeValue, "[batch,seq]")
	wantDims(t, "Concat", cat.ShapeValue, "[batch,seq,32]")
	wantShape(t, "Expand", ex.Type.Shape, "[batch,seq,32]")
	wantDims(t, "Slice last", last.ShapeValue, "[128]")
	wantDims(t, "Slice reversed", rev.ShapeValue, "[128,seq,batch]")
	wantDims(t, "Squeeze", sq.ShapeValue, "[128]")
	wantShape(t, "Tile", tile.Type.Shape, "[1,batch,seq*32]")
	wantShape(t, "Flatten", fl.Type.Shape, "[batch*seq,128]")
	wantDims(t, "Size", sz.ShapeValue, "[batch*seq*128]")
	wantDims(t, "Shape start", s15.ShapeValue, "[seq,128]")
	wantShape(t, "Pad", pad.Type.Shape, "[batch,seq,131]")
}

// TestSymbolicConstFolding checks that shape computations on constants are
// folded and consumed by Reshape.
func TestSymbolicConstFolding(t *testing.T) {
	b := newGraph(17)
	x := b.input("x", tensor.Float32, ir.Shape{ir.S("n"), ir.D(6)})
	cat := b.node("Concat", []*ir.Value{b.ints("a", -1), b.ints("b", 2, 3)}, attrInt("axis", 0))
	r := b.node("Reshape", []*ir.Value{x, cat})
	fl := b.node("Reshape", []*ir.Value{x, b.ints("m1", -1)})
	b.infer(t)
	if cat.Const == nil {
		t.Fatal("Concat of constants was not folded")
	}
	wantShape(t, "Reshape", r.Type.Shape, "[n,2,3]")
	wantShape(t, "Reshape flat", fl.Type.Shape, "[n*6]")
}

func TestInferReshape(t *testing.T) {
	sym := func(s string) ir.Dim { return ir.S(s) }
	cases := []struct {
		in     ir.Shape
		target []ir.Dim
		zero   bool
		want   string
	}{
		{ir.Shape{sym("b"), sym("s"), ir.D(128)}, []ir.Dim{ir.D(0), ir.D(0), ir.D(4), ir.U()}, false, "[b,s,4,32]"},
		{ir.Shape{sym("b"), sym("s"), ir.D(128)}, []ir.Dim{ir.U(), ir.D(128)}, false, "[b*s,128]"},
		{ir.Shape{sym("b*s"), ir.D(128)}, []ir.Dim{sym("b"), ir.U(), ir.D(128)}, false, "[b,s,128]"},
		{ir.Shape{sym("b"), sym("s"), ir.D(128)}, []ir.Dim{ir.U(), ir.U()}, false, "[?,?]"},
		{ir.Shape{sym("b"), ir.D(6)}, []ir.Dim{sym("b"), ir.U(), ir.D(4)}, false, "[b,?,4]"},
		{ir.Shape{sym("b"), ir.D(6)}, []ir.Dim{ir.D(0), ir.D(6)}, true, "[0,6]"},
		{nil, []ir.Dim{ir.D(2), ir.U()}, false, "[2,?]"},
	}
	for _, c := range cases {
		got := inferReshape(c.in, c.target, c.zero)
		if got.String() != c.want {
			t.Errorf("inferReshape(%v, %v) = %v, want %s", c.in, ir.Shape(c.target), got, c.want)
		}
	}
}
