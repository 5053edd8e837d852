package httpapi

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// validByScanner reports whether the scanner takes b as one JSON value,
// and whether it refused it only for its nesting.
func validByScanner(b []byte) (ok, tooDeep bool) {
	s := scanner{b: b}
	err := s.skip(0)
	if err == nil {
		err = s.end()
	}
	return err == nil, err != nil && strings.Contains(err.Error(), "nested deeper")
}

// TestScannerAgreesWithEncodingJSON: the scanner accepts exactly the JSON
// that encoding/json accepts (up to its nesting bound).
func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{}`, `[]`, ` { "a" : [ 1 , -2.5e+3 , true , false , null , "x" ] } `, `"\u00e9\ud83d\ude00"`, `0`, `-0`, `1E9`,
		`{"a":1,}`, `[1,]`, `[,1]`, `{"a"}`, `{"a":}`, `{1:2}`, `01`, `1.`, `.1`, `+1`, `1e`, `1e+`, `-`, `--1`,
		`"\x"`, `"\u12"`, `"\u12g4"`, "\"\t\"", `"abc`, `tru`, `nul`, `[1 2]`, `{"a":1 "b":2}`, `1 2`, ``, ` `,
		`NaN`, `Infinity`, `[` + strings.Repeat(`[`, 10) + strings.Repeat(`]`, 10) + `]`, "\"\xff\"",
	} {
		ok, _ := validByScanner([]byte(in))
		if want := json.Valid([]byte(in)); ok != want {
			t.Errorf("%q: scanner says %v, encoding/json %v", in, ok, want)
		}
	}
}

func FuzzScannerAgreesWithEncodingJSON(f *testing.F) {
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1.5e3]}]}`))
	f.Add([]byte(`["\ud83d\ude00", -0.0, null, true]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ok, tooDeep := validByScanner(b)
		if tooDeep {
			return
		}
		if want := json.Valid(b); ok != want {
			t.Fatalf("%q: scanner says %v, encoding/json %v", b, ok, want)
		}
	})
}

// checkFloat decodes tok as an FP32 and an FP64 element and compares both,
// bit for bit, and their errors, with strconv.ParseFloat.
func checkFloat(t *testing.T, tok string) {
	t.Helper()
	if !json.Valid([]byte(tok)) || strings.TrimSpace(tok) != tok || tok == "" || strings.ContainsAny(tok[:1], "[{\"tfn") {
		return
	}
	for _, bits := range []int{32, 64} {
		dt := tensor.Float32
		if bits == 64 {
			dt = tensor.Float64
		}
		s := scanner{b: []byte(tok)}
		got, err := s.float(dt, bits)
		want, werr := strconv.ParseFloat(tok, bits)
		if (err != nil) != (werr != nil) {
			t.Fatalf("%q as %d bits: error %v, strconv's %v", tok, bits, err, werr)
		}
		if err == nil && math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%q as %d bits: %v (%#x), strconv %v (%#x)", tok, bits, got, math.Float64bits(got), want, math.Float64bits(want))
		}
		if err == nil && s.pos != len(tok) {
			t.Fatalf("%q: read %d bytes of %d", tok, s.pos, len(tok))
		}
	}
}

// TestFloatAgreesWithStrconv: the scanner's one-pass number decoding rounds
// every number as strconv.ParseFloat does, for FP32 and FP64: numbers as
// clients write them, edge cases of the fast path (double rounding
// midpoints, subnormals, the float32 range, long mantissas, large
// exponents) and random ones.
func TestFloatAgreesWithStrconv(t *testing.T) {
	for _, tok := range []string{
		"0", "-0", "0.0", "-0.0", "1", "-1", "0.1", "0.5", "3.4028235e38", "3.4028236e38", "-3.4028235e+38", "3.5e38",
		"1e-45", "1.401298464324817e-45", "1.1754942e-38", "1.17549435e-38", "7e-46", "1e-400", "1e400", "-1e400",
		"9007199254740993", "9007199254740992", "123456789012345678901234567890", "0.000000000000000000000001",
		"1e22", "1e23", "1.5e-22", "1.5e-23", "4.7223665e21", "0.33333334", "16777217", "16777216.5", "33554435",
		"2.0000001192092896", "1.00000005960464477539062", "1.0000000596046448", "1.0000000596046447",
		"0.100000001490116119384765625", "8.589973e9", "8589973000", "1E5", "1e+5", "2.5E-3", "100000000000000000000000",
		"0.12345678901234567890123", "-7.038531e-26", "6.103515625e-05", "1.0000001", "0.99999994",
	} {
		checkFloat(t, tok)
	}
	rng := rand.New(rand.NewPCG(14, 6))
	for range 200000 {
		var tok string
		switch rng.IntN(4) {
		case 0: // as Go (and most clients) print float32s
			tok = strconv.FormatFloat(float64(math.Float32frombits(rng.Uint32())), 'g', -1, 32)
		case 1:
			tok = strconv.FormatFloat(rng.NormFloat64()*math.Pow(10, float64(rng.IntN(40)-20)), 'g', -1, 64)
		case 2: // decimals of up to 20 digits, exponents around the fast path's bounds
			tok = strconv.FormatUint(rng.Uint64()>>rng.IntN(64), 10) + "e" + strconv.Itoa(rng.IntN(90)-45)
		default: // float32 midpoints and their neighbours, written exactly
			f := float64(math.Float32frombits(rng.Uint32()&0x7f7fffff)) * (1 + 0x1p-24)
			tok = strconv.FormatFloat(math.Nextafter(f, math.Inf(rng.IntN(3)-1)), 'g', -1, 64)
		}
		checkFloat(t, tok)
	}
}

func FuzzFloatAgreesWithStrconv(f *testing.F) {
	for _, s := range []string{"0.5", "-1.5e-3", "3.4028236e38", "1.00000005960464477539062", "9007199254740993", "1e-45"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) { checkFloat(t, tok) })
}
