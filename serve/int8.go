package serve

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// Parameters of config.pbtxt that make the server switch a model to INT8
// calibrated on its own recorded requests (kiln's extension; with
// record_requests):
//
//	parameters { key: "int8_rebuild_after" value: { string_value: "200" } } # recorded requests that start the rebuild
//	parameters { key: "int8_min_cosine" value: { string_value: "0.999" } }  # accuracy needed to switch (default 0.999)
//	parameters { key: "int8_hold_back" value: { string_value: "0.25" } }    # fraction of them kept for the check (default 0.25)
//
// Once the version has recorded int8_rebuild_after requests, the server
// builds an INT8 engine in the background, calibrated on the recorded
// requests except the held-back ones, and compares it with the engine it
// serves (FP32) on the held-back ones. It switches to the INT8 engine, as a
// reload does (warmup, then the swap; no request fails), only when the
// smallest cosine similarity over the outputs reaches int8_min_cosine.
// Each attempt is reported by Server.Rebuilds and logged. It is tried once
// per load of the model, for a model with one version served at FP32.
const (
	ParamINT8RebuildAfter = "int8_rebuild_after"
	ParamINT8MinCosine    = "int8_min_cosine"
	ParamINT8HoldBack     = "int8_hold_back"
)

// RebuildReport is the outcome of one background INT8 rebuild.
type RebuildReport struct {
	Model   string
	Version int64
	// Calibration and HeldBack are the recorded requests used for each.
	Calibration, HeldBack int
	// Cosine is the smallest cosine similarity with the served engine's
	// outputs on the held-back requests, Top1 the smallest top-1 agreement
	// (NaN when no output has classes), MinCosine the threshold.
	Cosine, Top1, MinCosine float64
	// Switched says whether the server now serves the INT8 engine.
	Switched bool
	// Err says why the rebuild or the switch failed ("" when it did not).
	Err  string
	Took time.Duration
}

// int8Rebuild is a version's background rebuild plan.
type int8Rebuild struct {
	after     int
	minCosine float64
	holdBack  float64
	dir       string // the recorded requests
	started   atomic.Bool
}

// rebuilds holds the reports of the server's background rebuilds.
type rebuilds struct {
	mu      sync.Mutex
	reports []RebuildReport
}

// Rebuilds returns the reports of the background INT8 rebuilds so far, the
// oldest first.
func (s *Server) Rebuilds() []RebuildReport {
	s.rebuilds.mu.Lock()
	defer s.rebuilds.mu.Unlock()
	return slices.Clone(s.rebuilds.reports)
}

// newINT8Rebuild reads the int8_* parameters of rm (nil when
// int8_rebuild_after is not set, or the version cannot be rebuilt).
func (s *Server) newINT8Rebuild(rm *repository.Model, v *version, mod *kiln.Model) (*int8Rebuild, error) {
	p := rm.Config.Parameters
	n, ok := p[ParamINT8RebuildAfter]
	if !ok {
		return nil, nil
	}
	bad := func(key, want string) error {
		return fmt.Errorf("%w: model %s: parameter %s: %q (want %s)", repository.ErrConfig, rm.Name, key, p[key], want)
	}
	rb := &int8Rebuild{minCosine: 0.999, holdBack: 0.25}
	var err error
	if rb.after, err = strconv.Atoi(n); err != nil || rb.after < 2 {
		return nil, bad(ParamINT8RebuildAfter, "a count of at least 2")
	}
	if c, ok := p[ParamINT8MinCosine]; ok {
		if rb.minCosine, err = strconv.ParseFloat(c, 64); err != nil || !(rb.minCosine > -1 && rb.minCosine <= 1) {
			return nil, bad(ParamINT8MinCosine, "a cosine similarity, at most 1")
		}
	}
	if h, ok := p[ParamINT8HoldBack]; ok {
		if rb.holdBack, err = strconv.ParseFloat(h, 64); err != nil || !(rb.holdBack > 0 && rb.holdBack < 1) {
			return nil, bad(ParamINT8HoldBack, "a fraction between 0 and 1")
		}
	}
	if _, ok := p[ParamRecord]; !ok {
		return nil, fmt.Errorf("%w: model %s: parameter %s needs %s (the requests to calibrate on)", repository.ErrConfig, rm.Name, ParamINT8RebuildAfter, ParamRecord)
	}
	switch {
	case v.rec == nil:
		return nil, nil // no --record-dir: newRecorder said so
	case len(rm.Versions) != 1:
		s.log.Warn("int8_rebuild_after is for a model with one version served", "model", rm.Name, "versions", len(rm.Versions))
		return nil, nil
	case mod.Plan() != nil && mod.Plan().Precision != "" && mod.Plan().Precision != "fp32":
		return nil, nil // already reduced (the INT8 engine switched to)
	}
	rb.dir = RecordDir(s.opts.RecordDir, rm.Name, v.num)
	return rb, nil
}

// maybeRebuild starts the background rebuild of v once enough requests are
// recorded.
func (s *Server) maybeRebuild(v *version) {
	rb := v.int8
	if rb == nil || rb.started.Load() || v.rec.Stats().Sets < rb.after || !rb.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		rep := s.rebuildINT8(v, rb)
		if rep.Err != "" {
			s.log.Warn("INT8 rebuild", "model", rep.Model, "version", rep.Version, "switched", rep.Switched, "err", rep.Err)
		} else {
			s.log.Info("INT8 rebuild", "model", rep.Model, "version", rep.Version, "calibration", rep.Calibration,
				"held_back", rep.HeldBack, "cosine", rep.Cosine, "top1", rep.Top1, "min_cosine", rep.MinCosine, "switched", rep.Switched, "took", rep.Took)
		}
		s.rebuilds.mu.Lock()
		s.rebuilds.reports = append(s.rebuilds.reports, rep)
		s.rebuilds.mu.Unlock()
	}()
}

var recordedSet = regexp.MustCompile(`^test_data_set_(\d+)$`)

// rebuildINT8 builds, checks and (when it passes) switches to the INT8
// engine of v.
func (s *Server) rebuildINT8(v *version, rb *int8Rebuild) RebuildReport {
	start := time.Now()
	rep := RebuildReport{Model: v.stats.Model, Version: v.num, MinCosine: rb.minCosine, Cosine: math.NaN(), Top1: math.NaN()}
	fail := func(err error) RebuildReport {
		rep.Err, rep.Took = err.Error(), time.Since(start)
		return rep
	}
	s.mu.RLock()
	m := s.models[rep.Model]
	s.mu.RUnlock()
	if m == nil || !slices.Contains(m.versions, v) {
		return fail(fmt.Errorf("the model was reloaded or unloaded before the rebuild"))
	}
	rm := m.repo
	ref := rm.Versions[0].Model

	// a snapshot of the recorded sets: the recorder keeps replacing them
	tmp, err := os.MkdirTemp("", "kiln-int8-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	sets, err := snapshotSets(rb.dir, tmp)
	if err != nil {
		return fail(err)
	}
	held := max(1, int(math.Round(rb.holdBack*float64(len(sets)))))
	if len(sets)-held < 1 {
		return fail(fmt.Errorf("%d recorded requests: too few to calibrate and check", len(sets)))
	}
	calibDir := filepath.Join(tmp, "calib")
	if err := os.MkdirAll(calibDir, 0o755); err != nil {
		return fail(err)
	}
	for i, d := range sets[:len(sets)-held] {
		if err := os.Rename(d, filepath.Join(calibDir, "test_data_set_"+strconv.Itoa(i))); err != nil {
			return fail(err)
		}
	}
	var heldBatches []map[string]*tensor.Tensor
	for _, d := range sets[len(sets)-held:] {
		b, err := readSet(d)
		if err != nil {
			return fail(err)
		}
		heldBatches = append(heldBatches, b)
	}
	rep.Calibration, rep.HeldBack = len(sets)-held, held

	o, err := repository.BuildOptions(rm.Dir, rm.Config)
	if err != nil {
		return fail(err)
	}
	o.Precision, o.CalibData = "int8", calibDir
	file := "model.onnx"
	if rm.Config.DefaultModelFilename != "" {
		file = filepath.Base(rm.Config.DefaultModelFilename)
	}
	ctx := context.Background()
	q, err := kiln.Build(ctx, filepath.Join(rm.Dir, strconv.FormatInt(v.num, 10), file), o)
	if err != nil {
		return fail(fmt.Errorf("building the INT8 engine: %w", err))
	}
	acc, err := quant.Compare(ctx, ref, q, heldBatches)
	if err != nil {
		q.Close()
		return fail(fmt.Errorf("comparing the INT8 engine with the served one: %w", err))
	}
	rep.Cosine = acc.MinCosine()
	for _, out := range acc.Outputs {
		if out.HasTop1 && (math.IsNaN(rep.Top1) || out.Top1 < rep.Top1) {
			rep.Top1 = out.Top1
		}
	}
	if !(rep.Cosine >= rb.minCosine) {
		q.Close()
		rep.Took = time.Since(start)
		return rep
	}
	next := &repository.Model{Name: rm.Name, Dir: rm.Dir, Config: rm.Config, Labels: rm.Labels,
		Versions: []repository.Version{{Number: v.num, Model: q}}}
	if s.closing.Load() {
		next.Close()
		return fail(fmt.Errorf("the server is shutting down"))
	}
	// as a reload: warmed up, then swapped in; the old engine drains
	if err := s.add(ctx, next); err != nil {
		return fail(fmt.Errorf("switching to the INT8 engine: %w", err))
	}
	rep.Switched, rep.Took = true, time.Since(start)
	return rep
}

// snapshotSets copies the complete test_data_set_N folders of dir into tmp
// and returns the copies in N order.
func snapshotSets(dir, tmp string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type set struct {
		n    int
		name string
	}
	var found []set
	for _, e := range ents {
		if m := recordedSet.FindStringSubmatch(e.Name()); m != nil && e.IsDir() {
			n, _ := strconv.Atoi(m[1])
			found = append(found, set{n, e.Name()})
		}
	}
	slices.SortFunc(found, func(a, b set) int { return a.n - b.n })
	var out []string
	for _, f := range found {
		to := filepath.Join(tmp, "snap", f.name)
		if copySet(filepath.Join(dir, f.name), to) == nil {
			out = append(out, to)
		}
		// else replaced while copied: left out
	}
	return out, nil
}

func copySet(from, to string) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	files, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, fe := range files {
		b, err := os.ReadFile(filepath.Join(from, fe.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, fe.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readSet reads one recorded set: its input_K.pb files, by tensor name.
func readSet(dir string) (map[string]*tensor.Tensor, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	b := map[string]*tensor.Tensor{}
	for _, e := range ents {
		t, name, err := kiln.ReadTensorFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		b[name] = t
	}
	return b, nil
}
