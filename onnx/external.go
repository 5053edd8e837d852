package onnx

import (
	"path/filepath"
	"slices"
)

// ExternalLocations returns the external data files m's tensors refer to:
// the locations of the tensors stored outside the model (initializers,
// sparse initializers and tensor attributes of every graph, subgraph and
// function), cleaned, each once, sorted. Tensors whose external data
// entries are malformed are left out (loading them fails anyway). Callers
// that key something on a model's contents (kiln's plan cache) hash these
// files with the model file.
func ExternalLocations(m *ModelProto) []string {
	seen := map[string]bool{}
	tensor := func(tp *TensorProto) {
		if tp == nil || tp.DataLocation != DataLocationExternal {
			return
		}
		if info, err := tp.External(); err == nil && info.Location != "" {
			seen[filepath.Clean(filepath.FromSlash(info.Location))] = true
		}
	}
	sparse := func(sp *SparseTensorProto) {
		if sp != nil {
			tensor(sp.Values)
			tensor(sp.Indices)
		}
	}
	var graph func(g *GraphProto, depth int)
	var nodes func(ns []*NodeProto, depth int)
	attrs := func(as []*AttributeProto, depth int) {
		for _, a := range as {
			if a == nil {
				continue
			}
			tensor(a.T)
			sparse(a.SparseTensor)
			for _, t := range a.Tensors {
				tensor(t)
			}
			for _, s := range a.SparseTensors {
				sparse(s)
			}
			graph(a.G, depth+1)
			for _, g := range a.Graphs {
				graph(g, depth+1)
			}
		}
	}
	nodes = func(ns []*NodeProto, depth int) {
		for _, n := range ns {
			if n != nil {
				attrs(n.Attribute, depth)
			}
		}
	}
	graph = func(g *GraphProto, depth int) {
		if g == nil || depth > MaxDepth {
			return
		}
		for _, t := range g.Initializer {
			tensor(t)
		}
		for _, s := range g.SparseInitializer {
			sparse(s)
		}
		nodes(g.Node, depth)
	}
	if m == nil {
		return nil
	}
	graph(m.Graph, 0)
	for _, f := range m.Functions {
		if f != nil {
			attrs(f.AttributeProto, 0)
			nodes(f.Node, 0)
		}
	}
	locs := make([]string, 0, len(seen))
	for l := range seen {
		locs = append(locs, l)
	}
	slices.Sort(locs)
	return locs
}
