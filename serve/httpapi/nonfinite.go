package httpapi

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"math"

	"github.com/kilnai/kiln/tensor"
)

// JSON has no NaN or infinities. Like Triton's HTTP front end, kiln writes
// them as the tokens NaN, Infinity and -Infinity, which Python's json
// module (Triton's clients) reads back; a client that needs strict JSON
// asks for binary_data. encoding/json cannot write bare tokens, so a
// float output with such values is encoded with placeholder strings that
// restore then replaces; the placeholders carry a random per-process key,
// so no string of a response can be taken for one.
var nonFinite = newNonFiniteCodec()

type nonFiniteCodec struct {
	prefix string // a placeholder is prefix + "NaN" | "Infinity" | "-Infinity"
	quoted [3][2][]byte
}

func newNonFiniteCodec() *nonFiniteCodec {
	key := make([]byte, 8)
	rand.Read(key) // never fails (crypto/rand)
	c := &nonFiniteCodec{prefix: "\x01kiln-nonfinite-" + hex.EncodeToString(key) + ":"}
	for i, tok := range []string{"NaN", "Infinity", "-Infinity"} {
		// the placeholder as encoding/json writes it (\x01 as \u0001)
		c.quoted[i] = [2][]byte{[]byte(`"\u0001kiln-nonfinite-` + hex.EncodeToString(key) + ":" + tok + `"`), []byte(tok)}
	}
	return c
}

// values returns t's elements for encoding/json, the non-finite ones as
// placeholders.
func (c *nonFiniteCodec) values(t *tensor.Tensor) []any {
	out := make([]any, t.Len())
	for i := range out {
		v := t.Float(i)
		switch {
		case math.IsNaN(v):
			out[i] = c.prefix + "NaN"
		case math.IsInf(v, 1):
			out[i] = c.prefix + "Infinity"
		case math.IsInf(v, -1):
			out[i] = c.prefix + "-Infinity"
		case t.DType == tensor.Float64:
			out[i] = v
		default:
			out[i] = float32(v)
		}
	}
	return out
}

// restore turns the placeholders of an encoded response into the tokens.
func (c *nonFiniteCodec) restore(body []byte) []byte {
	if !bytes.Contains(body, []byte(`\u0001kiln-nonfinite-`)) {
		return body
	}
	for _, q := range c.quoted {
		body = bytes.ReplaceAll(body, q[0], q[1])
	}
	return body
}

// allFinite reports whether every element of the float tensor t is finite.
func allFinite(t *tensor.Tensor) bool {
	switch t.DType {
	case tensor.Float32:
		for _, v := range t.Float32s() {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return false
			}
		}
		return true
	case tensor.Float64:
		for _, v := range t.Float64s() {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
		return true
	}
	for i, n := 0, t.Len(); i < n; i++ {
		if v := t.Float(i); math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
