package quant

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

var inputFile = regexp.MustCompile(`^input_(\d+)\.pb$`)

// LoadBatches reads calibration batches from dir: either one folder of
// input_N.pb files (ONNX TensorProto, as in ONNX test data sets) or a folder
// holding such folders (test_data_set_0, test_data_set_1, ...; every
// subfolder with input files is one batch, in name order). Each file is
// matched to a model input by the tensor's name when it names one of
// inputs, otherwise by its position N. Every input must be given once per
// batch, with the model's data type and a shape that fits the model's
// (known dimensions equal, a symbolic dimension one size across the
// batch's inputs), and float inputs must be finite (the error names the
// file, the input and the first element that is NaN or infinite).
func LoadBatches(dir string, inputs []*ir.Value) ([]map[string]*tensor.Tensor, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("%w: the model takes no inputs", ErrData)
	}
	files, err := inputFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		b, err := loadBatch(dir, files, inputs)
		if err != nil {
			return nil, err
		}
		return []map[string]*tensor.Tensor{b}, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrData, err)
	}
	var batches []map[string]*tensor.Tensor
	for _, e := range ents { // ReadDir sorts by name
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		files, err := inputFiles(sub)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			continue
		}
		b, err := loadBatch(sub, files, inputs)
		if err != nil {
			return nil, err
		}
		batches = append(batches, b)
	}
	if len(batches) == 0 {
		return nil, fmt.Errorf("%w: %s holds no input_N.pb files, nor folders of them (such as test_data_set_0)", ErrData, dir)
	}
	return batches, nil
}

// inputFiles returns the input_N.pb files of dir indexed by N, sorted.
func inputFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrData, err)
	}
	type f struct {
		n    int
		name string
	}
	var fs []f
	for _, e := range ents {
		m := inputFile.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		fs = append(fs, f{n, e.Name()})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].n < fs[j].n })
	out := make([]string, len(fs))
	for i, x := range fs {
		if x.n != i {
			return nil, fmt.Errorf("%w: %s: input_%d.pb is missing (found %s)", ErrData, dir, i, x.name)
		}
		out[i] = x.name
	}
	return out, nil
}

func loadBatch(dir string, files []string, inputs []*ir.Value) (map[string]*tensor.Tensor, error) {
	byName := map[string]*ir.Value{}
	for _, v := range inputs {
		byName[v.Name] = v
	}
	b := map[string]*tensor.Tensor{}
	from := map[string]string{}
	for i, name := range files {
		path := filepath.Join(dir, name)
		t, tname, err := onnx.ReadTensorFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrData, path, err)
		}
		v := byName[tname]
		if v == nil {
			if i >= len(inputs) {
				return nil, fmt.Errorf("%w: %s: the model takes %d inputs, and the tensor's name %q names none of them", ErrData, path, len(inputs), tname)
			}
			v = inputs[i]
		}
		if prev, dup := from[v.Name]; dup {
			return nil, fmt.Errorf("%w: %s and %s both give input %q", ErrData, prev, path, v.Name)
		}
		from[v.Name] = path
		b[v.Name] = t
	}
	syms := map[string]int{}
	for _, v := range inputs {
		t, ok := b[v.Name]
		if !ok {
			return nil, fmt.Errorf("%w: %s: no file gives input %q (%v)", ErrData, dir, v.Name, v.Type)
		}
		if err := checkTensor(v, t, syms); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrData, from[v.Name], err)
		}
		if t.DType.IsFloat() {
			if _, _, bad, at := floatRange(t); bad != "" {
				return nil, fmt.Errorf("%w: %s: input %q: element %d is %s (calibration and the accuracy report need finite values)", ErrData, from[v.Name], v.Name, at, bad)
			}
		}
	}
	return b, nil
}

// checkTensor checks that t fits input v; syms binds symbolic dimensions.
func checkTensor(v *ir.Value, t *tensor.Tensor, syms map[string]int) error {
	if v.Type.DType != tensor.Undefined && t.DType != v.Type.DType {
		return fmt.Errorf("input %q: data type %v, the model expects %v", v.Name, t.DType, v.Type.DType)
	}
	s := v.Type.Shape
	if s == nil {
		return nil
	}
	if len(s) != len(t.Shape) {
		return fmt.Errorf("input %q: shape %s, the model expects %v", v.Name, dimsString(t.Shape), s)
	}
	for i, d := range s {
		got := t.Shape[i]
		if d.Known() && int(d.Val) != got {
			return fmt.Errorf("input %q: shape %s, the model expects %v (dimension %d)", v.Name, dimsString(t.Shape), s, i)
		}
		if d.Symbolic() {
			if n, ok := syms[d.Sym]; ok && n != got {
				return fmt.Errorf("input %q: dimension %d (%s) is %d, but %s is %d in another input", v.Name, i, d.Sym, got, d.Sym, n)
			}
			syms[d.Sym] = got
		}
	}
	return nil
}

// RandomBatches returns n batches of random inputs for the given model
// inputs, reproducible from seed. A dimension the model leaves symbolic or
// unknown takes its size from shapes[input name] when given (a full shape),
// else from another input's given shape with the same symbol, else 1.
// Floats are standard normal; integers uniform in [0, 100); bools fair
// coins. A sequence input is a sequence of RandomSequenceLen tensors of its
// element type, an optional input holds a value of its element type
// (shapes[name], when given, is then the shape of those tensors); one whose
// element type or rank is not known is an error wrapping ErrNotMeasurable. Random data exercises every layer but its ranges are
// not those of real data: calibrate on real samples where you can.
func RandomBatches(inputs []*ir.Value, shapes map[string][]int, n int, seed int64) ([]map[string]*tensor.Tensor, error) {
	r := rand.New(rand.NewSource(seed))
	if n < 0 {
		return nil, fmt.Errorf("%w: %d random batches", ErrData, n)
	}
	// what each input's tensors (a sequence's elements) are
	types := make([]ir.Type, len(inputs))
	for i, v := range inputs {
		t, err := randomTensorType(v)
		if err != nil {
			return nil, err
		}
		types[i] = t
	}
	dims := make([][]int, len(inputs))
	syms := map[string]int{}
	for i, v := range inputs {
		if s, ok := shapes[v.Name]; ok {
			tv := &ir.Value{Name: v.Name, Type: types[i]}
			if err := checkTensor(tv, &tensor.Tensor{DType: types[i].DType, Shape: s}, syms); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrData, err)
			}
			dims[i] = append([]int(nil), s...)
		}
	}
	for i := range inputs {
		if dims[i] != nil {
			continue
		}
		dims[i] = []int{}
		for _, d := range types[i].Shape {
			switch {
			case d.Known():
				dims[i] = append(dims[i], int(d.Val))
			case d.Symbolic() && syms[d.Sym] > 0:
				dims[i] = append(dims[i], syms[d.Sym])
			default:
				dims[i] = append(dims[i], 1)
			}
		}
	}
	batches := make([]map[string]*tensor.Tensor, n)
	for b := range batches {
		m := map[string]*tensor.Tensor{}
		for i, v := range inputs {
			if v.Type.IsTensor() {
				t, err := randomTensor(r, v.Name, types[i].DType, dims[i])
				if err != nil {
					return nil, err
				}
				m[v.Name] = t
				continue
			}
			t, err := randomNonTensor(r, v.Name, v.Type, dims[i])
			if err != nil {
				return nil, err
			}
			m[v.Name] = t
		}
		batches[b] = m
	}
	return batches, nil
}

// RandomSequenceLen is the number of elements of a random sequence input.
const RandomSequenceLen = 2

// randomTensorType returns the type of the tensors of input v's random
// values: v's own, a sequence's or an optional's element type (through
// nested ones), or an error wrapping ErrNotMeasurable when that is not
// known well enough to make one (no element type, no rank).
func randomTensorType(v *ir.Value) (ir.Type, error) {
	t := v.Type
	for !t.IsTensor() {
		if t.Elem == nil || t.Elem.DType == tensor.Undefined || t.Elem.IsTensor() && t.Elem.Shape == nil {
			return ir.Type{}, fmt.Errorf("%w: %w: input %q is a %v: its elements' type or rank is not known, so random values cannot be made (give real ones)", ErrData, ErrNotMeasurable, v.Name, v.Type)
		}
		t = *t.Elem
	}
	return t, nil
}

// randomNonTensor returns a random value of the sequence or optional type
// t (elements of shape dims): a sequence of RandomSequenceLen elements, an
// optional holding a value (itself a sequence for an optional sequence).
func randomNonTensor(r *rand.Rand, name string, t ir.Type, dims []int) (*tensor.Tensor, error) {
	e := t.ElemType()
	one := func() (*tensor.Tensor, error) {
		if e.IsTensor() {
			return randomTensor(r, name, e.DType, dims)
		}
		return randomNonTensor(r, name, e, dims)
	}
	if t.DType == tensor.Optional {
		return one() // an optional with a value is the value
	}
	elems := make([]*tensor.Tensor, RandomSequenceLen)
	for i := range elems {
		x, err := one()
		if err != nil {
			return nil, err
		}
		elems[i] = x
	}
	return tensor.NewSequence(elems), nil
}

// randomTensor returns a random tensor for input name (see RandomBatches).
func randomTensor(r *rand.Rand, name string, dt tensor.DType, dims []int) (*tensor.Tensor, error) {
	t, err := tensor.Make(dt, dims)
	if err != nil {
		return nil, fmt.Errorf("%w: input %q: %w", ErrData, name, err)
	}
	switch {
	case t.DType == tensor.Float32:
		for j, x := 0, t.Float32s(); j < len(x); j++ {
			x[j] = float32(r.NormFloat64())
		}
	case t.DType.IsFloat():
		for j := range t.Len() {
			t.SetFloat(j, r.NormFloat64())
		}
	case t.DType == tensor.Bool:
		for j := range t.Len() {
			t.SetFloat(j, float64(r.Intn(2)))
		}
	case t.DType.IsInt():
		// Masks (attention_mask, ...) are 0/1; other integers (token
		// ids, indices) small, so that lookups stay in range.
		hi := 100
		if strings.Contains(strings.ToLower(name), "mask") {
			hi = 2
		}
		for j := range t.Len() {
			t.SetFloat(j, float64(r.Intn(hi)))
		}
	default:
		return nil, fmt.Errorf("%w: %w: input %q: cannot make random %v data", ErrData, ErrNotMeasurable, name, t.DType)
	}
	return t, nil
}

// dimsString formats a shape as [1,3,224,224], as ir.Shape prints.
func dimsString(shape []int) string {
	s := make([]string, len(shape))
	for i, d := range shape {
		s[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(s, ",") + "]"
}
