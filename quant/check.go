package quant

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/tensor"
)

// MinHistogramSamples is the fewest distinct samples the histogram methods
// (Entropy, Percentile) calibrate on; Calibrate uses MinMax on a set with
// fewer, and says so in Table.Warnings. Copies add nothing to a histogram
// (N copies of a sample give its histogram times N, and both methods read
// only the histogram's shape), so what counts is distinct samples; and the
// tail those methods cut away is, on a few samples, those samples' own
// outliers rather than the data's. Measured with
// TestCalibrationSetsMeasure (16 batches holding k distinct random
// batches; 1-cosine against FP32): on tinycnn (batches of 2 images)
// entropy's 1-cosine on the set itself is 1.45e-3 with 2 distinct images,
// 8.8e-4 with 4 and 8, 9.6e-5 with 16, where minmax's is 2.1e-4 at every
// size, and on 64 held-out random images minmax (5.0e-4) is at least as
// good as entropy (5.3e-4 to 6.9e-4) below 16; on resnet_mini and
// squeezenet1_1 one repeated sample calibrates as well as 16 distinct ones
// by every method, minmax within noise of entropy; mobilenet_v2 is 5x
// better with minmax or percentile than with entropy at 1 and 16 samples
// alike.
const MinHistogramSamples = 8

// histogramMin is MinHistogramSamples, but for TestCalibrationSetsMeasure,
// which measures the methods themselves on small sets.
var histogramMin = MinHistogramSamples

// NearCopy is the relative distance under which CheckBatches counts two
// samples as copies of one: |a-b| <= NearCopy*|b| over the float inputs
// (Euclidean norms), the other inputs equal.
const NearCopy = 1e-3

// DataReport is what CheckBatches found in a set of calibration (or
// accuracy) batches.
type DataReport struct {
	// Batches is the number of batches.
	Batches int
	// Samples is the number of samples: a batch whose inputs all have the
	// same first dimension n > 1 holds n (one per row), any other batch
	// one.
	Samples int
	// Distinct is the number of samples that are not copies (exact, or
	// within NearCopy) of an earlier one.
	Distinct int
	// Warnings describe what makes the set a poor picture of real
	// traffic: copies, constant inputs, inputs whose shapes fit no
	// profile. Each names the inputs and batches (numbered from 0, in the
	// order LoadBatches reads them: folder name order).
	Warnings []string
}

// DataOptions tunes CheckBatches.
type DataOptions struct {
	// Profiles, when given, are the plan's optimization profiles: a batch
	// whose input shapes fit none is reported (its ranges are measured at
	// shapes the plan never runs).
	Profiles []engine.Profile
}

// CheckBatches looks at calibration batches before they are used: every
// float input must be finite (an error wrapping ErrData names the batch,
// the input and the first element that is NaN or infinite), and it counts
// the distinct samples and warns about copies (all samples identical, or a
// set of a few samples repeated), float inputs that are constant (all
// zeros, say), and shapes outside the profiles. It reads every value once
// (a hash per sample, a min/max per input); near copies are found by
// comparing each sample with the first samples of each group, stopping at
// the first element that settles it.
func CheckBatches(batches []map[string]*tensor.Tensor, opt DataOptions) (*DataReport, error) {
	r, err := checkBatches(batches, opt)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// errNotFinite marks checkBatches' error for a value that is not finite
// (Compare reads it as a warning).
var errNotFinite = errors.New("not finite")

// checkBatches is CheckBatches; with an error for a value that is not
// finite (wrapping errNotFinite) it still returns the report of the rest.
func checkBatches(batches []map[string]*tensor.Tensor, opt DataOptions) (*DataReport, error) {
	r := &DataReport{Batches: len(batches)}
	var finiteErr error
	names := inputNames(batches)
	// finite values, constant float inputs
	constant := map[string][]int{}   // input -> batches where it is constant
	constVal := map[string]float64{} // its value in the first of them
	constDiffer := map[string]bool{} // the constant batches disagree on the value
	for bi, b := range batches {
		for _, name := range names {
			t := b[name]
			if t == nil || !t.DType.IsFloat() {
				continue
			}
			lo, hi, bad, badAt := floatRange(t)
			if bad != "" && finiteErr == nil {
				finiteErr = fmt.Errorf("%w: %w: batch %d, input %q: element %d is %s (calibration and the accuracy report need finite values)", ErrData, errNotFinite, bi, name, badAt, bad)
			}
			if t.Len() > 1 && bad == "" && lo == hi {
				if len(constant[name]) == 0 {
					constVal[name] = lo
				} else if constVal[name] != lo {
					constDiffer[name] = true
				}
				constant[name] = append(constant[name], bi)
			}
		}
	}
	// samples and their copies
	samples := splitSamples(batches, names)
	r.Samples = len(samples)
	groups := groupCopies(samples)
	r.Distinct = len(groups)
	if r.Distinct < r.Samples {
		r.Warnings = append(r.Warnings, copiesWarning(r, samples, groups))
	}
	for _, name := range names {
		at := constant[name]
		if len(at) == 0 {
			continue
		}
		what := "constant"
		if !constDiffer[name] {
			what = "constant (every element " + strconv.FormatFloat(constVal[name], 'g', 6, 64) + ")"
			if constVal[name] == 0 {
				what = "all zeros"
			}
		}
		if len(at) == len(batches) {
			r.Warnings = append(r.Warnings, fmt.Sprintf("input %q is %s in every batch: the ranges of the layers it feeds are measured on one value, not on data like traffic", name, what))
		} else {
			r.Warnings = append(r.Warnings, fmt.Sprintf("input %q is %s in %s of %d: are those samples real?", name, what, plural("batch", "batches", at), len(batches)))
		}
	}
	if len(opt.Profiles) > 0 {
		misfits := map[string][]int{}
		var order []string
		for bi, b := range batches {
			if _, err := engine.CheckProfiles(opt.Profiles, b); err != nil {
				msg := err.Error()
				if i := strings.LastIndex(msg, "profile: "); i >= 0 {
					msg = msg[i+len("profile: "):]
				}
				if len(misfits[msg]) == 0 {
					order = append(order, msg)
				}
				misfits[msg] = append(misfits[msg], bi)
			}
		}
		for _, msg := range order {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s (the plan never runs at these shapes, and a layer's ranges can differ there)", plural("batch", "batches", misfits[msg]), msg))
		}
	}
	return r, finiteErr
}

// inputNames returns the names of the batches' inputs, sorted.
func inputNames(batches []map[string]*tensor.Tensor) []string {
	seen := map[string]bool{}
	var names []string
	for _, b := range batches {
		for name := range b {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	return names
}

// floatRange returns the smallest and largest element of a float tensor
// and, for the first element that is NaN or infinite, what it is and its
// index.
func floatRange(t *tensor.Tensor) (lo, hi float64, bad string, at int) {
	lo, hi = math.Inf(1), math.Inf(-1)
	check := func(i int, v float64) bool {
		switch {
		case math.IsNaN(v):
			bad, at = "NaN", i
		case math.IsInf(v, 1):
			bad, at = "+Inf", i
		case math.IsInf(v, -1):
			bad, at = "-Inf", i
		default:
			lo, hi = min(lo, v), max(hi, v)
			return true
		}
		return false
	}
	if t.DType == tensor.Float32 {
		for i, v := range t.Float32s() {
			if !check(i, float64(v)) {
				return
			}
		}
		return
	}
	for i := range t.Len() {
		if !check(i, t.Float(i)) {
			return
		}
	}
	return
}

// sample is one sample of a batch: a row of each input (the whole input
// when the batch is one sample).
type sample struct {
	batch, row int
	inputs     []sampleInput // in name order
	hash       [32]byte
	norm2      float64 // squared norm of the float elements
}

type sampleInput struct {
	name  string
	dtype tensor.DType
	shape []int
	t     *tensor.Tensor // the whole input
	lo    int            // the row's elements: [lo, lo+n)
	n     int
}

// splitSamples splits batches into samples: the rows of a batch whose
// tensor inputs all have the same first dimension n > 1, else the batch.
func splitSamples(batches []map[string]*tensor.Tensor, names []string) []*sample {
	var out []*sample
	for bi, b := range batches {
		rows := -1
		for _, name := range names {
			t := b[name]
			if t == nil {
				continue
			}
			n := 0
			if t.Data != nil && t.Rank() > 0 {
				n = t.Shape[0]
			}
			if rows < 0 {
				rows = n
			} else if rows != n {
				rows = 0
			}
		}
		if rows < 2 {
			rows = 1
		}
		for row := range rows {
			s := &sample{batch: bi, row: row}
			h := sha256.New()
			var buf [8]byte
			for _, name := range names {
				t := b[name]
				if t == nil {
					continue
				}
				in := sampleInput{name: name, dtype: t.DType, shape: t.Shape, t: t}
				if t.Data != nil {
					in.n = t.Len() / rows
					in.lo = row * in.n
				}
				s.inputs = append(s.inputs, in)
				h.Write([]byte(name))
				binary.LittleEndian.PutUint64(buf[:], uint64(t.DType))
				h.Write(buf[:])
				for _, d := range t.Shape {
					binary.LittleEndian.PutUint64(buf[:], uint64(d))
					h.Write(buf[:])
				}
				if t.Data != nil {
					size := len(t.Data) / max(t.Len(), 1)
					h.Write(t.Data[in.lo*size : (in.lo+in.n)*size])
					if t.DType == tensor.Float32 {
						for _, v := range t.Float32s()[in.lo : in.lo+in.n] {
							s.norm2 += float64(v) * float64(v)
						}
					}
				} else {
					// sequences, strings: whole, by their printed form
					h.Write([]byte(t.String()))
				}
			}
			copy(s.hash[:], h.Sum(nil))
			out = append(out, s)
		}
	}
	return out
}

// maxGroups bounds the groups groupCopies compares a sample with for near
// copies (exact copies are found by hash in any number).
const maxGroups = 64

// groupCopies groups samples into copies of one (exact by hash, or within
// NearCopy), in order of first appearance; each group lists its samples.
func groupCopies(samples []*sample) [][]int {
	var groups [][]int
	byHash := map[[32]byte]int{}
	for i, s := range samples {
		if g, ok := byHash[s.hash]; ok {
			groups[g] = append(groups[g], i)
			continue
		}
		g := -1
		for j := 0; j < len(groups) && j < maxGroups; j++ {
			if nearCopy(s, samples[groups[j][0]]) {
				g = j
				break
			}
		}
		if g < 0 {
			g = len(groups)
			groups = append(groups, nil)
		}
		byHash[s.hash] = g
		groups[g] = append(groups[g], i)
	}
	return groups
}

// nearCopy reports whether a is within NearCopy of b: the same inputs,
// types and shapes, float32 inputs within NearCopy of b's norm together,
// the others equal.
func nearCopy(a, b *sample) bool {
	if len(a.inputs) != len(b.inputs) {
		return false
	}
	limit := NearCopy * NearCopy * b.norm2
	d2 := 0.0
	for k, x := range a.inputs {
		y := b.inputs[k]
		if x.name != y.name || x.dtype != y.dtype || tensor.ShapeString(x.shape) != tensor.ShapeString(y.shape) || x.n != y.n {
			return false
		}
		if x.t.Data == nil || y.t.Data == nil {
			if x.t.String() != y.t.String() {
				return false
			}
			continue
		}
		if x.dtype != tensor.Float32 {
			size := len(x.t.Data) / max(x.t.Len(), 1)
			if string(x.t.Data[x.lo*size:(x.lo+x.n)*size]) != string(y.t.Data[y.lo*size:(y.lo+y.n)*size]) {
				return false
			}
			continue
		}
		xv, yv := x.t.Float32s()[x.lo:x.lo+x.n], y.t.Float32s()[y.lo:y.lo+y.n]
		for i := range xv {
			d := float64(xv[i]) - float64(yv[i])
			if d2 += d * d; d2 > limit {
				return false
			}
		}
	}
	return true
}

// copiesWarning describes the copies among the samples.
func copiesWarning(r *DataReport, samples []*sample, groups [][]int) string {
	unit := "batch"
	if r.Samples != r.Batches {
		unit = "sample"
	}
	name := func(i int) string {
		s := samples[i]
		if unit == "batch" {
			return strconv.Itoa(s.batch)
		}
		return fmt.Sprintf("%d[%d]", s.batch, s.row)
	}
	var parts []string
	for _, g := range groups {
		if len(g) < 2 {
			continue
		}
		if len(parts) == 4 {
			parts = append(parts, "...")
			break
		}
		var copies []string
		if unit == "batch" {
			idx := make([]int, 0, len(g)-1)
			for _, i := range g[1:] {
				idx = append(idx, samples[i].batch)
			}
			copies = []string{ranges(idx)}
		} else {
			for k, i := range g[1:] {
				if k == 6 {
					copies = append(copies, fmt.Sprintf("%d more", len(g)-7))
					break
				}
				copies = append(copies, name(i))
			}
		}
		subject, verb := unit+" ", "copies"
		if len(g) > 2 || strings.ContainsAny(copies[0], ",-") {
			subject, verb = unit+"es ", "copy"
			if unit == "sample" {
				subject = "samples "
			}
		}
		parts = append(parts, fmt.Sprintf("%s%s %s %s %s", subject, strings.Join(copies, ", "), verb, unit, name(g[0])))
	}
	units := unit + "es"
	if unit == "sample" {
		units = "samples"
	}
	what := fmt.Sprintf("the %d %s hold %d distinct samples", r.Samples, units, r.Distinct)
	if r.Distinct == 1 {
		what = fmt.Sprintf("all %d %s are one sample", r.Samples, units)
	}
	return fmt.Sprintf("%s (copies, or within %g of one another: %s): ranges measured on them clip traffic unlike them; give distinct samples like the traffic", what, NearCopy, strings.Join(parts, "; "))
}

// plural formats a list of batch numbers with its noun ("batch 3",
// "batches 0-2, 5").
func plural(one, many string, idx []int) string {
	if len(idx) == 1 {
		return one + " " + strconv.Itoa(idx[0])
	}
	return many + " " + ranges(idx)
}

// ranges formats sorted numbers as runs: 0-3, 5, 7-8.
func ranges(idx []int) string {
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		switch {
		case j == i:
			parts = append(parts, strconv.Itoa(idx[i]))
		default:
			parts = append(parts, strconv.Itoa(idx[i])+"-"+strconv.Itoa(idx[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
