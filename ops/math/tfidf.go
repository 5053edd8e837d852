package math

import (
	"encoding/binary"
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// tfidf is ONNX TfIdfVectorizer: it counts, in each row of a [C] or [N, C]
// int32/int64/string tensor, the n-grams (min_gram_length..max_gram_length
// items, taken every 1..max_skip_count+1 positions) that appear in the pool,
// and writes the counts (TF), their indicators times the weights (IDF) or
// the counts times the weights (TFIDF) at the n-grams' output coordinates.
type tfidf struct {
	mode           string
	minN, maxN     int
	maxSkip        int
	pool           map[string]int // n-gram key -> index into indexes/weights
	indexes        []int64        // output coordinate of each pool n-gram
	weights        []float32
	width          int  // max(indexes) + 1
	strings        bool // pool_strings (string input) rather than pool_int64s
	hasGramsOfSize []bool
}

// key encodes an n-gram as a map key: each item length-prefixed.
func appendKey(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func intItem(v int64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(v))
	return string(b[:])
}

func (k *tfidf) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs("TfIdfVectorizer", in, 1, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !k.accepts(t.DType) {
		return nil, badType("TfIdfVectorizer", t.DType)
	}
	switch t.Shape.Rank() {
	case -1:
		return []ir.Type{{DType: tensor.Float32}}, nil
	case 1:
		return []ir.Type{{DType: tensor.Float32, Shape: ir.KnownShape(k.width)}}, nil
	case 2:
		return []ir.Type{{DType: tensor.Float32, Shape: ir.Shape{t.Shape[0], ir.D(int64(k.width))}}}, nil
	}
	return nil, fmt.Errorf("%w: TfIdfVectorizer of rank %d, want 1 or 2", ops.ErrBadInput, t.Shape.Rank())
}

func (k *tfidf) accepts(dt tensor.DType) bool {
	if k.strings {
		return dt == tensor.String
	}
	return dt == tensor.Int32 || dt == tensor.Int64
}

func (k *tfidf) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors("TfIdfVectorizer", in, 1, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !k.accepts(x.DType) {
		return nil, badType("TfIdfVectorizer", x.DType)
	}
	var rows, cols int
	var shape []int
	switch len(x.Shape) {
	case 1:
		rows, cols = 1, x.Shape[0]
		shape = []int{k.width}
	case 2:
		rows, cols = x.Shape[0], x.Shape[1]
		shape = []int{rows, k.width}
	default:
		return nil, fmt.Errorf("%w: TfIdfVectorizer of shape %v, want [C] or [N, C]", ops.ErrBadInput, x.Shape)
	}
	out, err := tensor.Make(tensor.Float32, shape)
	if err != nil {
		return nil, err
	}
	items := make([]string, x.Len())
	if k.strings {
		copy(items, x.Strings)
	} else {
		for i, v := range numbers[int64](x) {
			items[i] = intItem(v)
		}
	}
	y := elems[float32](out)
	counts := make([]float32, len(k.indexes))
	var key []byte
	for r := 0; r < rows; r++ {
		row := items[r*cols : (r+1)*cols]
		clear(counts)
		for n := k.minN; n <= k.maxN; n++ {
			if !k.hasGramsOfSize[n] {
				continue
			}
			skips := k.maxSkip
			if n == 1 {
				skips = 0 // a single item is the same n-gram at every skip
			}
			for s := 0; s <= skips; s++ {
				step := s + 1
				for i := 0; i+(n-1)*step < len(row); i++ {
					key = key[:0]
					for j := 0; j < n; j++ {
						key = appendKey(key, row[i+j*step])
					}
					if p, ok := k.pool[string(key)]; ok {
						counts[p]++
					}
				}
			}
		}
		dst := y[r*k.width : (r+1)*k.width]
		for p, c := range counts {
			if c == 0 {
				continue
			}
			w := float32(1)
			if k.weights != nil {
				w = k.weights[p]
			}
			switch k.mode {
			case "IDF":
				c = w
			case "TFIDF":
				c *= w
			}
			dst[k.indexes[p]] = c
		}
	}
	return []*tensor.Tensor{out}, nil
}

func prepareTfIdf(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseTfIdfVectorizerAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &tfidf{
		mode:    a.Mode,
		minN:    int(a.MinGramLength),
		maxN:    int(a.MaxGramLength),
		maxSkip: int(a.MaxSkipCount),
		indexes: a.NgramIndexes,
		weights: a.Weights,
		pool:    map[string]int{},
		strings: a.PoolStrings != nil,
	}
	pool := a.PoolStrings
	if !k.strings {
		pool = make([]string, len(a.PoolInt64s))
		for i, v := range a.PoolInt64s {
			pool[i] = intItem(v)
		}
	}
	// ParseTfIdfVectorizerAttrs has checked that ngram_counts splits the
	// pool and that ngram_indexes and weights have an entry per n-gram.
	k.hasGramsOfSize = make([]bool, k.maxN+1)
	idx := 0
	for g, start := range a.NgramCounts {
		end := int64(len(pool))
		if g+1 < len(a.NgramCounts) {
			end = a.NgramCounts[g+1]
		}
		size := g + 1
		for i := int(start); i < int(end); i += size {
			var key []byte
			for _, s := range pool[i : i+size] {
				key = appendKey(key, s)
			}
			if _, dup := k.pool[string(key)]; !dup {
				k.pool[string(key)] = idx
			}
			idx++
		}
		if end > start && size <= k.maxN {
			k.hasGramsOfSize[size] = true
		}
	}
	for _, i := range k.indexes {
		k.width = max(k.width, int(i)+1)
	}
	return k, nil
}

func init() {
	ops.Register(ops.Def{Type: "TfIdfVectorizer", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseTfIdfVectorizerAttrs(n, opset) }, Prepare: prepareTfIdf})
}
