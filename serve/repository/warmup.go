package repository

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/kilnai/kiln/tensor"
)

// ErrWarmup is returned when a warmup sample's inputs cannot be made: a
// missing or short data file, or a shape too large.
var ErrWarmup = errors.New("repository: bad warmup sample")

// WarmupSource says where a warmup input's values come from.
type WarmupSource int

// Warmup input sources, as the oneof input_data_type of Triton's
// ModelWarmup.Input.
const (
	// ZeroData fills the input with zeros (empty strings for TYPE_STRING).
	ZeroData WarmupSource = iota
	// RandomData fills the input with pseudo-random values: floats uniform in
	// [0, 1), integers 0 or 1 (valid as indices and flags), random booleans,
	// empty strings. The values are the same on every load.
	RandomData
	// FileData reads the input's raw values from a file under the model's
	// warmup folder.
	FileData
)

// maxWarmupElements bounds the elements of one warmup input, so that a
// hostile config cannot make the server allocate without limit.
const maxWarmupElements = 1 << 28

// WarmupInput is one input of a warmup sample (Triton's ModelWarmup.Input).
type WarmupInput struct {
	DataType tensor.DType
	// Dims excludes the batch dimension when the model's max_batch_size > 0.
	Dims   []int64
	Source WarmupSource
	// File is input_data_file: a path relative to <model>/warmup holding the
	// values in row-major order, little-endian; for TYPE_STRING each element
	// is a 4-byte little-endian length followed by its bytes.
	File string
}

// Warmup is one warmup sample (Triton's ModelWarmup): a request run Count
// times on every instance of each version before the version is ready.
type Warmup struct {
	Name string
	// BatchSize is the batch dimension prepended to every input when the
	// model's max_batch_size > 0 (1..max_batch_size); it must be 1 otherwise.
	BatchSize int
	Inputs    map[string]WarmupInput
	// Count is how many times the sample runs on each instance (at least 1).
	Count int
}

func (m *mapper) warmup(f *Field) (Warmup, error) {
	w := Warmup{BatchSize: 1, Count: 1, Inputs: map[string]WarmupInput{}}
	if err := wantMsg(f); err != nil {
		return w, err
	}
	for _, g := range f.Msg.Fields {
		var err error
		switch g.Name {
		case "name":
			w.Name, err = g.Str()
		case "batch_size":
			var v int64
			if v, err = nonNegInt(g); err == nil {
				if v > 1<<20 {
					err = cfgErr(g, "%d is too large", v)
				}
				w.BatchSize = int(max(v, 1))
			}
		case "count":
			var v int64
			if v, err = nonNegInt(g); err == nil {
				if v > 1<<20 {
					err = cfgErr(g, "%d is too many", v)
				}
				w.Count = int(max(v, 1))
			}
		case "inputs":
			err = m.warmupInput(g, w.Inputs)
		default:
			m.unknown("model_warmup.", g)
		}
		if err != nil {
			return w, err
		}
	}
	if len(w.Inputs) == 0 {
		return w, cfgErr(f, "warmup sample %q has no inputs", w.Name)
	}
	return w, nil
}

// warmupInput reads one map entry: inputs { key: "x" value { ... } }.
func (m *mapper) warmupInput(f *Field, into map[string]WarmupInput) error {
	if err := wantMsg(f); err != nil {
		return err
	}
	keys, vals := f.Msg.Get("key"), f.Msg.Get("value")
	if len(keys) != 1 || len(vals) != 1 {
		return cfgErr(f, "want one key and one value")
	}
	k, err := keys[0].Str()
	if err != nil {
		return err
	}
	if _, dup := into[k]; dup {
		return cfgErr(f, "input %q given twice", k)
	}
	v := vals[0]
	if err := wantMsg(v); err != nil {
		return err
	}
	var in WarmupInput
	sources := 0
	typed := false
	for _, g := range v.Msg.Fields {
		var err error
		switch g.Name {
		case "data_type":
			var s string
			if s, err = g.Enum(); err == nil {
				dt, ok := tritonTypes[s]
				if !ok {
					err = cfgErr(g, "unknown data type %s", s)
				}
				in.DataType, typed = dt, true
			}
		case "dims":
			var d int64
			if d, err = nonNegInt(g); err == nil {
				in.Dims = append(in.Dims, d)
			}
		case "zero_data", "random_data":
			var b bool
			if b, err = g.Bool(); err == nil && !b {
				err = cfgErr(g, "set it to true, or give another data source")
			}
			in.Source = ZeroData
			if g.Name == "random_data" {
				in.Source = RandomData
			}
			sources++
		case "input_data_file":
			if in.File, err = g.Str(); err == nil && !filepath.IsLocal(in.File) {
				err = cfgErr(g, "%q must be a path inside the model's warmup folder", in.File)
			}
			in.Source = FileData
			sources++
		default:
			m.unknown("model_warmup.inputs.value.", g)
		}
		if err != nil {
			return err
		}
	}
	if !typed {
		return cfgErr(f, "warmup input %q has no data_type", k)
	}
	if sources != 1 {
		return cfgErr(f, "warmup input %q needs exactly one of zero_data, random_data, input_data_file", k)
	}
	if len(in.Dims) > 64 {
		return cfgErr(f, "too many dims")
	}
	into[k] = in
	return nil
}

// WarmupInputs makes the tensors of warmup sample w for a model whose
// max_batch_size is maxBatch; data files are read from dir/warmup (dir is
// the model folder).
func WarmupInputs(dir string, w Warmup, maxBatch int) (map[string]*tensor.Tensor, error) {
	if maxBatch > 0 && w.BatchSize > maxBatch {
		return nil, fmt.Errorf("%w: sample %q: batch_size %d above max_batch_size %d", ErrWarmup, w.Name, w.BatchSize, maxBatch)
	}
	if maxBatch == 0 && w.BatchSize != 1 {
		return nil, fmt.Errorf("%w: sample %q: batch_size %d, but the model does not batch (max_batch_size 0)", ErrWarmup, w.Name, w.BatchSize)
	}
	out := map[string]*tensor.Tensor{}
	for name, in := range w.Inputs {
		var shape []int
		if maxBatch > 0 {
			shape = append(shape, w.BatchSize)
		}
		n := int64(1)
		if maxBatch > 0 {
			n = int64(w.BatchSize)
		}
		for _, d := range in.Dims {
			n *= d
			if n > maxWarmupElements {
				return nil, fmt.Errorf("%w: sample %q input %q: more than %d elements", ErrWarmup, w.Name, name, maxWarmupElements)
			}
			shape = append(shape, int(d))
		}
		t, err := tensor.Make(in.DataType, shape)
		if err != nil {
			return nil, fmt.Errorf("%w: sample %q input %q: %w", ErrWarmup, w.Name, name, err)
		}
		switch in.Source {
		case RandomData:
			fillRandom(t, w.Name+"/"+name)
		case FileData:
			if err := fillFile(t, filepath.Join(dir, "warmup", in.File)); err != nil {
				return nil, fmt.Errorf("%w: sample %q input %q: %w", ErrWarmup, w.Name, name, err)
			}
		}
		out[name] = t
	}
	return out, nil
}

// fillRandom fills t with values seeded by seed.
func fillRandom(t *tensor.Tensor, seed string) {
	h := fnv.New64a()
	h.Write([]byte(seed))
	r := rand.New(rand.NewPCG(h.Sum64(), 0x6b696c6e))
	switch {
	case t.DType == tensor.String:
		// empty strings
	case t.DType.IsFloat():
		for i := range t.Len() {
			t.SetFloat(i, float64(r.Float32()))
		}
	default: // integers and booleans: 0 or 1
		for i := range t.Len() {
			t.SetFloat(i, float64(r.IntN(2)))
		}
	}
}

// fillFile fills t with the raw contents of the file at path.
func fillFile(t *tensor.Tensor, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if t.DType != tensor.String {
		if len(b) < len(t.Data) {
			return fmt.Errorf("%s holds %d bytes, the input needs %d", filepath.Base(path), len(b), len(t.Data))
		}
		copy(t.Data, b)
		return nil
	}
	for i := range t.Strings {
		if len(b) < 4 {
			return fmt.Errorf("%s holds %d strings, the input needs %d", filepath.Base(path), i, len(t.Strings))
		}
		n := binary.LittleEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return fmt.Errorf("%s: string %d of %d bytes runs past the end", filepath.Base(path), i, n)
		}
		t.Strings[i] = string(b[4 : 4+n])
		b = b[4+n:]
	}
	return nil
}
