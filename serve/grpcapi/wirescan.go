package grpcapi

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
)

// proto.Unmarshal decodes a repeated field by appending to its slice one
// entry at a time: a slice grown by 1.25 times past 256 entries allocates
// about 5 times its final size, and each chunk of a packed field copies
// the slice again (growInt64Slice and its kin), so that a message of many
// one-entry chunks costs the square of its size. A ModelInferRequest of
// 98,000 empty bytes_contents (2 wire bytes each) made proto.Unmarshal
// allocate 60 bytes per wire byte. decodeRequest decodes a
// ModelInferRequest as proto.Unmarshal does (the same message, the same
// first error), but first counts the entries of every repeated field on
// the wire, then fills slices made at their final size: inputs (one array
// of messages), raw_input_contents, each input's shape and typed contents
// (bytes_contents sharing one copied backing array). What it leaves to
// proto.Unmarshal (with Merge, one run of consecutive fields at a time) is
// the scalar fields, the parameter maps, the requested outputs and unknown
// fields; the maps and outputs cost a message for two wire bytes, and are
// bounded by the limits below.

// The most inputs (and raw_input_contents), requested outputs and
// parameters (the request's, its inputs' and its outputs' together) a
// ModelInferRequest may have: far above what a model uses (tens of
// inputs; a few parameters an input, such as the shared memory ones), and
// low enough that their messages (about 100 bytes each, for 2 wire bytes)
// stay within a fixed cost.
const (
	maxInputs     = 1024
	maxOutputs    = 1024
	maxParameters = 4096
)

// maxRank is the most dimensions an input's shape may have (kiln's HTTP
// API takes as many).
const maxRank = 64

// minPooledRaw is the smallest raw input kept in the pool (whose buffers
// are rounded to rawGrain): smaller ones share one aligned buffer.
const minPooledRaw = 1 << 10

// LimitError is a request with more entries of a repeated field than
// kiln takes.
type LimitError struct {
	Of    string // "a request", "an input"
	What  string // "inputs", "requested outputs", "dimensions", ...
	Limit int
	Count int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s has at most %d %s, this one has %d", e.Of, e.Limit, e.What, e.Count)
}

// errWire is proto.Unmarshal's error for malformed wire data, in its own
// words.
var errWire = proto.Unmarshal([]byte{0x80}, &inference.InferParameter{})

var mergeOpts = proto.UnmarshalOptions{Merge: true}

// requestCounts is what scanRequest finds.
type requestCounts struct {
	inputs, outputs, raws int
	params                int // the request's own
	allParams             int // with its inputs' and outputs'
	smallRaw              int // bytes of the raw inputs under minPooledRaw, each aligned
}

// scanRequest counts the repeated fields of a ModelInferRequest's wire
// bytes, up to the first malformed field (where decoding stops too).
func scanRequest(b []byte) (c requestCounts) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return c
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return c
		}
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			switch num {
			case 4:
				c.params++
				c.allParams++
			case 5:
				c.inputs++
				c.allParams += countBytesFields(v, 4)
			case 6:
				c.outputs++
				c.allParams += countBytesFields(v, 2)
			case 7:
				c.raws++
				if len(v) < minPooledRaw {
					c.smallRaw += alignUp(len(v))
				}
			}
		}
		b = b[n+m:]
	}
	return c
}

func alignUp(n int) int {
	const a = int(tensor.Alignment)
	return (n + a - 1) / a * a
}

// countBytesFields counts the length-delimited fields num of message b.
func countBytesFields(b []byte, num protowire.Number) int {
	k := 0
	for len(b) > 0 {
		f, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return k
		}
		m := protowire.ConsumeFieldValue(f, typ, b[n:])
		if m < 0 {
			return k
		}
		if f == num && typ == protowire.BytesType {
			k++
		}
		b = b[n+m:]
	}
	return k
}

// checkLimits returns the LimitError of c, if any.
func (c requestCounts) checkLimits() error {
	switch {
	case c.inputs > maxInputs:
		return &LimitError{"a request", "inputs", maxInputs, c.inputs}
	case c.raws > maxInputs:
		return &LimitError{"a request", "raw_input_contents (one an input)", maxInputs, c.raws}
	case c.outputs > maxOutputs:
		return &LimitError{"a request", "requested outputs", maxOutputs, c.outputs}
	case c.allParams > maxParameters:
		return &LimitError{"a request", "parameters (its inputs' and outputs' included)", maxParameters, c.allParams}
	}
	return nil
}

// runs decodes message b into m field by field: the fields isHeavy names
// go to heavy (a length-delimited one's contents as v), the runs of other
// fields between them to proto.Unmarshal (Merge), in order, so that the
// first error is proto.Unmarshal's. Where a tag or a field cannot be
// parsed, the rest goes to proto.Unmarshal, which tells why in its words.
func runs(b []byte, m proto.Message, heavy func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	start, i := 0, 0
	for i < len(b) {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			break
		}
		k := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if k < 0 {
			break
		}
		end := i + n + k
		if isHeavy(m, num, typ) {
			if start < i {
				if err := mergeOpts.Unmarshal(b[start:i], m); err != nil {
					return err
				}
			}
			v := b[i+n : end]
			if typ == protowire.BytesType {
				v, _ = protowire.ConsumeBytes(v)
			}
			if err := heavy(num, typ, v); err != nil {
				return err
			}
			start = end
		}
		i = end
	}
	if start < len(b) {
		return mergeOpts.Unmarshal(b[start:], m)
	}
	return nil
}

// isHeavy reports whether field num of wire type typ of m is one that
// decodeRequest decodes itself (it must agree with the heavy functions).
func isHeavy(m proto.Message, num protowire.Number, typ protowire.Type) bool {
	switch m.(type) {
	case *inference.ModelInferRequest:
		return (num == 5 || num == 7) && typ == protowire.BytesType
	case *inference.ModelInferRequest_InferInputTensor:
		return num == 3 && (typ == protowire.VarintType || typ == protowire.BytesType) || num == 5 && typ == protowire.BytesType
	case *inference.InferTensorContents:
		return contentsType(num, typ)
	}
	return false
}

// contentsType reports whether typ is a wire type of InferTensorContents'
// field num: its own, or packed.
func contentsType(num protowire.Number, typ protowire.Type) bool {
	switch num {
	case 1, 2, 3, 4, 5:
		return typ == protowire.VarintType || typ == protowire.BytesType
	case 6:
		return typ == protowire.Fixed32Type || typ == protowire.BytesType
	case 7:
		return typ == protowire.Fixed64Type || typ == protowire.BytesType
	case 8:
		return typ == protowire.BytesType
	}
	return false
}

// oneInput is the memory of a one-input request's input (decodeRequest).
type oneInput struct {
	in   [1]inference.ModelInferRequest_InferInputTensor
	ins  [1]*inference.ModelInferRequest_InferInputTensor
	raws [1][]byte
}

// decodeRequest decodes b into r as proto.Unmarshal does, with the raw
// contents from 1 KiB to maxPooledRaw in pooled buffers (returned: the
// caller leases them to r).
func decodeRequest(b []byte, r *inference.ModelInferRequest) ([]*[]byte, error) {
	c := scanRequest(b)
	if err := c.checkLimits(); err != nil {
		return nil, err
	}
	proto.Reset(r)
	var inputs []inference.ModelInferRequest_InferInputTensor
	switch {
	case c.inputs == 1 && c.raws <= 1:
		// the usual request: one input, its raw contents; the input and
		// the two slices in one allocation
		w := &oneInput{}
		inputs, r.Inputs = w.in[:], w.ins[:0]
		if c.raws == 1 {
			r.RawInputContents = w.raws[:0]
		}
	case c.inputs > 0:
		inputs = make([]inference.ModelInferRequest_InferInputTensor, c.inputs)
		r.Inputs = make([]*inference.ModelInferRequest_InferInputTensor, 0, c.inputs)
	}
	if c.outputs > 0 {
		r.Outputs = make([]*inference.ModelInferRequest_InferRequestedOutputTensor, 0, c.outputs)
	}
	if c.params > 0 {
		r.Parameters = make(map[string]*inference.InferParameter, c.params)
	}
	if c.raws > 0 && r.RawInputContents == nil {
		r.RawInputContents = make([][]byte, 0, c.raws)
	}
	var small []byte // the raw inputs under minPooledRaw, each aligned
	if c.smallRaw > 0 {
		small = tensor.AlignedBytes(c.smallRaw)
	}
	var pooled []*[]byte
	err := runs(b, r, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == 7 {
			var dst []byte
			switch {
			case len(v) == 0:
				dst = []byte{}
			case len(v) < minPooledRaw && len(small) >= alignUp(len(v)):
				dst = small[:len(v):len(v)]
				small = small[alignUp(len(v)):]
			case len(v) >= minPooledRaw && len(v) <= maxPooledRaw:
				var p *[]byte
				p, dst = getRaw(len(v))
				pooled = append(pooled, p)
			default:
				dst = make([]byte, len(v))
			}
			copy(dst, v)
			r.RawInputContents = append(r.RawInputContents, dst)
			return nil
		}
		var in *inference.ModelInferRequest_InferInputTensor
		if len(inputs) > 0 {
			in, inputs = &inputs[0], inputs[1:]
		} else {
			in = &inference.ModelInferRequest_InferInputTensor{}
		}
		r.Inputs = append(r.Inputs, in)
		return decodeInput(v, in)
	})
	return pooled, err
}

// inputCounts is what scanInput finds in an input's wire bytes.
type inputCounts struct {
	shape      int
	contents   [9]int // entries of InferTensorContents' field i
	bytesTotal int    // bytes of its bytes_contents
}

func scanInput(b []byte) (c inputCounts) {
	each(b, func(num protowire.Number, typ protowire.Type, v []byte) {
		switch {
		case num == 3 && typ == protowire.VarintType:
			c.shape++
		case num == 3 && typ == protowire.BytesType:
			c.shape += countVarints(v)
		case num == 5 && typ == protowire.BytesType:
			each(v, func(num protowire.Number, typ protowire.Type, v []byte) {
				if !contentsType(num, typ) {
					return
				}
				switch {
				case num == 8:
					c.contents[8]++
					c.bytesTotal += len(v)
				case typ != protowire.BytesType:
					c.contents[num]++
				case num == 6:
					c.contents[num] += len(v) / 4
				case num == 7:
					c.contents[num] += len(v) / 8
				default:
					c.contents[num] += countVarints(v)
				}
			})
		}
	})
	return c
}

// each calls fn with each field of message b up to the first malformed
// one: its number, wire type and value (a length-delimited one's
// contents).
func each(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return
		}
		v := b[n : n+m]
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(v)
		}
		fn(num, typ, v)
		b = b[n+m:]
	}
}

// countVarints counts the varints of a packed field (their last bytes).
func countVarints(b []byte) int {
	k := 0
	for _, x := range b {
		if x < 0x80 {
			k++
		}
	}
	return k
}

// packed calls fn with each value of a packed field's contents v (varints,
// or fixed of size 4 or 8), or with the one value of an unpacked field.
func packed(typ protowire.Type, v []byte, size int, fn func(uint64)) error {
	if typ != protowire.BytesType {
		switch typ {
		case protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			fn(x)
		case protowire.Fixed32Type:
			x, _ := protowire.ConsumeFixed32(v)
			fn(uint64(x))
		default:
			x, _ := protowire.ConsumeFixed64(v)
			fn(x)
		}
		return nil
	}
	for len(v) > 0 {
		var x uint64
		var n int
		switch size {
		case 0:
			x, n = protowire.ConsumeVarint(v)
		case 4:
			var y uint32
			y, n = protowire.ConsumeFixed32(v)
			x = uint64(y)
		default:
			x, n = protowire.ConsumeFixed64(v)
		}
		if n < 0 {
			return errWire
		}
		fn(x)
		v = v[n:]
	}
	return nil
}

// decodeInput decodes an InferInputTensor's wire bytes b into in (empty),
// its shape and contents into slices of their final sizes.
func decodeInput(b []byte, in *inference.ModelInferRequest_InferInputTensor) error {
	c := scanInput(b)
	if c.shape > maxRank {
		return &LimitError{"an input", "dimensions", maxRank, c.shape}
	}
	if c.shape > 0 {
		in.Shape = make([]int64, 0, c.shape)
	}
	var backing []byte // bytes_contents' entries
	return runs(b, in, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == 3 {
			return packed(typ, v, 0, func(x uint64) { in.Shape = append(in.Shape, int64(x)) })
		}
		if in.Contents == nil {
			in.Contents = newContents(&c)
			if c.bytesTotal > 0 {
				backing = make([]byte, c.bytesTotal)
			}
		}
		t := in.Contents
		return runs(v, t, func(num protowire.Number, typ protowire.Type, v []byte) error {
			switch num {
			case 1:
				return packed(typ, v, 0, func(x uint64) { t.BoolContents = append(t.BoolContents, x != 0) })
			case 2:
				return packed(typ, v, 0, func(x uint64) { t.IntContents = append(t.IntContents, int32(x)) })
			case 3:
				return packed(typ, v, 0, func(x uint64) { t.Int64Contents = append(t.Int64Contents, int64(x)) })
			case 4:
				return packed(typ, v, 0, func(x uint64) { t.UintContents = append(t.UintContents, uint32(x)) })
			case 5:
				return packed(typ, v, 0, func(x uint64) { t.Uint64Contents = append(t.Uint64Contents, x) })
			case 6:
				return packed(typ, v, 4, func(x uint64) { t.Fp32Contents = append(t.Fp32Contents, math.Float32frombits(uint32(x))) })
			case 7:
				return packed(typ, v, 8, func(x uint64) { t.Fp64Contents = append(t.Fp64Contents, math.Float64frombits(x)) })
			}
			var e []byte
			if len(backing) >= len(v) {
				e, backing = backing[:len(v):len(v)], backing[len(v):]
			} else {
				e = make([]byte, len(v))
			}
			copy(e, v)
			t.BytesContents = append(t.BytesContents, e)
			return nil
		})
	})
}

// newContents makes an InferTensorContents whose slices have the
// capacities c counted.
func newContents(c *inputCounts) *inference.InferTensorContents {
	t := &inference.InferTensorContents{}
	n := c.contents
	if n[1] > 0 {
		t.BoolContents = make([]bool, 0, n[1])
	}
	if n[2] > 0 {
		t.IntContents = make([]int32, 0, n[2])
	}
	if n[3] > 0 {
		t.Int64Contents = make([]int64, 0, n[3])
	}
	if n[4] > 0 {
		t.UintContents = make([]uint32, 0, n[4])
	}
	if n[5] > 0 {
		t.Uint64Contents = make([]uint64, 0, n[5])
	}
	if n[6] > 0 {
		t.Fp32Contents = make([]float32, 0, n[6])
	}
	if n[7] > 0 {
		t.Fp64Contents = make([]float64, 0, n[7])
	}
	if n[8] > 0 {
		t.BytesContents = make([][]byte, 0, n[8])
	}
	return t
}
