package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
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
