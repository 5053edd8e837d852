package httpapi

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// ErrDecode is returned for a request body that is not a valid KServe v2
// inference request.
var ErrDecode = errors.New("httpapi: bad inference request")

// ErrBodyTimeout is returned when a request's body did not arrive before
// the connection's read deadline (the HTTP server's read timeout).
var ErrBodyTimeout = errors.New("httpapi: the request body did not arrive in time")

var dtypeNames = map[string]tensor.DType{
	"BOOL": tensor.Bool, "UINT8": tensor.Uint8, "UINT16": tensor.Uint16, "UINT32": tensor.Uint32,
	"UINT64": tensor.Uint64, "INT8": tensor.Int8, "INT16": tensor.Int16, "INT32": tensor.Int32,
	"INT64": tensor.Int64, "FP16": tensor.Float16, "FP32": tensor.Float32, "FP64": tensor.Float64,
	"BYTES": tensor.String, "BF16": tensor.BFloat16,
}

// DataTypeName returns the KServe v2 name of dt ("FP32").
func DataTypeName(dt tensor.DType) string {
	for k, v := range dtypeNames {
		if v == dt {
			return k
		}
	}
	return "INVALID"
}

// maxParamsBytes bounds the JSON text of one "parameters" object.
const maxParamsBytes = 64 << 10

// maxRank bounds the number of dimensions of a declared shape.
const maxRank = 64

// maxDataDepth bounds the nesting of an input's data arrays.
const maxDataDepth = 32

// Decoded is a decoded inference request.
type Decoded struct {
	ID     string
	Inputs map[string]*tensor.Tensor
	// Outputs are the outputs asked for (empty: all).
	Outputs []string
	// Binary tells, per output, whether to return it as binary data.
	Binary map[string]bool
	// BinaryDefault is the request's binary_data_output parameter.
	BinaryDefault bool
	// Classes are the outputs' classification parameters (the
	// classification extension: the top classes instead of the tensor).
	Classes map[string]int
	// Priority and TimeoutMicros are the request parameters "priority" and "timeout".
	Priority      int
	TimeoutMicros int64
	// Sequence are the parameters sequence_id, sequence_start and
	// sequence_end (stateful models).
	Sequence serve.Sequence
	// ShmInputs are the inputs in shared memory (shared_memory_region),
	// read by the handler; OutputShm the outputs to write there.
	ShmInputs []ShmInput
	OutputShm map[string]serve.ShmRef
}

// Schema describes the inputs a model takes, so that the inputs a request
// declares (name, datatype, shape) are checked before their data is read
// or decoded.
type Schema struct {
	// Model names the model in error messages.
	Model string
	// Inputs are the model's inputs; their Dims exclude the batch
	// dimension when MaxBatchSize > 0, -1 is a variable dimension.
	Inputs []repository.IO
	// MaxBatchSize > 0 means every input has a leading batch dimension of
	// 1..MaxBatchSize.
	MaxBatchSize int
	// Outputs are the model's outputs, which a request may ask for.
	Outputs []repository.IO
	// Shape, when set, checks an input's whole declared shape (batch
	// dimension included) against what the engine was built for (its
	// profiles, the bounds of its symbolic dimensions), before any of the
	// input's data is decoded; its errors wrap serve.ErrInvalid.
	Shape func(input string, shape []int) error
}

// SchemaOf returns the schema of a model's config.
func SchemaOf(cfg *repository.Config) *Schema {
	return &Schema{Model: cfg.Name, Inputs: cfg.Inputs, MaxBatchSize: cfg.MaxBatchSize, Outputs: cfg.Outputs}
}

// schemaOf is SchemaOf with the served engine's own shape check.
func (h *handler) schemaOf(cfg *repository.Config, model, ver string) *Schema {
	sc := SchemaOf(cfg)
	sc.Shape = func(input string, shape []int) error { return h.s.CheckShape(model, ver, input, shape) }
	return sc
}

// checkOutput checks the name of an output a request asks for; a nil
// schema accepts every name. Its errors wrap serve.ErrInvalid.
func (sc *Schema) checkOutput(name string) error {
	if sc == nil || slices.ContainsFunc(sc.Outputs, func(o repository.IO) bool { return o.Name == name }) {
		return nil
	}
	return fmt.Errorf("%w: model %s has no output %q", serve.ErrInvalid, sc.Model, name)
}

// check checks an input's declared name, datatype and shape; a nil schema
// accepts everything. Its errors wrap serve.ErrInvalid.
func (sc *Schema) check(name string, dt tensor.DType, shape []int) error {
	if sc == nil {
		return nil
	}
	i := slices.IndexFunc(sc.Inputs, func(in repository.IO) bool { return in.Name == name })
	if i < 0 {
		return fmt.Errorf("%w: model %s has no input %q", serve.ErrInvalid, sc.Model, name)
	}
	in := sc.Inputs[i]
	if dt != in.DataType {
		return fmt.Errorf("%w: input %q is %s, model %s wants %s", serve.ErrInvalid, name, DataTypeName(dt), sc.Model, DataTypeName(in.DataType))
	}
	dims := shape
	if sc.MaxBatchSize > 0 {
		if len(dims) == 0 || dims[0] < 1 || dims[0] > sc.MaxBatchSize {
			return fmt.Errorf("%w: input %q shape %v: batch size must be 1..%d", serve.ErrInvalid, name, shape, sc.MaxBatchSize)
		}
		dims = dims[1:]
	}
	if len(in.Dims) == 0 && sc.MaxBatchSize > 0 {
		return nil
	}
	wrong := len(dims) != len(in.Dims)
	for j := 0; !wrong && j < len(dims); j++ {
		wrong = in.Dims[j] >= 0 && int64(dims[j]) != in.Dims[j]
	}
	if wrong {
		want := in.Dims
		if sc.MaxBatchSize > 0 {
			want = append([]int64{-1}, in.Dims...)
		}
		return fmt.Errorf("%w: input %q shape %v does not match model %s's %v (-1: any size)", serve.ErrInvalid, name, shape, sc.Model, want)
	}
	if sc.Shape != nil {
		return sc.Shape(name, shape)
	}
	return nil
}

func paramInt(p map[string]any, key string) (int64, bool, error) {
	v, ok := p[key]
	if !ok {
		return 0, false, nil
	}
	f, isNum := v.(float64)
	if !isNum || f != math.Trunc(f) || f < 0 || f > 1<<53 {
		return 0, true, fmt.Errorf("%w: parameter %q must be a non-negative integer", ErrDecode, key)
	}
	return int64(f), true, nil
}

func paramBool(p map[string]any, key string) (bool, error) {
	v, ok := p[key]
	if !ok {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, fmt.Errorf("%w: parameter %q must be true or false", ErrDecode, key)
	}
	return b, nil
}

// binaryInput is an input whose data follows the JSON header (binary
// tensor data extension).
type binaryInput struct {
	name  string
	dt    tensor.DType
	shape []int
	size  int64
}

// DecodeRequest decodes a KServe v2 request body. headerLen is the
// Inference-Header-Content-Length (-1 when absent: the body is all JSON);
// binary tensor data follows the JSON header in input order.
func DecodeRequest(body []byte, headerLen int) (*Decoded, error) {
	return DecodeRequestFor(body, headerLen, nil)
}

// DecodeRequestFor is DecodeRequest checking each input's declared name,
// datatype and shape against schema (nil: no check) before its data is
// decoded. Numbers are decoded in place into the tensors' buffers: the
// decoding allocates the tensors, the request's strings and a constant.
func DecodeRequestFor(body []byte, headerLen int, schema *Schema) (*Decoded, error) {
	if headerLen < 0 {
		headerLen = len(body)
	}
	if headerLen > len(body) {
		return nil, fmt.Errorf("%w: %s %d exceeds the body (%d bytes)", ErrDecode, HeaderLength, headerLen, len(body))
	}
	d, bins, err := decodeHeader(body[:headerLen], schema)
	if err != nil {
		return nil, err
	}
	rest := body[headerLen:]
	for _, b := range bins {
		if b.size > int64(len(rest)) {
			return nil, fmt.Errorf("%w: input %q: binary_data_size %d but %d bytes left in the body", ErrDecode, b.name, b.size, len(rest))
		}
		t, err := fromBinary(b.dt, b.shape, rest[:b.size])
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", ErrDecode, b.name, err)
		}
		d.Inputs[b.name] = t
		rest = rest[b.size:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes of binary data not claimed by any input", ErrDecode, len(rest))
	}
	return d, nil
}

// ReadRequest reads and decodes a request body from r: length is the
// body's length (-1: unknown), headerLen the Inference-Header-Content-Length
// (-1: absent), limit the most bytes the body may have. It checks the
// declared inputs against schema (nil: no check) before reading their
// data: binary tensor data is read straight into the tensors' buffers, so
// the memory held is the JSON header (or the JSON body) and the tensors.
// A body longer than limit is an *http.MaxBytesError.
func ReadRequest(r io.Reader, length int64, headerLen int, limit int64, schema *Schema) (*Decoded, error) {
	if length >= 0 && int64(headerLen) > length {
		return nil, fmt.Errorf("%w: %s %d exceeds the body (%d bytes)", ErrDecode, HeaderLength, headerLen, length)
	}
	if length > limit || int64(headerLen) > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	readErr := func(what string, err error) error {
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%w: the body ended before %s", ErrDecode, what)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("%w: reading %s: %w", ErrBodyTimeout, what, err)
		}
		return fmt.Errorf("%w: reading %s: %w", ErrDecode, what, err)
	}
	if headerLen < 0 {
		body, pooled, err := readBody(r, length)
		if err != nil {
			return nil, readErr("its end", err)
		}
		d, err := DecodeRequestFor(body, -1, schema)
		putBody(pooled, body)
		return d, err
	}
	hdr, pooled, err := readBody(r, int64(headerLen))
	if err != nil {
		return nil, readErr("the end of its JSON header", err)
	}
	d, bins, err := decodeHeader(hdr, schema)
	putBody(pooled, hdr)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, b := range bins {
		total += b.size
	}
	switch {
	case total > limit-int64(headerLen):
		return nil, fmt.Errorf("%w: the inputs declare %d bytes of binary data, more than the %d-byte request limit allows", ErrDecode, total, limit)
	case length >= 0 && total != length-int64(headerLen):
		return nil, fmt.Errorf("%w: the inputs declare %d bytes of binary data, the body has %d after its JSON header", ErrDecode, total, length-int64(headerLen))
	}
	for _, b := range bins {
		var t *tensor.Tensor
		if b.dt == tensor.String {
			var buf []byte
			if buf, err = readGrowing(r, b.size); err != nil {
				return nil, readErr(fmt.Sprintf("the binary data of input %q", b.name), err)
			}
			t, err = fromBinary(b.dt, b.shape, buf)
		} else {
			// binary sizes were checked against the shapes in decodeHeader
			var data []byte
			if b.size <= growFrom {
				data = tensor.AlignedBytes(int(b.size))
				_, err = io.ReadFull(r, data)
			} else {
				data, err = readGrowing(r, b.size)
				if err == nil && uintptr(unsafe.Pointer(unsafe.SliceData(data)))%tensor.Alignment != 0 {
					data = append(tensor.AlignedBytes(len(data))[:0], data...)
				}
			}
			if err != nil {
				return nil, readErr(fmt.Sprintf("the binary data of input %q", b.name), err)
			}
			t, err = wrapBinary(b.dt, b.shape, data)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", ErrDecode, b.name, err)
		}
		d.Inputs[b.name] = t
	}
	var one [1]byte
	if n, _ := io.ReadFull(r, one[:]); n > 0 {
		return nil, fmt.Errorf("%w: binary data not claimed by any input follows the inputs' %d bytes", ErrDecode, total)
	}
	return d, nil
}

// maxPooledBody is the largest body (or JSON header) read into a pooled
// buffer.
const maxPooledBody = 1 << 20

// bodies are the buffers request bodies are read into: a decoded request
// keeps nothing of its body (numbers are decoded into the tensors, strings
// copied), so the buffer serves the next request.
var bodies = sync.Pool{New: func() any { return new([]byte) }}

// readBody reads n bytes (n < 0: up to EOF) from r, into a pooled buffer
// when n is known and at most maxPooledBody; pooled is that buffer (nil:
// none), to be given back with putBody once the bytes are decoded.
func readBody(r io.Reader, n int64) (b []byte, pooled *[]byte, err error) {
	if n < 0 || n > maxPooledBody {
		b, err = readGrowing(r, n)
		return b, nil, err
	}
	pooled = bodies.Get().(*[]byte)
	if int64(cap(*pooled)) < n {
		*pooled = make([]byte, n)
	}
	b = (*pooled)[:n]
	if _, err = io.ReadFull(r, b); err != nil {
		putBody(pooled, b)
		return nil, nil, err
	}
	return b, pooled, nil
}

// putBody gives a buffer of readBody back to the pool.
func putBody(pooled *[]byte, b []byte) {
	if pooled != nil {
		*pooled = b[:0]
		bodies.Put(pooled)
	}
}

// growFrom is the first buffer size of readGrowing.
const growFrom = 1 << 20

// readGrowing reads n bytes (n < 0: up to EOF) from r into a buffer that
// grows, doubling, with what arrives: a client that declares a large body
// and sends little holds little memory, and a body that comes costs at most
// twice its size in allocations.
func readGrowing(r io.Reader, n int64) ([]byte, error) {
	c := int64(growFrom)
	if n >= 0 {
		c = min(c, n)
	}
	buf := make([]byte, 0, c)
	for int64(len(buf)) != n {
		if len(buf) == cap(buf) {
			c := max(2*int64(cap(buf)), 512)
			if n >= 0 {
				c = min(c, n)
			}
			buf = append(make([]byte, 0, c), buf...)
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		switch {
		case err == io.EOF && n < 0:
			return buf, nil
		case err == io.EOF && int64(len(buf)) != n:
			return nil, io.ErrUnexpectedEOF
		case err != nil && err != io.EOF:
			return nil, err
		}
	}
	return buf, nil
}

// reqDecoder decodes the JSON header of a request.
type reqDecoder struct {
	s      scanner
	schema *Schema
	d      *Decoded
	bins   []binaryInput
	names  map[string]bool
	// outNames are the outputs asked for so far
	outNames map[string]bool
}

// decodeHeader decodes the JSON of a request: the inputs sent as JSON
// data are decoded, those sent as binary data are returned in order.
func decodeHeader(hdr []byte, schema *Schema) (*Decoded, []binaryInput, error) {
	r := &reqDecoder{s: scanner{b: hdr}, schema: schema, names: map[string]bool{}, outNames: map[string]bool{},
		d: &Decoded{Inputs: map[string]*tensor.Tensor{}, Binary: map[string]bool{}}}
	if err := r.request(); err != nil {
		if errors.Is(err, serve.ErrInvalid) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return r.d, r.bins, nil
}

func (r *reqDecoder) request() error {
	s := &r.s
	if err := s.expect('{'); err != nil {
		return err
	}
	var params map[string]any
	var seen [4]bool
	known := [4]string{"id", "parameters", "inputs", "outputs"}
	if s.first('}') {
		for {
			key, err := s.strBytes()
			if err != nil {
				return err
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			k := slices.Index(known[:], string(key))
			if k >= 0 {
				if seen[k] {
					return fmt.Errorf("%q given twice", known[k])
				}
				seen[k] = true
			}
			switch k {
			case 0:
				if s.peek() != '"' {
					return errors.New(`"id" must be a string`)
				}
				r.d.ID, err = s.str()
			case 1:
				params, err = s.params()
			case 2:
				err = r.inputs()
			case 3:
				err = r.outputs()
			default:
				err = s.skip(1)
			}
			if err != nil {
				return err
			}
			if more, err := s.more('}'); err != nil {
				return err
			} else if !more {
				break
			}
		}
	}
	if err := s.end(); err != nil {
		return err
	}
	if len(r.names) == 0 {
		return errors.New("no inputs")
	}
	var err error
	if r.d.BinaryDefault, err = paramBool(params, "binary_data_output"); err != nil {
		return err
	}
	p, _, err := paramInt(params, "priority")
	if err != nil {
		return err
	}
	if p > 1<<20 {
		return fmt.Errorf("priority %d", p)
	}
	r.d.Priority = int(p)
	if r.d.TimeoutMicros, _, err = paramInt(params, "timeout"); err != nil {
		return err
	}
	r.d.Sequence, err = paramSequence(params)
	return err
}

// paramSequence reads the sequence parameters: sequence_id (a uint64 or a
// string; kept as its JSON text by params), sequence_start, sequence_end.
func paramSequence(p map[string]any) (serve.Sequence, error) {
	var q serve.Sequence
	if raw, ok := p["sequence_id"].(json.RawMessage); ok {
		if len(raw) > 0 && raw[0] == '"' {
			if err := json.Unmarshal(raw, &q.Name); err != nil {
				return q, fmt.Errorf("%w: parameter \"sequence_id\": %v", ErrDecode, err)
			}
		} else if n, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
			q.ID = n
		} else {
			return q, fmt.Errorf("%w: parameter \"sequence_id\" must be an unsigned 64-bit integer or a string, not %s", ErrDecode, raw)
		}
	}
	var err error
	if q.Start, err = paramBool(p, "sequence_start"); err != nil {
		return q, err
	}
	q.End, err = paramBool(p, "sequence_end")
	return q, err
}

// params reads a "parameters" object (or null) into a map.
func (s *scanner) params() (map[string]any, error) {
	if s.peek() == 'n' && s.literal("null") {
		return nil, nil
	}
	if s.peek() != '{' {
		return nil, s.errorf(`"parameters" must be an object`)
	}
	start := s.pos
	if err := s.skip(1); err != nil {
		return nil, err
	}
	raw := s.b[start:s.pos]
	if len(raw) > maxParamsBytes {
		return nil, fmt.Errorf("a parameters object of %d bytes (at most %d)", len(raw), maxParamsBytes)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if _, ok := m["sequence_id"]; ok {
		// a uint64 id is kept exact (not as a float64)
		var id struct {
			ID json.RawMessage `json:"sequence_id"`
		}
		if err := json.Unmarshal(raw, &id); err != nil {
			return nil, err
		}
		m["sequence_id"] = id.ID
	}
	return m, nil
}

func (r *reqDecoder) outputs() error {
	s := &r.s
	if s.literal("null") {
		return nil
	}
	if err := s.expect('['); err != nil {
		return err
	}
	if !s.first(']') {
		return nil
	}
	for {
		if err := s.expect('{'); err != nil {
			return err
		}
		var name string
		var params map[string]any
		named := false
		if s.first('}') {
			for {
				key, err := s.strBytes()
				if err != nil {
					return err
				}
				if err := s.expect(':'); err != nil {
					return err
				}
				switch string(key) {
				case "name":
					if s.peek() != '"' {
						return errors.New(`an output's "name" must be a string`)
					}
					name, err = s.str()
					named = true
				case "parameters":
					params, err = s.params()
				default:
					err = s.skip(2)
				}
				if err != nil {
					return err
				}
				if more, err := s.more('}'); err != nil {
					return err
				} else if !more {
					break
				}
			}
		}
		if !named {
			return errors.New("an output has no name")
		}
		if err := r.schema.checkOutput(name); err != nil {
			return err
		}
		if r.outNames[name] {
			return fmt.Errorf("output %q asked for twice", name)
		}
		r.outNames[name] = true
		b, err := paramBool(params, "binary_data")
		if err != nil {
			return fmt.Errorf("output %q: %w", name, err)
		}
		r.d.Outputs = append(r.d.Outputs, name)
		if _, set := params["binary_data"]; set {
			r.d.Binary[name] = b
		}
		// "classification" is the parameter on the wire (Triton's clients
		// send their class_count argument as it); "class_count" is taken too
		for _, key := range []string{"classification", "class_count"} {
			k, set, err := paramInt(params, key)
			if err != nil {
				return fmt.Errorf("output %q: %w", name, err)
			}
			if set && k > 0 {
				if k > serve.MaxClassCount {
					return fmt.Errorf("output %q: %s %d is above %d", name, key, k, serve.MaxClassCount)
				}
				if r.d.Classes == nil {
					r.d.Classes = map[string]int{}
				}
				r.d.Classes[name] = int(k)
			}
		}
		if ref, ok, err := shmRef(params); err != nil {
			return fmt.Errorf("output %q: %w", name, err)
		} else if ok {
			if r.d.OutputShm == nil {
				r.d.OutputShm = map[string]serve.ShmRef{}
			}
			r.d.OutputShm[name] = ref
		}
		if more, err := s.more(']'); err != nil || !more {
			return err
		}
	}
}

func (r *reqDecoder) inputs() error {
	s := &r.s
	if s.literal("null") {
		return nil
	}
	if err := s.expect('['); err != nil {
		return err
	}
	if !s.first(']') {
		return nil
	}
	for {
		if err := r.input(); err != nil {
			return err
		}
		if more, err := s.more(']'); err != nil || !more {
			return err
		}
	}
}

// inputDecl is an input as its JSON object declares it.
type inputDecl struct {
	name   string
	dt     tensor.DType
	shape  []int
	params map[string]any
	seen   [5]bool // name, shape, datatype, parameters, data
	// dataAt and dataEnd delimit a data value met before the input's name,
	// shape and datatype; it is decoded once they are known.
	dataAt, dataEnd int
	t               *tensor.Tensor
}

func (in *inputDecl) declared() bool { return in.seen[0] && in.seen[1] && in.seen[2] }

// input reads one input object.
func (r *reqDecoder) input() error {
	s := &r.s
	if err := s.expect('{'); err != nil {
		return err
	}
	in := inputDecl{dataAt: -1}
	keys := [5]string{"name", "shape", "datatype", "parameters", "data"}
	if s.first('}') {
		for {
			key, err := s.strBytes()
			if err != nil {
				return err
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			k := slices.Index(keys[:], string(key))
			if k >= 0 {
				if in.seen[k] {
					return fmt.Errorf("an input gives %q twice", keys[k])
				}
				in.seen[k] = true
			}
			switch k {
			case 0:
				if s.peek() != '"' {
					return errors.New(`an input's "name" must be a string`)
				}
				in.name, err = s.str()
			case 1:
				in.shape, err = s.shape()
			case 2:
				var b []byte
				if b, err = s.strBytes(); err == nil {
					var ok bool
					if in.dt, ok = dtypeNames[string(b)]; !ok {
						err = fmt.Errorf("unknown datatype %q", b)
					}
				}
			case 3:
				in.params, err = s.params()
			case 4:
				if in.declared() {
					// the usual order: the data can be checked and
					// decoded at once
					if err = r.declare(&in); err == nil {
						in.t, err = decodeData(s, in.dt, in.shape, len(s.b)-s.pos)
					}
				} else {
					s.ws()
					in.dataAt = s.pos
					err = s.skip(1)
					in.dataEnd = s.pos
				}
			default:
				err = s.skip(2)
			}
			if err != nil {
				if in.name != "" && !errors.Is(err, serve.ErrInvalid) {
					return fmt.Errorf("input %q: %w", in.name, err)
				}
				return err
			}
			if more, err := s.more('}'); err != nil {
				return err
			} else if !more {
				break
			}
		}
	}
	switch {
	case !in.seen[0]:
		return errors.New("an input has no name")
	case !in.seen[2]:
		return fmt.Errorf("input %q has no datatype", in.name)
	case !in.seen[1]:
		return fmt.Errorf("input %q has no shape", in.name)
	}
	if in.t == nil {
		if err := r.declare(&in); err != nil {
			return err
		}
	}
	if ref, ok, err := shmRef(in.params); err != nil {
		return fmt.Errorf("input %q: %w", in.name, err)
	} else if ok {
		if in.seen[4] {
			return fmt.Errorf("input %q has both data and %s", in.name, serve.ShmParams[0])
		}
		r.d.ShmInputs = append(r.d.ShmInputs, ShmInput{Name: in.name, DType: in.dt, Shape: in.shape, Ref: ref})
		return nil
	}
	size, isBinary, err := paramInt(in.params, "binary_data_size")
	if err != nil {
		return fmt.Errorf("input %q: %w", in.name, err)
	}
	if isBinary {
		if in.seen[4] {
			return fmt.Errorf("input %q has both data and binary_data_size", in.name)
		}
		if n := int64(tensor.NumElements(in.shape)); in.dt != tensor.String && size != n*int64(in.dt.Size()) {
			return fmt.Errorf("input %q: binary_data_size %d, shape %v of %s needs %d", in.name, size, in.shape, DataTypeName(in.dt), n*int64(in.dt.Size()))
		}
		r.bins = append(r.bins, binaryInput{name: in.name, dt: in.dt, shape: in.shape, size: size})
		return nil
	}
	if in.t == nil {
		if in.dataAt < 0 {
			return fmt.Errorf("input %q: no data", in.name)
		}
		ds := scanner{b: s.b[:in.dataEnd], pos: in.dataAt}
		if in.t, err = decodeData(&ds, in.dt, in.shape, in.dataEnd-in.dataAt); err != nil {
			return fmt.Errorf("input %q: %w", in.name, err)
		}
	}
	r.d.Inputs[in.name] = in.t
	return nil
}

// declare records an input's name and checks its declaration.
func (r *reqDecoder) declare(in *inputDecl) error {
	if in.name == "" {
		return errors.New("an input has an empty name")
	}
	if r.names[in.name] {
		return fmt.Errorf("input %q given twice", in.name)
	}
	r.names[in.name] = true
	return r.schema.check(in.name, in.dt, in.shape)
}

// shape reads a shape: an array of non-negative integers.
func (s *scanner) shape() ([]int, error) {
	if err := s.expect('['); err != nil {
		return nil, err
	}
	shape := make([]int, 0, 4)
	if s.first(']') {
		for {
			tok, integer, err := s.number()
			if err != nil {
				return nil, err
			}
			v, perr := strconv.ParseInt(unsafeString(tok), 10, 64)
			if !integer || perr != nil || v < 0 || v > tensor.MaxElements {
				return nil, fmt.Errorf("bad dimension %s in a shape", tok)
			}
			if len(shape) == maxRank {
				return nil, fmt.Errorf("a shape of more than %d dimensions", maxRank)
			}
			shape = append(shape, int(v))
			if more, err := s.more(']'); err != nil {
				return nil, err
			} else if !more {
				break
			}
		}
	}
	if err := tensor.CheckShape(shape); err != nil {
		return nil, err
	}
	return shape, nil
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// decodeData decodes a data value (nested arrays, or one element) of
// avail bytes at most into a new tensor, in place. Every element takes at
// least one byte and every separator one more, so a shape that declares
// more elements than avail bytes can hold is refused before anything is
// allocated.
func decodeData(s *scanner, dt tensor.DType, shape []int, avail int) (*tensor.Tensor, error) {
	n := tensor.NumElements(shape)
	if n > avail/2+1 {
		return nil, fmt.Errorf("shape %v declares %d elements, more than %d bytes of JSON data can hold", shape, n, avail)
	}
	t, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, err
	}
	w := dataWriter{n: n, shape: shape, put: setter(t)}
	if err := w.value(s, 0); err != nil {
		return nil, err
	}
	if w.i != n {
		return nil, fmt.Errorf("%d data elements for shape %v (%d elements)", w.i, shape, n)
	}
	return t, nil
}

type dataWriter struct {
	i, n  int
	shape []int
	put   func(s *scanner, i int) error
}

func (w *dataWriter) value(s *scanner, depth int) error {
	if s.peek() != '[' {
		if w.i >= w.n {
			return fmt.Errorf("more data elements than shape %v holds", w.shape)
		}
		if err := w.put(s, w.i); err != nil {
			return fmt.Errorf("element %d: %w", w.i, err)
		}
		w.i++
		return nil
	}
	if depth >= maxDataDepth {
		return fmt.Errorf("data nested deeper than %d", maxDataDepth)
	}
	s.pos++
	if !s.first(']') {
		return nil
	}
	for {
		if err := w.value(s, depth+1); err != nil {
			return err
		}
		if more, err := s.more(']'); err != nil || !more {
			return err
		}
	}
}

// float reads a number as a float of bits bits (32 or 64), rounded as
// strconv.ParseFloat rounds it.
func (s *scanner) float(dt tensor.DType, bits int) (float64, error) {
	tok, f, exact, err := s.decimal()
	if err != nil {
		return 0, err
	}
	if exact && bits == 64 {
		return f, nil
	}
	if exact && float32Exact(f) {
		return float64(float32(f)), nil
	}
	f, err = strconv.ParseFloat(unsafeString(tok), bits)
	if err != nil {
		return 0, fmt.Errorf("%s is out of range for %s", tok, DataTypeName(dt))
	}
	return f, nil
}

// float32Exact reports whether float32(f), for f the correctly rounded
// float64 of a decimal d, is also d correctly rounded to float32. Rounding
// twice differs from rounding once only when f falls on a midpoint between
// two float32s (a float32 midpoint strictly between d and f would be a
// float64 nearer to d than f): f must not be one, and must be a normal
// float32 (the midpoints of subnormals lie elsewhere).
func float32Exact(f float64) bool {
	a := math.Abs(f)
	if a == 0 {
		return true
	}
	if a < 0x1p-126 || a >= math.MaxFloat32 {
		return false
	}
	// float64 has 52 fraction bits and float32 23: the 29 below are what
	// rounding to float32 drops, and a midpoint has them 100...0
	return math.Float64bits(f)&(1<<29-1) != 1<<28
}

func intSetter[T int8 | int16 | int32 | int64](v []T, dt tensor.DType, bits int) func(*scanner, int) error {
	return func(s *scanner, i int) error {
		tok, integer, err := s.number()
		if err != nil {
			return err
		}
		if !integer {
			return fmt.Errorf("%s is not an integer", tok)
		}
		x, err := strconv.ParseInt(unsafeString(tok), 10, bits)
		if err != nil {
			return fmt.Errorf("%s is out of range for %s", tok, DataTypeName(dt))
		}
		v[i] = T(x)
		return nil
	}
}

func uintSetter[T uint8 | uint16 | uint32 | uint64](v []T, dt tensor.DType, bits int) func(*scanner, int) error {
	return func(s *scanner, i int) error {
		tok, integer, err := s.number()
		if err != nil {
			return err
		}
		if !integer {
			return fmt.Errorf("%s is not an integer", tok)
		}
		x, err := strconv.ParseUint(unsafeString(tok), 10, bits)
		if err != nil {
			return fmt.Errorf("%s is out of range for %s", tok, DataTypeName(dt))
		}
		v[i] = T(x)
		return nil
	}
}

// setter returns the function that reads element i of t from s.
func setter(t *tensor.Tensor) func(s *scanner, i int) error {
	switch dt := t.DType; dt {
	case tensor.Float32:
		v := t.Float32s()
		return func(s *scanner, i int) error {
			f, err := s.float(dt, 32)
			v[i] = float32(f)
			return err
		}
	case tensor.Float64:
		v := t.Float64s()
		return func(s *scanner, i int) error {
			f, err := s.float(dt, 64)
			v[i] = f
			return err
		}
	case tensor.Float16:
		v := t.Halfs()
		return func(s *scanner, i int) error {
			f, err := s.float(dt, 32)
			v[i] = tensor.Float32ToHalf(float32(f))
			return err
		}
	case tensor.BFloat16:
		v := t.BHalfs()
		return func(s *scanner, i int) error {
			f, err := s.float(dt, 32)
			v[i] = tensor.Float32ToBF16(float32(f))
			return err
		}
	case tensor.Bool:
		v := t.Bools()
		return func(s *scanner, i int) error {
			switch {
			case s.literal("true"):
				v[i] = true
			case s.literal("false"):
			default:
				return errors.New("want true or false")
			}
			return nil
		}
	case tensor.String:
		return func(s *scanner, i int) error {
			if s.peek() != '"' {
				return errors.New("want a string")
			}
			var err error
			t.Strings[i], err = s.str()
			return err
		}
	case tensor.Int8:
		return intSetter(t.Int8s(), dt, 8)
	case tensor.Int16:
		return intSetter(t.Int16s(), dt, 16)
	case tensor.Int32:
		return intSetter(t.Int32s(), dt, 32)
	case tensor.Int64:
		return intSetter(t.Int64s(), dt, 64)
	case tensor.Uint8:
		return uintSetter(t.Uint8s(), dt, 8)
	case tensor.Uint16:
		return uintSetter(t.Uint16s(), dt, 16)
	case tensor.Uint32:
		return uintSetter(t.Uint32s(), dt, 32)
	case tensor.Uint64:
		return uintSetter(t.Uint64s(), dt, 64)
	}
	return func(*scanner, int) error { return fmt.Errorf("unsupported datatype %s", DataTypeName(t.DType)) }
}

// wrapBinary makes a tensor of data, an aligned buffer of its own.
func wrapBinary(dt tensor.DType, shape []int, data []byte) (*tensor.Tensor, error) {
	if n := tensor.NumElements(shape) * dt.Size(); len(data) != n {
		return nil, fmt.Errorf("%d bytes of binary data, shape %v of %s needs %d", len(data), shape, DataTypeName(dt), n)
	}
	if dt == tensor.Bool {
		for _, c := range data {
			if c > 1 {
				return nil, fmt.Errorf("BOOL byte %d is neither 0 nor 1", c)
			}
		}
	}
	return tensor.FromBytes(dt, shape, data)
}

func fromBinary(dt tensor.DType, shape []int, b []byte) (*tensor.Tensor, error) {
	if dt != tensor.String {
		if n := tensor.NumElements(shape) * dt.Size(); len(b) != n {
			return nil, fmt.Errorf("%d bytes of binary data, shape %v of %s needs %d", len(b), shape, DataTypeName(dt), n)
		}
		data := tensor.AlignedBytes(len(b))
		copy(data, b)
		return wrapBinary(dt, shape, data)
	}
	n := tensor.NumElements(shape)
	if n > len(b)/4 && n > 0 {
		return nil, fmt.Errorf("%d bytes cannot hold %d BYTES elements", len(b), n)
	}
	t := &tensor.Tensor{DType: tensor.String, Shape: shape, Strings: make([]string, 0, n)}
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("truncated BYTES length prefix")
		}
		l := binary.LittleEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return nil, fmt.Errorf("BYTES element of %d bytes overruns the data", l)
		}
		if len(t.Strings) == n {
			return nil, fmt.Errorf("more BYTES elements than shape %v holds", shape)
		}
		t.Strings = append(t.Strings, string(b[4:4+l]))
		b = b[4+l:]
	}
	if len(t.Strings) != n {
		return nil, fmt.Errorf("%d BYTES elements for shape %v", len(t.Strings), shape)
	}
	return t, nil
}

// jsonData returns the elements of t as JSON-encodable values.
func jsonData(t *tensor.Tensor) any {
	if t.DType.IsFloat() && !allFinite(t) {
		return nonFinite.values(t)
	}
	switch t.DType {
	case tensor.String:
		return t.Strings
	case tensor.Bool:
		return t.Bools()
	case tensor.Float32:
		return t.Float32s()
	case tensor.Float64:
		return t.Float64s()
	case tensor.Float16, tensor.BFloat16:
		out := make([]float32, t.Len())
		for i := range out {
			out[i] = float32(t.Float(i))
		}
		return out
	case tensor.Int64:
		return t.Int64s()
	case tensor.Uint64:
		return t.Uint64s()
	case tensor.Uint8:
		// []uint8 would encode as base64
		out := make([]int, t.Len())
		for i, v := range t.Uint8s() {
			out[i] = int(v)
		}
		return out
	}
	out := make([]int64, t.Len())
	for i := range out {
		out[i] = t.Int(i)
	}
	return out
}

// binaryData returns t's raw bytes in the binary tensor data extension's layout.
func binaryData(t *tensor.Tensor) []byte {
	if t.DType != tensor.String {
		return t.Data
	}
	var b []byte
	for _, s := range t.Strings {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// requestID returns the "id" of a request's JSON header without decoding
// the rest ("" when it has none or is not valid JSON). It allocates only
// the id.
func requestID(hdr []byte) string {
	s := scanner{b: hdr}
	if s.expect('{') != nil || !s.first('}') {
		return ""
	}
	for {
		key, err := s.strBytes()
		if err != nil || s.expect(':') != nil {
			return ""
		}
		if string(key) == "id" {
			id, err := s.str()
			if err != nil {
				return ""
			}
			return id
		}
		if s.skip(1) != nil {
			return ""
		}
		if more, err := s.more('}'); err != nil || !more {
			return ""
		}
	}
}

// appendResponse returns the JSON header of a response and the binary data
// of the outputs asked for as binary, in output order, written straight
// into one buffer: keys, numbers (strconv.AppendFloat, as encoding/json
// writes them) and non-finite floats (NaN, Infinity, -Infinity, as
// nonFinite writes them), byte for byte what encoding/json makes of the
// same response, without its reflection and boxing. It reports false for
// what it leaves to encoding/json: outputs in shared memory, BYTES
// outputs, empty or rank-0 tensors, strings that need escaping.
func appendResponse(resp *serve.InferResponse, d *Decoded) ([]byte, [][]byte, bool) {
	size := 64 + len(resp.Model) + len(resp.Version) + len(resp.ID)
	for _, o := range resp.Outputs {
		t := o.Tensor
		if o.Shm != nil || t == nil || t.DType == tensor.String || len(t.Shape) == 0 || t.Len() == 0 || !plainString(o.Name) {
			return nil, nil, false
		}
		size += 64 + len(o.Name) + 21*len(t.Shape)
		if !outputBinary(d, o.Name) {
			size += 16 * t.Len()
		}
	}
	if !plainString(resp.Model) || !plainString(resp.Version) || !plainString(resp.ID) {
		return nil, nil, false
	}
	b := make([]byte, 0, size)
	b = append(b, `{"id":"`...)
	b = append(b, resp.ID...)
	b = append(b, `","model_name":"`...)
	b = append(b, resp.Model...)
	b = append(b, `","model_version":"`...)
	b = append(b, resp.Version...)
	b = append(b, `","outputs":[`...)
	var bin [][]byte
	for i, o := range resp.Outputs {
		t := o.Tensor
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":"`...)
		b = append(b, o.Name...)
		b = append(b, `","datatype":"`...)
		b = append(b, DataTypeName(t.DType)...)
		b = append(b, `","shape":[`...)
		for j, n := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(n), 10)
		}
		b = append(b, ']')
		if outputBinary(d, o.Name) {
			data := binaryData(t)
			bin = append(bin, data)
			b = append(b, `,"parameters":{"binary_data_size":`...)
			b = strconv.AppendInt(b, int64(len(data)), 10)
			b = append(b, "}}"...)
			continue
		}
		b = append(b, `,"data":[`...)
		b = appendData(b, t)
		b = append(b, "]}"...)
	}
	b = append(b, "]}"...)
	return b, bin, true
}

// outputBinary reports whether the request asks for output name as binary
// data.
func outputBinary(d *Decoded, name string) bool {
	if b, set := d.Binary[name]; set {
		return b
	}
	return d.BinaryDefault
}

// plainString reports whether s is written in JSON as it is, between
// quotes: printable ASCII without the characters encoding/json escapes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendData appends t's elements, comma-separated, as encoding/json writes
// the values jsonData returns.
func appendData(b []byte, t *tensor.Tensor) []byte {
	switch t.DType {
	case tensor.Float32:
		for i, v := range t.Float32s() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendFloat(b, float64(v), 32)
		}
	case tensor.Float64:
		for i, v := range t.Float64s() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendFloat(b, v, 64)
		}
	case tensor.Float16, tensor.BFloat16:
		for i, n := 0, t.Len(); i < n; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendFloat(b, float64(float32(t.Float(i))), 32)
		}
	case tensor.Bool:
		for i, v := range t.Bools() {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendBool(b, v)
		}
	case tensor.Uint64:
		for i, v := range t.Uint64s() {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, v, 10)
		}
	default:
		for i, n := 0, t.Len(); i < n; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, t.Int(i), 10)
		}
	}
	return b
}

// appendFloat appends f as encoding/json writes a float of bits bits
// (shortest decimal, exponent form below 1e-6 and from 1e21), and a
// non-finite f as the tokens NaN, Infinity and -Infinity.
func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 {
		if bits == 64 && (a < 1e-6 || a >= 1e21) || bits == 32 && (float32(a) < 1e-6 || float32(a) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// e-09 is written e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
