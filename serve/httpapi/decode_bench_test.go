package httpapi

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/kilnai/kiln/examples"
)

// lyingRequest is a JSON request of about size bytes whose input declares a
// shape of n elements but carries far fewer values.
func lyingRequest(size, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"inputs":[{"name":"image","shape":[%d],"datatype":"FP32","data":[`, n)
	for b.Len() < size-8 {
		b.WriteString("0.123456,")
	}
	b.WriteString("0]}]}")
	return []byte(b.String())
}

// BenchmarkDecodeJSON decodes a TinyCNN batch of 8 sent as JSON numbers
// (24576 FP32 values, about 400 kB of JSON).
func BenchmarkDecodeJSON(b *testing.B) {
	body := jsonRequest(examples.TinyCNNInput(8), false)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(body, -1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBinary decodes the same batch with the binary tensor data
// extension.
func BenchmarkDecodeBinary(b *testing.B) {
	body, n := binaryRequest(examples.TinyCNNInput(8), false)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(body, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeLying decodes a 4 MB JSON body that declares 1M elements
// and holds fewer: it must fail fast and allocate little.
func BenchmarkDecodeLying(b *testing.B) {
	body := lyingRequest(4<<20, 1<<20)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(body, -1); err == nil {
			b.Fatal("decoded a lying request")
		}
	}
}

// BenchmarkDecodeLyingSchema decodes the lying body of BenchmarkDecodeLying
// against tinycnn's schema: it is refused at its shape, before its data.
func BenchmarkDecodeLyingSchema(b *testing.B) {
	body := lyingRequest(4<<20, 1<<20)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequestFor(body, -1, tinySchema); err == nil {
			b.Fatal("decoded a lying request")
		}
	}
}

// BenchmarkReadRequestBinary reads a binary request as the HTTP handler
// does, the data straight from the body into the tensor.
func BenchmarkReadRequestBinary(b *testing.B) {
	body, n := binaryRequest(examples.TinyCNNInput(8), false)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	r := bytes.NewReader(body)
	for b.Loop() {
		r.Reset(body)
		if _, err := ReadRequest(r, int64(len(body)), n, 64<<20, tinySchema); err != nil {
			b.Fatal(err)
		}
	}
}
