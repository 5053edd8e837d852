package quant

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Method is how calibration turns the observed values of a tensor into its
// range (amax, the largest magnitude kept; scale = amax/127).
type Method int

// Calibration methods.
const (
	// Entropy picks the threshold that minimizes the KL divergence between
	// the histogram of |x| and its 128-level quantization (TensorRT's
	// entropy calibration).
	Entropy Method = iota
	// MinMax keeps the largest magnitude seen.
	MinMax
	// Percentile keeps the given percentile of |x| (99.99 by default).
	Percentile
)

// String returns the method's name as the CLI spells it.
func (m Method) String() string {
	switch m {
	case Entropy:
		return "entropy"
	case MinMax:
		return "minmax"
	case Percentile:
		return "percentile"
	}
	return "method(" + strconv.Itoa(int(m)) + ")"
}

// ParseMethod reads a method name: "entropy", "minmax" or "percentile".
func ParseMethod(s string) (Method, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "entropy", "kl":
		return Entropy, nil
	case "minmax", "min-max", "max":
		return MinMax, nil
	case "percentile":
		return Percentile, nil
	}
	return 0, fmt.Errorf("%w: unknown calibration method %q (want entropy, minmax or percentile)", ErrCalibration, s)
}

// Histogram and entropy parameters (TensorRT's).
const (
	// HistogramBins is the number of bins of the |x| histogram.
	HistogramBins = 2048
	// QuantLevels is the number of levels a positive half-range is
	// quantized to when the entropy method compares distributions.
	QuantLevels = 128
	// DefaultPercentile is the percentile Percentile keeps when
	// CalibOptions.Percentile is zero.
	DefaultPercentile = 99.99
)

// CalibOptions tunes Calibrate.
type CalibOptions struct {
	// Percentile is the percentile of |x| kept by the Percentile method, in
	// (0, 100]; zero means DefaultPercentile.
	Percentile float64
	// Progress, when not nil, is called after every batch run with the
	// number of runs done and the total (two runs per batch for the
	// histogram methods: one for the ranges, one for the histograms).
	Progress func(done, total int)
	// Profiles, when given, are the plan's optimization profiles: the
	// data check (CheckBatches) warns about batches whose shapes fit none.
	Profiles []engine.Profile
}

// Table is the result of calibration: the range of every float32 value of
// the calibrated graph.
type Table struct {
	// Method is the method the ranges were computed with.
	Method Method
	// Percentile is the percentile used when Method is Percentile.
	Percentile float64
	// Graph is GraphHash of the calibrated graph ("" when unknown); the INT8
	// rewrite refuses a table made for another graph.
	Graph string
	// Entries maps a value name to its amax, the largest magnitude kept
	// (scale = amax/127).
	Entries map[string]float32
	// Source is where the table was read from (set by ReadTable, for error
	// messages); it is not written.
	Source string
	// Warnings are Calibrate's findings about the calibration data
	// (CheckBatches) and its choice of method; they are not written.
	Warnings []string
}

// Note returns the table's warnings as one line for a build log, starting
// with "; ", or "" when there are none.
func (t *Table) Note() string {
	if t == nil || len(t.Warnings) == 0 {
		return ""
	}
	return "; warning: " + strings.Join(t.Warnings, "; warning: ")
}

// Scale returns the INT8 scale of the named value (amax/127) and whether
// the table has a usable (positive, finite) range for it.
func (t *Table) Scale(name string) (float32, bool) {
	if t == nil {
		return 0, false
	}
	a, ok := t.Entries[name]
	if !ok || !(a > 0) || math.IsInf(float64(a), 0) {
		return 0, false
	}
	return a / 127, true
}

// Names returns the table's value names, sorted.
func (t *Table) Names() []string {
	names := make([]string, 0, len(t.Entries))
	for n := range t.Entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CheckGraph returns an ErrCache error when the table was made for a graph
// other than g (by GraphHash); a table without a hash is accepted.
func (t *Table) CheckGraph(g *ir.Graph) error {
	if t.Graph == "" {
		return nil
	}
	if h := GraphHash(g); h != t.Graph {
		src := "the calibration table"
		if t.Source != "" {
			src = "calibration cache " + t.Source
		}
		return fmt.Errorf("%w: %s was made for graph %s, but this model's graph is %s: it belongs to another model (or other build options); delete it or calibrate again", ErrCache, src, t.Graph, h)
	}
	return nil
}

// Calibrate runs eng (a float32 engine) on every batch and returns the
// range of each float32 value it computes and of each float32 graph input,
// by the given method. The histogram methods run every batch twice: once
// for the largest magnitude of each value, once to fill its histogram of
// HistogramBins bins over [0, that magnitude].
//
// It checks the batches first (CheckBatches): a value that is NaN or
// infinite is an error naming the batch and input; copies, constant
// inputs and shapes outside opt.Profiles are in the table's Warnings. On
// fewer than MinHistogramSamples distinct samples the histogram methods
// give way to MinMax (Table.Method says so, and a warning why).
func Calibrate(ctx context.Context, eng *engine.Engine, batches []map[string]*tensor.Tensor, method Method, opt CalibOptions) (*Table, error) {
	if len(batches) == 0 {
		return nil, fmt.Errorf("%w: no calibration batches", ErrCalibration)
	}
	pct := opt.Percentile
	if pct == 0 {
		pct = DefaultPercentile
	}
	if method == Percentile && !(pct > 0 && pct <= 100) {
		return nil, fmt.Errorf("%w: percentile %g is outside (0, 100]", ErrCalibration, pct)
	}
	switch method {
	case Entropy, MinMax, Percentile:
	default:
		return nil, fmt.Errorf("%w: unknown method %v", ErrCalibration, method)
	}
	data, err := CheckBatches(batches, DataOptions{Profiles: opt.Profiles})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCalibration, err)
	}
	requested := method
	warnings := data.Warnings
	if (method == Entropy || method == Percentile) && data.Distinct < histogramMin {
		method = MinMax
		warnings = append(warnings, fmt.Sprintf("%s calibration needs at least %d distinct samples, these batches hold %d: calibrated with minmax instead (copies add nothing to a histogram, and on so few samples the tail %s cuts is those samples' outliers, not the data's; minmax was as accurate or better on such sets in kiln's measurements)", requested, MinHistogramSamples, data.Distinct, requested))
	}
	passes := 2
	if method == MinMax {
		passes = 1
	}
	total := passes * len(batches)
	done := 0
	inputs := map[string]*ir.Value{}
	for _, v := range eng.Graph().Inputs {
		inputs[v.Name] = v
	}
	// the graph as built: a run may bind its sequence types (SequenceMap's
	// body), which would make the table another graph's
	graph := GraphHash(eng.Graph())

	amax := map[string]float64{}
	for i, b := range batches {
		observe := func(v *ir.Value, t *tensor.Tensor) {
			if t.DType != tensor.Float32 {
				return
			}
			amax[v.Name] = max(amax[v.Name], absMax(t.Float32s()))
		}
		if err := observeBatch(ctx, eng, inputs, b, observe); err != nil {
			return nil, fmt.Errorf("%w: batch %d: %w", ErrCalibration, i, err)
		}
		done++
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
	}
	if len(amax) == 0 {
		return nil, fmt.Errorf("%w: the graph computes no float32 value", ErrCalibration)
	}
	t := &Table{Method: method, Graph: graph, Entries: make(map[string]float32, len(amax)), Warnings: warnings}
	if method == Percentile {
		t.Percentile = pct
	}
	if method == MinMax {
		for name, m := range amax {
			t.Entries[name] = float32(m)
		}
		return t, nil
	}

	hists := make(map[string]*histogram, len(amax))
	for name, m := range amax {
		hists[name] = &histogram{max: m}
	}
	for i, b := range batches {
		observe := func(v *ir.Value, t *tensor.Tensor) {
			if h := hists[v.Name]; h != nil && t.DType == tensor.Float32 {
				h.add(t.Float32s())
			}
		}
		if err := observeBatch(ctx, eng, inputs, b, observe); err != nil {
			return nil, fmt.Errorf("%w: batch %d: %w", ErrCalibration, i, err)
		}
		done++
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
	}
	// the threshold searches are independent: run them on all CPUs.
	names := make([]string, 0, len(hists))
	for name := range hists {
		names = append(names, name)
	}
	res := make([]float32, len(names))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), len(names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				h := hists[names[i]]
				if method == Entropy {
					res[i] = float32(h.entropyAmax())
				} else {
					res[i] = float32(h.percentileAmax(pct))
				}
			}
		}()
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, name := range names {
		t.Entries[name] = res[i]
	}
	return t, nil
}

// observeBatch shows observe the float inputs of a batch, then runs it.
func observeBatch(ctx context.Context, eng *engine.Engine, inputs map[string]*ir.Value, b map[string]*tensor.Tensor, observe engine.Observer) error {
	names := make([]string, 0, len(b))
	for name := range b {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if v := inputs[name]; v != nil && b[name] != nil {
			observe(v, b[name])
		}
	}
	_, err := eng.RunObserved(ctx, b, observe)
	return err
}

// absMax returns the largest finite |x| of x (0 when there is none).
func absMax(x []float32) float64 {
	var m float32
	for _, v := range x {
		a := float32(math.Abs(float64(v)))
		if a > m && a <= math.MaxFloat32 {
			m = a
		}
	}
	return float64(m)
}

// histogram counts |x| in HistogramBins equal bins over [0, max]; values
// above max (there are none when max came from the same data) land in the
// last bin; NaN and infinities are not counted.
type histogram struct {
	max  float64
	bins [HistogramBins]float64
}

func (h *histogram) add(x []float32) {
	if h.max <= 0 {
		for _, v := range x {
			if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
				h.bins[0]++
			}
		}
		return
	}
	inv := HistogramBins / h.max
	for _, v := range x {
		a := math.Abs(float64(v))
		if math.IsNaN(a) || math.IsInf(a, 0) {
			continue
		}
		i := int(a * inv)
		if i >= HistogramBins {
			i = HistogramBins - 1
		}
		h.bins[i]++
	}
}

func (h *histogram) width() float64 { return h.max / HistogramBins }

// percentileAmax returns the upper edge of the bin where the cumulative
// count reaches pct percent of all counts.
func (h *histogram) percentileAmax(pct float64) float64 {
	total := 0.0
	for _, c := range h.bins {
		total += c
	}
	if total == 0 || h.max <= 0 {
		return h.max
	}
	want := total * pct / 100
	cum := 0.0
	for i, c := range h.bins {
		cum += c
		if cum >= want {
			return float64(i+1) * h.width()
		}
	}
	return h.max
}

// entropyAmax is TensorRT's entropy calibration, as NVIDIA's reference
// implementation (pytorch-quantization's _compute_amax_entropy) does it:
//
//   - the count of bin 0 is replaced by that of bin 1, so that the spike of
//     exact zeros after a ReLU does not decide the threshold;
//   - for every candidate of i bins, i = QuantLevels .. HistogramBins-1, P
//     is the first i bins with the counts beyond them added to bin i-1; Q is
//     those i bins (without the outliers) merged into QuantLevels levels,
//     bin j into level floor(j*QuantLevels/i), each level's count spread
//     evenly over its bins that are not empty (empty bins stay 0);
//   - the candidate of least KL(P||Q) wins (the largest i on a tie), and
//     amax is its upper edge, i times the bin width.
//
// A candidate whose Q is zero where P is not has an infinite divergence.
// With prefix sums a candidate costs O(QuantLevels).
func (h *histogram) entropyAmax() float64 {
	if h.max <= 0 {
		return h.max
	}
	const n = HistogramBins
	bins := h.bins
	bins[0] = bins[1]
	// prefix sums over bins [0, j): counts, non-empty bins, c*log(c).
	var cnt, nz, clogc [n + 1]float64
	for j, c := range bins {
		cnt[j+1] = cnt[j] + c
		clogc[j+1] = clogc[j]
		nz[j+1] = nz[j]
		if c > 0 {
			nz[j+1]++
			clogc[j+1] += c * math.Log(c)
		}
	}
	total := cnt[n]
	if total == 0 {
		return h.max
	}
	best, bestI := math.Inf(1), n
	for i := QuantLevels; i <= n-1; i++ {
		if d := klCandidate(bins[:], cnt[:], nz[:], clogc[:], i, total); d <= best {
			best, bestI = d, i
		}
	}
	return float64(bestI) * h.width()
}

// logCount[n] is log(n) for the bin counts of a level.
var logCount = func() (l [HistogramBins + 1]float64) {
	for i := range l {
		l[i] = math.Log(float64(i))
	}
	return
}()

// klCandidate returns KL(P||Q) for the threshold of i bins (see
// entropyAmax). With S = total, P_j = c_j/S (bin i-1 holding the outliers
// too) and Q constant over the non-empty bins of each level,
//
//	KL = sum_j P_j log P_j - sum_levels (sum_{j in level} P_j) log Q_level.
func klCandidate(bins, cnt, nz, clogc []float64, i int, total float64) float64 {
	outliers := total - cnt[i]
	if bins[i-1] == 0 && outliers > 0 {
		return math.Inf(1) // P has the outliers in bin i-1, where Q is 0
	}
	last := bins[i-1] + outliers // P's last bin, unnormalized
	// sum over j < i of p_j log p_j with p_j = c_j / S:
	// (1/S) * sum c log c - log S, with bin i-1 replaced by last.
	sumClogc := clogc[i-1]
	if last > 0 {
		sumClogc += last * math.Log(last)
	}
	kl := sumClogc/total - math.Log(total) // sum P log P (P sums to 1)
	qTotal := cnt[i]                       // Q's total mass: the i bins without the outliers
	if qTotal == 0 {
		return math.Inf(1)
	}
	logQT := math.Log(qTotal)
	for k := 0; k < QuantLevels; k++ {
		lo := (k*i + QuantLevels - 1) / QuantLevels // ceil(k*i/QuantLevels)
		hi := ((k+1)*i + QuantLevels - 1) / QuantLevels
		mass := cnt[hi] - cnt[lo] // the level's count, spread over its non-empty bins
		if mass == 0 {
			continue // P is 0 there too (bin i-1 with outliers is non-empty)
		}
		pMass := mass
		if hi == i {
			pMass += outliers
		}
		// Q_j = mass / nonEmpty / qTotal on each non-empty bin of the level.
		logQ := math.Log(mass) - logCount[int(nz[hi]-nz[lo])] - logQT
		kl -= pMass / total * logQ
	}
	return kl
}
