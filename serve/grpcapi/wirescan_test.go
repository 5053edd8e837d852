//go:build unix

package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api/inference"
)

// wfield is field num as length-delimited wire bytes holding v.
func wfield(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// wscalar is field num of wire type typ holding the value bytes v.
func wscalar(num protowire.Number, typ protowire.Type, v []byte) []byte {
	return append(protowire.AppendTag(nil, num, typ), v...)
}

// wrequest is a ModelInferRequest for tinycnn whose one input (named
// image, of datatype dt) has the wire fields in (nil: no input), with the
// request's own fields top after them.
func wrequest(dt string, in []byte, top []byte) []byte {
	b := wfield(1, []byte("tinycnn"))
	if in != nil {
		b = append(b, wfield(5, append(append(wfield(1, []byte("image")), wfield(2, []byte(dt))...), in...))...)
	}
	return append(b, top...)
}

// The repeated fields of ModelInferRequest, each with many entries of a
// few wire bytes (an empty entry: 2; a packed chunk of one value: 3 to
// 10): the server decodes each, or refuses more entries than it takes,
// within FuzzGRPCService's bound (fuzzAllocPerByte a wire byte plus
// fuzzAllocFixed), measured as the fuzz test measures, through kiln
// serve's gRPC options with the infer token; the entries it decodes are
// the ones on the wire. proto.Unmarshal allocated up to 60 bytes a wire
// byte for these (5 times the final slices), and the square of the
// message's size for the packed chunks.
func TestRepeatedFieldAllocs(t *testing.T) {
	const n = 50000 // entries: at most 500 KB of wire, under fuzzMaxRecv
	rep := func(k int, b []byte) []byte { return bytes.Repeat(b, k) }
	contents := func(f []byte) []byte { return wfield(5, rep(n, f)) }
	varint1 := []byte{1}
	fixed32 := []byte{0, 0, 0x80, 0x3f}
	fixed64 := []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}
	type want struct {
		limit string // the LimitError's words ("": decoded)
		count func(r *inference.ModelInferRequest) int
		n     int // what count returns
	}
	in0 := func(r *inference.ModelInferRequest) *inference.InferTensorContents { return r.Inputs[0].GetContents() }
	decoded := func(k int, count func(r *inference.ModelInferRequest) int) want { return want{count: count, n: k} }
	refused := func(words string) want { return want{limit: words} }
	cases := []struct {
		name string
		wire []byte
		want want
	}{
		{"bytes_contents, empty strings", wrequest("BYTES", contents(wfield(8, nil)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).BytesContents) })},
		{"bytes_contents, 1-byte strings", wrequest("BYTES", contents(wfield(8, []byte("a"))), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).BytesContents) })},
		{"bytes_contents, a contents field each", wrequest("BYTES", rep(n, wfield(5, wfield(8, []byte("a")))), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).BytesContents) })},
		{"bool_contents, unpacked", wrequest("BOOL", contents(wscalar(1, protowire.VarintType, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).BoolContents) })},
		{"bool_contents, a packed chunk each", wrequest("BOOL", contents(wfield(1, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).BoolContents) })},
		{"int_contents, unpacked", wrequest("INT32", contents(wscalar(2, protowire.VarintType, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).IntContents) })},
		{"int_contents, a packed chunk each", wrequest("INT32", contents(wfield(2, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).IntContents) })},
		{"int64_contents, unpacked", wrequest("INT64", contents(wscalar(3, protowire.VarintType, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).Int64Contents) })},
		{"int64_contents, a packed chunk each", wrequest("INT64", contents(wfield(3, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).Int64Contents) })},
		{"uint_contents, unpacked", wrequest("UINT32", contents(wscalar(4, protowire.VarintType, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).UintContents) })},
		{"uint_contents, a packed chunk each", wrequest("UINT32", contents(wfield(4, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).UintContents) })},
		{"uint64_contents, unpacked", wrequest("UINT64", contents(wscalar(5, protowire.VarintType, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).Uint64Contents) })},
		{"uint64_contents, a packed chunk each", wrequest("UINT64", contents(wfield(5, varint1)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).Uint64Contents) })},
		{"fp32_contents, unpacked", wrequest("FP32", contents(wscalar(6, protowire.Fixed32Type, fixed32)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).Fp32Contents) })},
		{"fp32_contents, a packed chunk each", wrequest("FP32", contents(wfield(6, fixed32)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).Fp32Contents) })},
		{"fp64_contents, unpacked", wrequest("FP64", contents(wscalar(7, protowire.Fixed64Type, fixed64)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).Fp64Contents) })},
		{"fp64_contents, a packed chunk each", wrequest("FP64", contents(wfield(7, fixed64)), nil),
			decoded(n, func(r *inference.ModelInferRequest) int { return len(in0(r).Fp64Contents) })},
		{"shape, unpacked", wrequest("FP32", rep(n, wscalar(3, protowire.VarintType, varint1)), nil),
			refused("an input has at most 64 dimensions")},
		{"shape, a packed chunk each", wrequest("FP32", rep(n, wfield(3, varint1)), nil),
			refused("an input has at most 64 dimensions")},
		{"shape, packed", wrequest("FP32", wfield(3, rep(n, varint1)), nil),
			refused("an input has at most 64 dimensions")},
		{"64 dimensions, a packed chunk each", wrequest("FP32", rep(maxRank, wfield(3, varint1)), nil),
			decoded(maxRank, func(r *inference.ModelInferRequest) int { return len(r.Inputs[0].Shape) })},
		{"inputs", wrequest("", nil, rep(n, wfield(5, nil))), refused("at most 1024 inputs")},
		{"raw_input_contents", wrequest("", nil, rep(n, wfield(7, nil))), refused("at most 1024 raw_input_contents")},
		{"outputs", wrequest("", nil, rep(n, wfield(6, nil))), refused("at most 1024 requested outputs")},
		{"parameters", wrequest("", nil, rep(n, wfield(4, nil))), refused("at most 4096 parameters")},
		{"an input's parameters", wrequest("FP32", rep(n, wfield(4, nil)), nil), refused("at most 4096 parameters")},
		{"an output's parameters", wrequest("", nil, wfield(6, rep(n, wfield(2, nil)))), refused("at most 4096 parameters")},
		// as many as kiln takes
		{"1024 inputs", wrequest("", nil, rep(maxInputs, wfield(5, nil))),
			decoded(maxInputs, func(r *inference.ModelInferRequest) int { return len(r.Inputs) })},
		{"1024 raw_input_contents", wrequest("", nil, rep(maxInputs, wfield(7, []byte{1}))),
			decoded(maxInputs, func(r *inference.ModelInferRequest) int { return len(r.RawInputContents) })},
		{"1024 outputs", wrequest("", nil, rep(maxOutputs, wfield(6, nil))),
			decoded(maxOutputs, func(r *inference.ModelInferRequest) int { return len(r.Outputs) })},
		{"4096 parameters, one key", wrequest("", nil, rep(maxParameters, wfield(4, nil))),
			decoded(maxParameters, func(r *inference.ModelInferRequest) int { return maxParameters })},
		{"1024 inputs of 4 parameters", wrequest("", nil, rep(maxInputs, wfield(5, bytes.Join([][]byte{
			wfield(4, wfield(1, []byte("a"))), wfield(4, wfield(1, []byte("b"))), wfield(4, wfield(1, []byte("c"))),
			wfield(4, wfield(1, []byte("d")))}, nil)))),
			decoded(maxParameters, func(r *inference.ModelInferRequest) int { return len(r.Inputs) * len(r.Inputs[0].Parameters) })},
	}
	fs := newFuzzService(t)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			// the decoding itself: the entries on the wire, or the limit
			r := &inference.ModelInferRequest{}
			err := unmarshalInferRequest(mem.BufferSlice{mem.SliceBuffer(tt.wire)}, r)
			takeLease(r)
			var limit *LimitError
			switch {
			case tt.want.limit != "":
				if !errors.As(err, &limit) || !strings.Contains(err.Error(), tt.want.limit) {
					t.Fatalf("decoded: %v, want %q", err, tt.want.limit)
				}
			case err != nil:
				t.Fatalf("decoded: %v", err)
			default:
				if got := tt.want.count(r); got != tt.want.n {
					t.Fatalf("decoded %d entries, want %d", got, tt.want.n)
				}
			}

			// the call, measured as FuzzGRPCService measures it
			if err := fs.ensure(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+fuzzInferToken)
			call := func() {
				var out []byte
				err = fs.cc.Invoke(ctx, "/inference.GRPCInferenceService/ModelInfer", tt.wire, &out, grpc.ForceCodec(wireCodec{}))
			}
			c := measure(call)
			bound := uint64(fuzzAllocPerByte*len(tt.wire) + fuzzAllocFixed)
			if c.alloc > bound {
				c = c.min(measure(call)) // grpc-go's pools refilled after a collection
			}
			t.Logf("%d wire bytes: %v, %d allocated (%.1f a wire byte), %v CPU", len(tt.wire), status.Code(err), c.alloc,
				float64(c.alloc)/float64(len(tt.wire)), c.cpu)
			if code := status.Code(err); err != nil && !fuzzCodes[code] {
				t.Errorf("answered %v", err)
			}
			if tt.want.limit != "" && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want.limit)) {
				t.Errorf("answered %v, want INVALID_ARGUMENT saying %q", err, tt.want.limit)
			}
			if c.alloc > bound && !raceEnabled {
				t.Errorf("allocated %d bytes for %d wire bytes, above the bound %d (%d a byte + %d)",
					c.alloc, len(tt.wire), bound, fuzzAllocPerByte, fuzzAllocFixed)
			}
		})
	}
}

// TestDecodeRequestEqualsProto: for messages of many entries, of every
// repeated field, packed and not, in several contents fields, with
// unknown fields and wire types proto does not expect between them, the
// codec's decoding is proto.Unmarshal's; a message cut anywhere, or with
// a malformed packed field or string inside well-formed fields, fails
// with proto.Unmarshal's words (its first error).
func TestDecodeRequestEqualsProto(t *testing.T) {
	var in []byte
	for f := protowire.Number(1); f <= 5; f++ {
		in = append(in, wfield(5, append(wscalar(f, protowire.VarintType, []byte{0x85, 0x01}), wfield(f, []byte{1, 0xff, 0x7f, 0})...))...)
	}
	in = append(in, wfield(5, append(wscalar(6, protowire.Fixed32Type, []byte{1, 2, 3, 4}), wfield(6, make([]byte, 8))...))...)
	in = append(in, wfield(5, append(wscalar(7, protowire.Fixed64Type, make([]byte, 8)), wfield(7, make([]byte, 16))...))...)
	in = append(in, wfield(5, append(wfield(8, []byte("xy")), wfield(8, nil)...))...)
	in = append(in, wscalar(3, protowire.VarintType, []byte{3})...)
	in = append(in, wfield(3, []byte{4, 0x80, 0x01})...)
	in = append(in, wscalar(5, protowire.VarintType, []byte{3})...)                                        // contents as a varint: unknown
	in = append(in, wfield(5, append(wscalar(8, protowire.VarintType, []byte{1}), wfield(99, nil)...))...) // unknown in contents
	in = append(in, wfield(4, append(wfield(1, []byte("k")), wfield(2, wscalar(2, protowire.VarintType, []byte{7}))...))...)
	in = append(in, wfield(1, []byte("renamed"))...)
	top := bytes.Join([][]byte{wfield(7, []byte{1, 2}), wfield(7, bytes.Repeat([]byte{3}, 5000)), wfield(6, wfield(1, []byte("o"))),
		wscalar(7, protowire.VarintType, []byte{1}), wfield(3, []byte("id")), wfield(4, wfield(1, []byte("p"))), wfield(50, []byte("?"))}, nil)
	wire := wrequest("FP32", in, top)
	wire = append(wire, wfield(5, wfield(1, []byte("second")))...)

	// malformed inside well-formed fields, and the error that comes first
	for _, b := range [][]byte{
		wrequest("FP32", wfield(5, wfield(6, []byte{1, 2, 3})), nil),
		wrequest("FP64", wfield(5, wfield(7, make([]byte, 9))), nil),
		wrequest("INT64", wfield(5, wfield(3, []byte{1, 0x80})), nil),
		wrequest("INT64", wfield(5, wfield(3, bytes.Repeat([]byte{0xff}, 11))), nil),
		wrequest("FP32", wfield(3, []byte{0x80}), nil),
		wrequest("FP32", wfield(5, []byte{0x80}), nil),
		wrequest("FP32", wfield(5, []byte{0x0c}), nil),
		wrequest("FP32", append(wfield(1, []byte{0xff}), wfield(3, []byte{0x80})...), nil),
		wrequest("FP32", append(wfield(3, []byte{0x80}), wfield(1, []byte{0xff})...), nil),
		wrequest("FP32", wfield(5, append(wfield(8, []byte("a")), wfield(6, []byte{1})...)), wfield(1, []byte{0xff})),
		wrequest("BYTES", wfield(4, wfield(1, []byte{0xff})), nil),
		append(wfield(7, []byte{1}), wfield(3, []byte{0xc0})...),
	} {
		want := &inference.ModelInferRequest{}
		werr := proto.Unmarshal(b, want)
		got := &inference.ModelInferRequest{}
		err := unmarshalInferRequest(split(b, 7), got)
		takeLease(got)
		if werr == nil || fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Errorf("% x: %v, proto.Unmarshal's %v", b, err, werr)
		}
	}
	for cut := 0; cut <= len(wire); cut++ {
		if cut > 400 && cut < len(wire)-400 && cut%97 != 0 {
			continue // the long raw input: a few cuts
		}
		b := wire[:cut]
		want := &inference.ModelInferRequest{}
		werr := proto.Unmarshal(b, want)
		got := &inference.ModelInferRequest{}
		err := unmarshalInferRequest(split(b, 100), got)
		takeLease(got)
		if fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Fatalf("cut at %d: %v, proto.Unmarshal's %v", cut, err, werr)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Fatalf("cut at %d: decoded %v, proto.Unmarshal %v", cut, got, want)
		}
	}
}
