package serve

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// EnsembleConcurrency is how many requests an ensemble runs at once (its
// scheduler's instances); more wait in its queue. Each step of a request
// waits in its own model's queue, so steps of many requests batch there.
const EnsembleConcurrency = 64

// ensemble is a loaded ensemble's pipeline (Triton's ensemble_scheduling):
// steps, each a model run whose inputs are ensemble tensors (the ensemble's
// inputs or earlier steps' outputs) and whose outputs become ensemble
// tensors.
type ensemble struct {
	name  string
	steps []ensembleStep
	// outputs are the ensemble's output names (each an ensemble tensor).
	outputs []string
}

// ensembleStep is one step: a run of model (version "" for the newest).
type ensembleStep struct {
	model, version string
	// inputs maps the model's input names to ensemble tensors, outputs
	// its output names to ensemble tensors.
	inputs, outputs map[string]string
	// deps are the steps whose outputs this step reads; next the steps
	// that read this step's outputs.
	deps, next []int
	// wanted are the model outputs the step asks for (outputs' keys).
	wanted []string
}

// ensembleChainKey keys the names of the ensembles being loaded in a
// load's context (an ensemble loading its steps), to refuse a cycle of
// ensembles.
type ensembleChainKey struct{}

// newEnsemble checks the ensemble_scheduling of rm and loads its steps'
// models that are not loaded (Triton needs the composing models loaded;
// kiln loads them with the ensemble, in every model control mode). Errors
// wrap repository.ErrConfig and name the field.
func (s *Server) newEnsemble(ctx context.Context, rm *repository.Model) (*ensemble, error) {
	cfg := rm.Config
	raw := cfg.Raw.GetEnsembleScheduling().GetStep()
	e := &ensemble{name: rm.Name}
	// producer of each ensemble tensor: -1 for an ensemble input
	producer := map[string]int{}
	for _, in := range cfg.Inputs {
		producer[in.Name] = -1
	}
	for i, st := range raw {
		field := fmt.Sprintf("ensemble_scheduling.step[%d]", i)
		step := ensembleStep{model: st.GetModelName(), inputs: st.GetInputMap(), outputs: st.GetOutputMap()}
		switch {
		case step.model == "":
			return nil, fmt.Errorf("%w: %s.model_name is empty", repository.ErrConfig, field)
		case step.model == rm.Name:
			return nil, fmt.Errorf("%w: %s.model_name %q is the ensemble itself", repository.ErrConfig, field, step.model)
		case len(step.inputs) == 0:
			return nil, fmt.Errorf("%w: %s.input_map is empty", repository.ErrConfig, field)
		case len(step.outputs) == 0:
			return nil, fmt.Errorf("%w: %s.output_map is empty", repository.ErrConfig, field)
		}
		if v := st.GetModelVersion(); v > 0 {
			step.version = strconv.FormatInt(v, 10)
		} else if v < -1 {
			return nil, fmt.Errorf("%w: %s.model_version %d (want -1 for the newest, or a version)", repository.ErrConfig, field, v)
		}
		for _, k := range slices.Sorted(maps.Keys(step.outputs)) {
			t := step.outputs[k]
			if p, dup := producer[t]; dup {
				if p < 0 {
					return nil, fmt.Errorf("%w: %s.output_map: tensor %q is an input of the ensemble", repository.ErrConfig, field, t)
				}
				return nil, fmt.Errorf("%w: %s.output_map: tensor %q is also an output of step[%d]", repository.ErrConfig, field, t, p)
			}
			producer[t] = i
			step.wanted = append(step.wanted, k)
		}
		e.steps = append(e.steps, step)
	}
	consumed := map[string]bool{}
	for i := range e.steps {
		st := &e.steps[i]
		for _, k := range slices.Sorted(maps.Keys(st.inputs)) {
			t := st.inputs[k]
			consumed[t] = true
			p, ok := producer[t]
			if !ok {
				return nil, fmt.Errorf("%w: ensemble_scheduling.step[%d].input_map: tensor %q (input %q of model %q) is not an input of the ensemble nor an output of any step",
					repository.ErrConfig, i, t, k, st.model)
			}
			if p >= 0 && !slices.Contains(st.deps, p) {
				st.deps = append(st.deps, p)
				e.steps[p].next = append(e.steps[p].next, i)
			}
		}
	}
	if cyc := e.cycle(); cyc != nil {
		names := make([]string, len(cyc))
		for j, i := range cyc {
			names[j] = fmt.Sprintf("step[%d] (%s)", i, e.steps[i].model)
		}
		return nil, fmt.Errorf("%w: ensemble_scheduling: the steps form a cycle: %v", repository.ErrConfig, names)
	}
	for _, in := range cfg.Inputs {
		if !consumed[in.Name] {
			return nil, fmt.Errorf("%w: input %q of the ensemble is in no step's input_map", repository.ErrConfig, in.Name)
		}
	}
	for _, o := range cfg.Outputs {
		if p, ok := producer[o.Name]; !ok || p < 0 {
			return nil, fmt.Errorf("%w: output %q of the ensemble is in no step's output_map", repository.ErrConfig, o.Name)
		}
		e.outputs = append(e.outputs, o.Name)
	}
	if err := s.loadSteps(ctx, rm, e, producer); err != nil {
		return nil, err
	}
	return e, nil
}

// cycle returns the steps of a dependency cycle, or nil when the steps
// can run in some order.
func (e *ensemble) cycle() []int {
	const (
		unseen = iota
		open
		closed
	)
	state := make([]int, len(e.steps))
	var stack []int
	var visit func(i int) []int
	visit = func(i int) []int {
		state[i] = open
		stack = append(stack, i)
		for _, j := range e.steps[i].next {
			switch state[j] {
			case open:
				return stack[slices.Index(stack, j):]
			case unseen:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = closed
		return nil
	}
	for i := range e.steps {
		if state[i] == unseen {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// models returns the distinct models of the steps.
func (e *ensemble) models() []string {
	var out []string
	for _, st := range e.steps {
		if !slices.Contains(out, st.model) {
			out = append(out, st.model)
		}
	}
	return out
}

// loadSteps loads the steps' models that are not ready, then checks each
// step's maps against its model's config: the names exist and the tensors'
// types agree. An ensemble output without labels takes the labels of the
// step output that produces it (for the classification extension).
func (s *Server) loadSteps(ctx context.Context, rm *repository.Model, e *ensemble, producer map[string]int) error {
	chain, _ := ctx.Value(ensembleChainKey{}).([]string)
	if slices.Contains(chain, rm.Name) {
		return fmt.Errorf("%w: ensemble %q is a step of itself through %v", repository.ErrConfig, rm.Name, chain)
	}
	lctx := context.WithValue(ctx, ensembleChainKey{}, append(slices.Clip(chain), rm.Name))
	for _, name := range e.models() {
		i := slices.IndexFunc(e.steps, func(st ensembleStep) bool { return st.model == name })
		if slices.Contains(chain, name) {
			return fmt.Errorf("%w: ensemble_scheduling.step[%d].model_name %q: a cycle of ensembles %v", repository.ErrConfig, i, name, append(chain, rm.Name, name))
		}
		if ok, _ := s.ModelReady(name, ""); ok {
			continue
		}
		if err := s.load(lctx, name, LoadRequest{}); err != nil {
			return fmt.Errorf("%w: ensemble_scheduling.step[%d].model_name %q does not load: %w", repository.ErrConfig, i, name, err)
		}
	}
	types := map[string]tensor.DType{}
	for _, in := range rm.Config.Inputs {
		types[in.Name] = in.DataType
	}
	// producers first, so that each tensor's type is known where it is read
	order := e.order()
	for _, i := range order {
		st := e.steps[i]
		field := fmt.Sprintf("ensemble_scheduling.step[%d]", i)
		m, _, err := s.lookup(st.model, st.version)
		if err != nil {
			return fmt.Errorf("%w: %s: model %q version %q: %w", repository.ErrConfig, field, st.model, st.version, err)
		}
		scfg := m.repo.Config
		if mb := rm.Config.MaxBatchSize; mb > 0 && scfg.MaxBatchSize < mb {
			return fmt.Errorf("%w: %s.model_name %q: its max_batch_size %d is below the ensemble's %d (a batch passes through every step)",
				repository.ErrConfig, field, st.model, scfg.MaxBatchSize, mb)
		}
		for _, k := range slices.Sorted(maps.Keys(st.inputs)) {
			io, ok := findIO(scfg.Inputs, k)
			if !ok {
				return fmt.Errorf("%w: %s.input_map: model %q has no input %q", repository.ErrConfig, field, st.model, k)
			}
			if dt := types[st.inputs[k]]; dt != io.DataType {
				return fmt.Errorf("%w: %s.input_map: tensor %q is %s, input %q of model %q is %s", repository.ErrConfig, field,
					st.inputs[k], repository.TritonType(dt), k, st.model, repository.TritonType(io.DataType))
			}
		}
		for _, in := range scfg.Inputs {
			if _, ok := st.inputs[in.Name]; !ok && !in.Optional {
				return fmt.Errorf("%w: %s.input_map: input %q of model %q is not mapped", repository.ErrConfig, field, in.Name, st.model)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(st.outputs)) {
			io, ok := findIO(scfg.Outputs, k)
			if !ok {
				return fmt.Errorf("%w: %s.output_map: model %q has no output %q", repository.ErrConfig, field, st.model, k)
			}
			t := st.outputs[k]
			types[t] = io.DataType
			if labels := m.repo.Labels[k]; labels != nil && rm.Labels[t] == nil && slices.Contains(e.outputs, t) {
				if rm.Labels == nil {
					rm.Labels = map[string][]string{}
				}
				rm.Labels[t] = labels
			}
		}
	}
	for _, o := range rm.Config.Outputs {
		if dt := types[o.Name]; dt != o.DataType {
			return fmt.Errorf("%w: output %q of the ensemble is %s, but step[%d] makes it %s", repository.ErrConfig, o.Name,
				repository.TritonType(o.DataType), producer[o.Name], repository.TritonType(dt))
		}
	}
	return nil
}

// order returns the steps in an order where each follows the steps it
// reads from (the steps have no cycle).
func (e *ensemble) order() []int {
	left := make([]int, len(e.steps))
	var ready, out []int
	for i, st := range e.steps {
		if left[i] = len(st.deps); left[i] == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		out = append(out, i)
		for _, j := range e.steps[i].next {
			if left[j]--; left[j] == 0 {
				ready = append(ready, j)
			}
		}
	}
	return out
}

func findIO(ios []repository.IO, name string) (repository.IO, bool) {
	i := slices.IndexFunc(ios, func(io repository.IO) bool { return io.Name == name })
	if i < 0 {
		return repository.IO{}, false
	}
	return ios[i], true
}

// ensembleRunner runs an ensemble's requests: the scheduler's runner of an
// ensemble version.
type ensembleRunner struct {
	s *Server
	e *ensemble
}

// stepDone is a finished step.
type stepDone struct {
	i   int
	out []NamedTensor
	err error
}

// Run runs the steps of one request: each as soon as the steps it reads
// from are done (steps with their inputs ready run at once), each through
// its model's own scheduler (Server.Infer: its batcher, instances and
// statistics). Tensors pass from step to step as they are, never copied.
// The first step to fail cancels the others and fails the request, its
// error wrapped with the step and model named (so its kind, and status
// code, stays the step's).
func (r ensembleRunner) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	e := r.e
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vals := make(map[string]*tensor.Tensor, len(inputs)+2*len(e.steps))
	maps.Copy(vals, inputs)
	left := make([]int, len(e.steps))
	done := make(chan stepDone, len(e.steps))
	start := func(i int) {
		st := &e.steps[i]
		in := make(map[string]*tensor.Tensor, len(st.inputs))
		for k, t := range st.inputs {
			if v, ok := vals[t]; ok {
				in[k] = v
			}
		}
		go func() {
			resp, err := r.s.Infer(ctx, &InferRequest{Model: st.model, Version: st.version, Inputs: in, Outputs: st.wanted})
			if err != nil {
				done <- stepDone{i: i, err: err}
				return
			}
			done <- stepDone{i: i, out: resp.Outputs}
		}()
	}
	running := 0
	for i, st := range e.steps {
		if left[i] = len(st.deps); left[i] == 0 {
			start(i)
			running++
		}
	}
	var first error
	for running > 0 {
		d := <-done
		running--
		st := &e.steps[d.i]
		if d.err != nil {
			if first == nil {
				first = stepError(e.name, d.i, st.model, d.err)
				cancel()
			}
			continue
		}
		for _, o := range d.out {
			if t, ok := st.outputs[o.Name]; ok {
				vals[t] = o.Tensor
			}
		}
		if first != nil {
			continue
		}
		for _, j := range st.next {
			if left[j]--; left[j] == 0 {
				start(j)
				running++
			}
		}
	}
	if first != nil {
		return nil, first
	}
	out := make(map[string]*tensor.Tensor, len(e.outputs))
	for _, name := range e.outputs {
		t, ok := vals[name]
		if !ok {
			return nil, fmt.Errorf("ensemble %s: no step made output %q", e.name, name)
		}
		out[name] = t
	}
	return out, nil
}

// stepError wraps a step's error with the step named. A step model gone
// meanwhile (unloaded) makes the ensemble not ready, not "not found".
func stepError(ensemble string, i int, model string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: ensemble %s: step[%d] (model %q): %v", ErrNotReady, ensemble, i, model, err)
	}
	return fmt.Errorf("ensemble %s: step[%d] (model %q): %w", ensemble, i, model, err)
}
