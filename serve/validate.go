package serve

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// inputRules are the checks a version makes on each request's inputs
// before queueing it, beyond the config's (checkInputs), so that a request
// the model cannot run is refused on its own (ErrInvalid) instead of
// failing, or slowing down, the batch it would join.
type inputRules struct {
	// profiles are the engine's optimization profiles: the shapes it
	// was built for.
	profiles []engine.Profile
	// limits bound the symbolic dimensions of an engine without profiles.
	limits []dimLimit
	// indices bound the values of integer inputs the model uses as indices
	// into a constant (token ids into an embedding table).
	indices []indexLimit
	// shapes checks, by shape inference, that the graph can take the
	// inputs' shapes (nil when the model has no CPU graph to infer on).
	shapes *shapeCheck
}

// dimLimit is the range of one symbolic dimension of one input.
type dimLimit struct {
	input    string
	dim      int
	name     string // the symbol ("h", "seq"), or "?"
	min, max int
	fromDims bool // the range comes from the dims parameter
}

// indexLimit says that input's values index a dimension of size n (as
// Gather does: in [-n, n)) in node.
type indexLimit struct {
	input, node string
	n           int
}

// newInputRules derives the rules of one version from its model and the
// model's config.
func newInputRules(km *kiln.Model, cfg *repository.Config) (inputRules, error) {
	var r inputRules
	if h := km.Plan(); h != nil && len(h.Profiles) > 0 {
		r.profiles = h.Profiles
	} else {
		var dims map[string][3]int
		if s := cfg.Parameters[repository.ParamDims]; s != "" {
			var err error
			if dims, err = repository.ParseDims(s); err != nil {
				return r, err
			}
		}
		for _, in := range km.Inputs() {
			for i, size := range in.Shape {
				if size >= 0 || i == 0 && cfg.MaxBatchSize > 0 {
					continue // fixed, or the batch dimension (max_batch_size bounds it)
				}
				l := dimLimit{input: in.Name, dim: i, name: in.Dims[i], min: 0, max: repository.DefaultMaxDim}
				if d, ok := dims[l.name]; ok {
					l.min, l.max, l.fromDims = d[0], d[2], true
				}
				r.limits = append(r.limits, l)
			}
		}
	}
	if e := km.Engine(); e != nil {
		r.indices = indexLimits(e.Graph())
		r.shapes = newShapeCheck(e.Graph())
	}
	return r, nil
}

// indexLimits finds the graph inputs used directly (or through a Cast) as
// the indices of a Gather of a constant along a dimension of known size.
func indexLimits(g *ir.Graph) []indexLimit {
	if g == nil {
		return nil
	}
	inputs := map[*ir.Value]string{}
	for _, v := range g.Inputs {
		if v.Const == nil && (v.Type.DType == tensor.Int64 || v.Type.DType == tensor.Int32) {
			inputs[v] = v.Name
		}
	}
	// values that are an input's data cast to another integer type
	for _, n := range g.Nodes {
		if n.OpType == "Cast" && n.Domain == "" && len(n.Outputs) == 1 && n.Outputs[0] != nil {
			if name, ok := inputs[n.Input(0)]; ok {
				if dt := n.Outputs[0].Type.DType; dt == tensor.Int64 || dt == tensor.Int32 {
					inputs[n.Outputs[0]] = name
				}
			}
		}
	}
	var out []indexLimit
	for _, n := range g.Nodes {
		if n.OpType != "Gather" || n.Domain != "" {
			continue
		}
		data, idx := n.Input(0), n.Input(1)
		name, ok := inputs[idx]
		if !ok || data == nil || data.Const == nil {
			continue
		}
		a, err := ops.ParseGatherAttrs(n, g.Opset())
		if err != nil {
			continue // the kernel refuses it
		}
		axis := int(a.Axis)
		rank := len(data.Const.Shape)
		if axis < 0 {
			axis += rank
		}
		if axis < 0 || axis >= rank {
			continue
		}
		out = append(out, indexLimit{input: name, node: n.Name, n: data.Const.Shape[axis]})
	}
	return out
}

// CheckShape checks the declared shape of one input of a request to a
// model version (ver "" for the newest) against the bounds Infer enforces
// before queueing: the engine's optimization profiles, or the bounds on the
// symbolic dimensions of an engine without profiles. A protocol front end
// calls it to refuse a request before reading or decoding its data. It
// returns nil for an unknown model, version or input (Infer reports those)
// and an error wrapping ErrInvalid for a shape out of bounds.
func (s *Server) CheckShape(model, ver, input string, shape []int) error {
	_, v, err := s.lookup(model, ver)
	if err != nil {
		return nil
	}
	return v.rules.checkShape(input, shape)
}

// checkShape checks one input's shape against the profiles (it must fit the
// input's range in at least one) and the dimension limits.
func (r *inputRules) checkShape(input string, shape []int) error {
	if len(r.profiles) > 0 {
		var why string
		for i := range r.profiles {
			rg, ok := r.profiles[i].Range(input)
			if !ok {
				why = ""
				break
			}
			why = rangeMisfit(rg, shape)
			if why == "" {
				break
			}
		}
		if why != "" {
			return fmt.Errorf("%w: %s", ErrInvalid, why)
		}
	}
	for _, l := range r.limits {
		if l.input != input || l.dim >= len(shape) {
			continue // the engine reports a wrong rank
		}
		if d := shape[l.dim]; d < l.min || d > l.max {
			how := fmt.Sprintf("the default limit for a model without an optimization profile; give %s a range with the config parameter %q", l.name, repository.ParamDims)
			if l.fromDims {
				how = fmt.Sprintf("the range of %s in the config parameter %q", l.name, repository.ParamDims)
			}
			return fmt.Errorf("%w: input %q dimension %d (%s) is %d, outside [%d, %d] (%s)", ErrInvalid, l.input, l.dim, l.name, d, l.min, l.max, how)
		}
	}
	return nil
}

// rangeMisfit says why shape is outside rg, or "".
func rangeMisfit(rg engine.Range, shape []int) string {
	if len(shape) != len(rg.Min) {
		return fmt.Sprintf("input %q has rank %d, the model's profile allows rank %d", rg.Input, len(shape), len(rg.Min))
	}
	for d, got := range shape {
		if got < rg.Min[d] || got > rg.Max[d] {
			return fmt.Sprintf("input %q dimension %d is %d, outside the range [%d, %d] of the model's profile (min %v, max %v)",
				rg.Input, d, got, rg.Min[d], rg.Max[d], rg.Min, rg.Max)
		}
	}
	return ""
}

// check applies the rules to a request's inputs.
func (r *inputRules) check(inputs map[string]*tensor.Tensor) error {
	if len(r.profiles) > 0 {
		if _, err := engine.CheckProfiles(r.profiles, inputs); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	for name, t := range inputs {
		if t == nil {
			continue
		}
		if err := r.checkShape(name, t.Shape); err != nil {
			return err
		}
	}
	if err := r.shapes.check(inputs); err != nil {
		return err
	}
	for _, l := range r.indices {
		t := inputs[l.input]
		if t == nil {
			continue
		}
		if i, v, bad := firstOutside(t, l.n); bad {
			return fmt.Errorf("%w: input %q element %d is %d, outside [%d, %d) (it indexes a dimension of size %d in %s)",
				ErrInvalid, l.input, i, v, -l.n, l.n, l.n, nodeName(l.node))
		}
	}
	return nil
}

// firstOutside returns the first value of an int32/int64 tensor outside
// [-n, n).
func firstOutside(t *tensor.Tensor, n int) (int, int64, bool) {
	lo, hi := -int64(n), int64(n)
	switch t.DType {
	case tensor.Int64:
		for i, v := range t.Int64s() {
			if v < lo || v >= hi {
				return i, v, true
			}
		}
	case tensor.Int32:
		for i, v := range t.Int32s() {
			if int64(v) < lo || int64(v) >= hi {
				return i, int64(v), true
			}
		}
	}
	return 0, 0, false
}

func nodeName(n string) string {
	if n == "" {
		return "a Gather node"
	}
	return "node " + strconv.Quote(strings.TrimSpace(n))
}
