package httpapi

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kilnai/kiln/serve"
)

// TestDecodeControl: a register or settings body is decoded as before the
// one-buffer read (json.Decoder with DisallowUnknownFields): unknown fields
// refused, in nested objects too, a key matching a field but for case
// taken, data after the object refused, an empty body leaving the value as
// it was; a body shorter than its declared length is a 400, a longer one
// than maxControlBody a 413.
func TestDecodeControl(t *testing.T) {
	type inner struct {
		B64 *string `json:"b64"`
	}
	type req struct {
		Key       *string `json:"key"`
		ByteSize  *uint64 `json:"byte_size"`
		RawHandle *inner  `json:"raw_handle"`
		Skipped   string  `json:"-"`
		NoTag     int
	}
	for _, c := range []struct {
		name, body string
		length     int64 // declared length; 0: the body's
		code       int   // 0: decoded
		has        string
		key        string // the key decoded
	}{
		{name: "fields", body: `{"key":"/k","byte_size":4,"raw_handle":{"b64":"AA=="}}`, key: "/k"},
		{name: "case folded", body: `{"KEY":"/k"}`, key: "/k"},
		{name: "go name", body: `{"NoTag":3}`},
		{name: "empty", body: ""},
		{name: "spaces", body: " \n\t "},
		{name: "null", body: "null"},
		{name: "unknown", body: `{"key":"/k","device_id":0}`, code: 400, has: `unknown field "device_id"`},
		{name: "nested unknown", body: `{"raw_handle":{"b64":"AA==","x":1}}`, code: 400, has: `unknown field "x"`},
		{name: "json dash", body: `{"Skipped":"s"}`, code: 400, has: `unknown field "Skipped"`},
		{name: "data after", body: `{"key":"/k"} {}`, code: 400, has: "after top-level value"},
		{name: "not JSON", body: "\x80" + strings.Repeat("M", 4000), code: 400, has: "invalid character"},
		{name: "wrong type", body: `{"byte_size":"4"}`, code: 400, has: "cannot unmarshal"},
		{name: "array", body: `[1]`, code: 400, has: "cannot unmarshal"},
		{name: "short body", body: `{"key":"/k"}`, length: 100, code: 400, has: "reading the body"},
		{name: "declared too long", body: `{}`, length: maxControlBody + 1, code: 413},
		{name: "chunked too long", body: strings.Repeat(" ", maxControlBody+1), length: -1, code: 413},
		{name: "chunked", body: `{"key":"/c"}`, length: -1, key: "/c"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v2/systemsharedmemory/region/x/register", strings.NewReader(c.body))
			if c.length != 0 {
				r.ContentLength = c.length
			}
			var v req
			err := decodeControl(httptest.NewRecorder(), r, &v)
			if c.code == 0 {
				if err != nil {
					t.Fatalf("%v", err)
				}
				if got := ""; v.Key != nil {
					if got = *v.Key; got != c.key {
						t.Fatalf("key %q, want %q", got, c.key)
					}
				} else if c.key != "" {
					t.Fatalf("no key, want %q", c.key)
				}
				return
			}
			if err == nil || Status(err) != c.code || !strings.Contains(err.Error(), c.has) {
				t.Fatalf("error %v (status %d), want %d with %q", err, Status(err), c.code, c.has)
			}
			if c.code == 400 && !errors.Is(err, serve.ErrInvalid) {
				t.Fatalf("%v: not serve.ErrInvalid", err)
			}
		})
	}
}

// readCounter counts the Read calls on a body.
type readCounter struct {
	r     io.Reader
	reads int
}

func (c *readCounter) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

func (c *readCounter) Close() error { return nil }

// TestDecodeControlReadsOnce: a body of a declared length is read in one
// Read whatever its length, and a body that is not JSON is refused alike
// at any length. With io.ReadAll the reads grew with the length (2 up to
// 512 bytes, 3 up to ~1.3 KiB, ...), a loop the fuzzer counts as coverage:
// minimizing an input just over a step took length² runs and stalled
// FuzzSettingsBodies for the whole -fuzzminimizetime.
func TestDecodeControlReadsOnce(t *testing.T) {
	var msg string
	for _, n := range []int{1, 511, 513, 1400, 3600, 5000, maxControlBody} {
		body := &readCounter{r: strings.NewReader("M" + strings.Repeat("\xb0", n-1))}
		r := httptest.NewRequest("POST", "/v2/logging", nil)
		r.Body, r.ContentLength = body, int64(n)
		var v map[string]any
		err := decodeControl(httptest.NewRecorder(), r, &v)
		if err == nil || Status(err) != http.StatusBadRequest {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if body.reads != 1 {
			t.Errorf("%d bytes: %d reads, want 1", n, body.reads)
		}
		if msg == "" {
			msg = err.Error()
		} else if err.Error() != msg {
			t.Errorf("%d bytes: %q, want %q as for 1 byte", n, err, msg)
		}
	}
}

// TestReadLoadRequestBody: a load request's body is read as a control
// body: in one Read when its length is declared, an early end a 400, a
// declared length over the limit a 413 (nothing read), unknown top-level
// fields refused.
func TestReadLoadRequestBody(t *testing.T) {
	for _, c := range []struct {
		name, body string
		length     int64 // 0: the body's
		code       int
		has        string
		reads      int // Read calls, -1: not checked
	}{
		{"empty", "", 0, 0, "", -1},
		{"config", `{"parameters":{"config":"{}"}}`, 0, 0, "", 1},
		{"garbage", "M" + strings.Repeat("\xb0", 5000), 0, 400, "invalid character", 1},
		{"unknown field", `{"parameters":{},"poll":true}`, 0, 400, `unknown field "poll"`, 1},
		{"short", `{"parameters":{}}`, 64, 400, "reading the body", -1},
		{"over the limit", `{}`, 1<<16 + 1, 413, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := &readCounter{r: strings.NewReader(c.body)}
			n := c.length
			if n == 0 {
				n = int64(len(c.body))
			}
			lr, err := readLoadRequest(body, n, 1<<16)
			switch {
			case c.code == 0 && err != nil:
				t.Fatalf("%v", err)
			case c.code == 0 && c.name == "config" && string(lr.Config) != "{}":
				t.Fatalf("config %q", lr.Config)
			case c.code != 0 && (err == nil || Status(err) != c.code || !strings.Contains(err.Error(), c.has)):
				t.Fatalf("error %v (status %d), want %d with %q", err, Status(err), c.code, c.has)
			case c.reads >= 0 && body.reads != c.reads:
				t.Fatalf("%d reads, want %d", body.reads, c.reads)
			}
		})
	}
}
