package gateway

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// FuzzWithPriority: for a JSON object, withPriority's result is JSON whose
// request priority is the client's when the request set none of its own,
// and is otherwise the request unchanged. What is not JSON comes back as it
// was or with only the parameter put in (the backend refuses it either
// way).
func FuzzWithPriority(f *testing.F) {
	for _, s := range []string{`{}`, `{"inputs":[]}`, `{"parameters":{"priority":1}}`, `{"parameters":{"a":1}}`,
		`{"inputs":[{"parameters":{"binary_data_size":4}}]}`, `{"id":"\"}","parameters":{}}`, `[1]`, `{"a":tru}`, `{"a":"\\"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, _ := withPriority(body, "", 7)
		var in map[string]any
		if json.Unmarshal(body, &in) != nil {
			if !onlyInserted(body, out) {
				t.Fatalf("%q: not JSON, changed to %q", body, out)
			}
			return
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q: result %q is not JSON: %v", body, out, err)
		}
		params, isObj := in["parameters"].(map[string]any)
		_, own := params["priority"]
		_, hasParams := in["parameters"]
		switch {
		case own || hasParams && !isObj:
			if string(out) != string(body) {
				t.Fatalf("%q: a request with its own priority (or odd parameters) changed to %q", body, out)
			}
		default:
			gp, _ := got["parameters"].(map[string]any)
			if gp["priority"] != 7.0 {
				// a key spelled with escapes is the one case left alone
				if string(out) == string(body) {
					return
				}
				t.Fatalf("%q -> %q: priority %v, want 7", body, out, gp["priority"])
			}
			delete(gp, "priority")
			for k, v := range params {
				if gv, ok := gp[k]; !ok || !jsonEqual(gv, v) {
					t.Fatalf("%q -> %q: parameter %q changed", body, out, k)
				}
			}
		}
	})
}

// onlyInserted reports whether out is body, or body with one of
// withPriority's insertions (of priority 7) and nothing else changed.
func onlyInserted(body, out []byte) bool {
	if bytes.Equal(body, out) {
		return true
	}
	i := 0
	for i < len(body) && i < len(out) && body[i] == out[i] {
		i++
	}
	// the insertion starts at the first difference or a little before it
	// (its first bytes may be the same as what follows it)
	for _, ins := range []string{`"parameters":{"priority":7},`, `"parameters":{"priority":7}`, `"priority":7,`, `"priority":7`} {
		for j := max(0, i-len(ins)); j <= i; j++ {
			if bytes.HasPrefix(out[j:], []byte(ins)) && bytes.Equal(slices.Concat(out[:j], out[j+len(ins):]), body) {
				return true
			}
		}
	}
	return false
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
