package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// ErrProfile is returned for a malformed optimization profile, a profile
// that does not fit the model, and (wrapped together with ErrInput) for an
// input shape outside every profile of an engine.
var ErrProfile = errors.New("engine: optimization profile")

// Range is the shapes one input may take within a profile: every dimension
// between Min and Max, kernels chosen for Opt.
type Range struct {
	Input         string
	Min, Opt, Max []int
}

// Profile is an optimization profile: a range per dynamic input. An engine
// with profiles accepts a set of input shapes only when one profile contains
// all of them; kernels (tactics) are chosen at the Opt shapes and memory is
// planned for the Max shapes.
type Profile struct {
	Name   string
	Inputs []Range
}

// Range returns the profile's range for the named input.
func (p *Profile) Range(input string) (Range, bool) {
	for _, r := range p.Inputs {
		if r.Input == input {
			return r, true
		}
	}
	return Range{}, false
}

// Shapes returns, per input, the min (which 0), opt (1) or max (2) shapes.
func (p *Profile) Shapes(which int) map[string][]int {
	m := make(map[string][]int, len(p.Inputs))
	for _, r := range p.Inputs {
		m[r.Input] = [][]int{r.Min, r.Opt, r.Max}[which]
	}
	return m
}

// String spells p as its profile flag would: name:min,opt,max per input,
// joined by ";".
func (p *Profile) String() string {
	var parts []string
	for _, r := range p.Inputs {
		parts = append(parts, fmt.Sprintf("%s:%s,%s,%s", r.Input, shapeStr(r.Min), shapeStr(r.Opt), shapeStr(r.Max)))
	}
	return strings.Join(parts, "; ")
}

func shapeStr(s []int) string {
	if len(s) == 0 {
		return "scalar"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.Itoa(d)
	}
	return strings.Join(parts, "x")
}

// ParseRange parses one input's range as given to kiln build --profile:
// "NAME:MIN,OPT,MAX" with shapes spelled 1x3x224x224, or "NAME:SHAPE" for a
// fixed shape.
func ParseRange(s string) (Range, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return Range{}, fmt.Errorf("%w: %q: want NAME:MIN,OPT,MAX (shapes like 1x3x224x224)", ErrProfile, s)
	}
	r := Range{Input: s[:i]}
	parts := strings.Split(s[i+1:], ",")
	if len(parts) != 1 && len(parts) != 3 {
		return Range{}, fmt.Errorf("%w: %q: want three shapes MIN,OPT,MAX (or one fixed shape), got %d", ErrProfile, s, len(parts))
	}
	var shapes [][]int
	for _, p := range parts {
		sh, err := parseShape(p)
		if err != nil {
			return Range{}, fmt.Errorf("%w: %q: %w", ErrProfile, s, err)
		}
		shapes = append(shapes, sh)
	}
	if len(shapes) == 1 {
		shapes = append(shapes, shapes[0], shapes[0])
	}
	r.Min, r.Opt, r.Max = shapes[0], shapes[1], shapes[2]
	if err := r.check(); err != nil {
		return Range{}, err
	}
	return r, nil
}

func parseShape(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty shape")
	}
	if s == "scalar" {
		return []int{}, nil
	}
	var out []int
	for _, f := range strings.Split(s, "x") {
		d, err := strconv.Atoi(f)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad dimension %q in shape %q", f, s)
		}
		out = append(out, d)
	}
	return out, nil
}

// check verifies that min <= opt <= max dimension by dimension and that the
// three shapes have one rank.
func (r Range) check() error {
	if len(r.Min) != len(r.Opt) || len(r.Opt) != len(r.Max) {
		return fmt.Errorf("%w: input %q: min %s, opt %s and max %s have different ranks", ErrProfile, r.Input, shapeStr(r.Min), shapeStr(r.Opt), shapeStr(r.Max))
	}
	for d := range r.Min {
		if !(r.Min[d] <= r.Opt[d] && r.Opt[d] <= r.Max[d]) {
			return fmt.Errorf("%w: input %q dimension %d: need min <= opt <= max, got %d, %d, %d", ErrProfile, r.Input, d, r.Min[d], r.Opt[d], r.Max[d])
		}
	}
	if err := tensor.CheckShape(r.Max); err != nil {
		return fmt.Errorf("%w: input %q: max shape %s: %w", ErrProfile, r.Input, shapeStr(r.Max), err)
	}
	return nil
}

// Validate checks p against the graph inputs it will run with: each range
// names an input, fits its rank, keeps its fixed dimensions, and every input
// with a dynamic dimension has a range.
func (p *Profile) Validate(inputs []*ir.Value) error {
	byName := map[string]*ir.Value{}
	for _, v := range inputs {
		byName[v.Name] = v
	}
	seen := map[string]bool{}
	for _, r := range p.Inputs {
		if err := r.check(); err != nil {
			return fmt.Errorf("profile %q: %w", p.Name, err)
		}
		if seen[r.Input] {
			return fmt.Errorf("%w: profile %q gives input %q twice", ErrProfile, p.Name, r.Input)
		}
		seen[r.Input] = true
		v, ok := byName[r.Input]
		if !ok {
			return fmt.Errorf("%w: profile %q: the model has no input %q (inputs: %s)", ErrProfile, p.Name, r.Input, inputNames(inputs))
		}
		s := v.Type.Shape
		if s == nil {
			continue
		}
		if len(s) != len(r.Min) {
			return fmt.Errorf("%w: profile %q: input %q has rank %d %v, the profile gives rank %d", ErrProfile, p.Name, r.Input, len(s), s, len(r.Min))
		}
		for d, dim := range s {
			if dim.Known() && (r.Min[d] != int(dim.Val) || r.Max[d] != int(dim.Val)) {
				return fmt.Errorf("%w: profile %q: input %q dimension %d is fixed at %d in the model, the profile gives %d..%d", ErrProfile, p.Name, r.Input, d, dim.Val, r.Min[d], r.Max[d])
			}
		}
	}
	for _, v := range inputs {
		if !seen[v.Name] && dynamic(v) {
			return fmt.Errorf("%w: profile %q has no range for dynamic input %q %v", ErrProfile, p.Name, v.Name, v.Type.Shape)
		}
	}
	return nil
}

func dynamic(v *ir.Value) bool {
	if !v.Type.IsTensor() {
		return false // a sequence or optional: no shapes to profile
	}
	if v.Type.Shape == nil {
		return true
	}
	for _, d := range v.Type.Shape {
		if !d.Known() {
			return true
		}
	}
	return false
}

// CheckProfiles returns the index of the first profile that contains the
// shapes of all the given inputs. With no profiles it returns 0. When no
// profile fits, the error (wrapping ErrInput and ErrProfile) names the input,
// the dimension, its value and the allowed range of each profile.
func CheckProfiles(ps []Profile, inputs map[string]*tensor.Tensor) (int, error) {
	if len(ps) == 0 {
		return 0, nil
	}
	var why []string
	for i := range ps {
		msg := ps[i].misfit(inputs)
		if msg == "" {
			return i, nil
		}
		why = append(why, msg)
	}
	if len(ps) == 1 {
		return -1, fmt.Errorf("%w: %w: %s", ErrInput, ErrProfile, why[0])
	}
	return -1, fmt.Errorf("%w: %w: the input shapes fit none of the %d profiles: %s", ErrInput, ErrProfile, len(ps), strings.Join(why, "; "))
}

// misfit says why inputs do not fit p, or "" when they do.
func (p *Profile) misfit(inputs map[string]*tensor.Tensor) string {
	for _, r := range p.Inputs {
		t, ok := inputs[r.Input]
		if !ok || t == nil {
			continue // a missing input is reported by the input checks
		}
		if len(t.Shape) != len(r.Min) {
			return fmt.Sprintf("input %q has rank %d, profile %q allows rank %d", r.Input, len(t.Shape), p.Name, len(r.Min))
		}
		for d, got := range t.Shape {
			if got < r.Min[d] || got > r.Max[d] {
				return fmt.Sprintf("input %q dimension %d is %d, outside the range [%d, %d] of profile %q (min %s, max %s)",
					r.Input, d, got, r.Min[d], r.Max[d], p.Name, shapeStr(r.Min), shapeStr(r.Max))
			}
		}
	}
	return ""
}
