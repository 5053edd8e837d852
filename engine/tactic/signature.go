package tactic

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Signature is the key of node n of graph g in the timing cache: what its
// kernel's speed depends on, and nothing else (not its name, not the values
// of its constants). It spells the operator domain and type, every
// attribute in name order with its type and value, and every input's type
// and shape, marked "const" when it is a constant of the graph (an
// initializer or a folded value; a graph input with a default value is not
// constant, the caller may override it), "-" for an omitted one:
//
//	kiln::FusedConv{activation:s"Relu",group:i1,pads:ints[1,1,1,1]}(float32[1,64,56,56],float32[64,64,3,3]const,float32[64]const)
//
// Tensor attributes are spelled by type, shape and a hash of their
// contents, graph attributes by name and size.
func Signature(g *ir.Graph, n *ir.Node) string {
	var b strings.Builder
	dom := n.Domain
	if dom == "ai.onnx" {
		dom = ""
	}
	b.WriteString(dom)
	b.WriteString("::")
	b.WriteString(n.OpType)
	names := make([]string, 0, len(n.Attrs))
	for name := range n.Attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	b.WriteByte('{')
	for i, name := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteByte(':')
		writeAttr(&b, n.Attrs[name])
	}
	b.WriteString("}(")
	inputs := map[*ir.Value]bool{}
	for _, v := range g.Inputs {
		inputs[v] = true
	}
	for i, v := range n.Inputs {
		if i > 0 {
			b.WriteByte(',')
		}
		if v == nil {
			b.WriteByte('-')
			continue
		}
		b.WriteString(v.Type.String())
		if v.Const != nil && !inputs[v] {
			b.WriteString("const")
		}
	}
	b.WriteByte(')')
	return b.String()
}

func writeAttr(b *strings.Builder, a *ir.Attr) {
	if a == nil {
		b.WriteString("nil")
		return
	}
	switch a.Type {
	case ir.AttrFloat:
		b.WriteString("f" + fmtFloat(a.F))
	case ir.AttrInt:
		b.WriteString("i" + strconv.FormatInt(a.I, 10))
	case ir.AttrString:
		b.WriteString("s" + strconv.Quote(a.S))
	case ir.AttrFloats:
		list(b, "floats", len(a.Floats), func(i int) string { return fmtFloat(a.Floats[i]) })
	case ir.AttrInts:
		list(b, "ints", len(a.Ints), func(i int) string { return strconv.FormatInt(a.Ints[i], 10) })
	case ir.AttrStrings:
		list(b, "strings", len(a.Strings), func(i int) string { return strconv.Quote(a.Strings[i]) })
	case ir.AttrTensor:
		b.WriteString("t" + tensorKey(a.T))
	case ir.AttrTensors:
		list(b, "tensors", len(a.Tensors), func(i int) string { return tensorKey(a.Tensors[i]) })
	case ir.AttrGraph:
		b.WriteString("g" + graphKey(a.G))
	case ir.AttrGraphs:
		list(b, "graphs", len(a.Graphs), func(i int) string { return graphKey(a.Graphs[i]) })
	default:
		fmt.Fprintf(b, "type%d", a.Type)
	}
}

func list(b *strings.Builder, kind string, n int, item func(i int) string) {
	b.WriteString(kind)
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item(i))
	}
	b.WriteByte(']')
}

func fmtFloat(f float32) string { return strconv.FormatFloat(float64(f), 'g', -1, 32) }

func tensorKey(t *tensor.Tensor) string {
	if t == nil {
		return "nil"
	}
	h := sha256.New()
	h.Write(t.Data)
	for _, s := range t.Strings {
		h.Write([]byte(strconv.Quote(s)))
	}
	return fmt.Sprintf("%v%s#%s", t.DType, tensor.ShapeString(t.Shape), hex.EncodeToString(h.Sum(nil)[:8]))
}

func graphKey(g *ir.Graph) string {
	if g == nil {
		return "nil"
	}
	return fmt.Sprintf("%q/%dnodes", g.Name, len(g.Nodes))
}
