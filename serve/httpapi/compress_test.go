package httpapi

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/kilnai/kiln/examples"
)

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zlibbed(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func rawDeflated(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// inferOutput returns the probabilities of a JSON response.
func inferOutput(t *testing.T, b []byte) []float32 {
	t.Helper()
	var out struct {
		Outputs []struct {
			Data []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Outputs) != 1 {
		t.Fatalf("response %q: %v", b, err)
	}
	return out.Outputs[0].Data
}

// TestCompressedRequests (issue 14, item 5): request bodies sent with
// Content-Encoding gzip or deflate (zlib, as Triton's clients send it, or
// raw) are decoded, the body limit applies to the decompressed size (a zip
// bomb is a 413 and is not expanded), damaged data is a 400 and an
// encoding the server cannot decode a 415.
func TestCompressedRequests(t *testing.T) {
	const limit = 1 << 20
	ts, _, _ := startServer(t, limit)
	in := examples.TinyCNNInput(2)
	want := direct(t, in)
	js := jsonRequest(in, false)
	bin, hdrLen := binaryRequest(in, false)
	bomb := gzipped(make([]byte, 64<<20)) // 64 MiB of zeros in about 64 KiB
	tests := []struct {
		name     string
		encoding string
		body     []byte
		header   int // Inference-Header-Content-Length, -1 for none
		code     int
	}{
		{"gzip JSON", "gzip", gzipped(js), -1, 200},
		{"deflate (zlib) JSON", "deflate", zlibbed(js), -1, 200},
		{"raw deflate JSON", "deflate", rawDeflated(js), -1, 200},
		{"gzip binary", "gzip", gzipped(bin), hdrLen, 200},
		{"upper case and identity", "GZIP", gzipped(js), -1, 200},
		{"identity", "identity", js, -1, 200},
		{"zip bomb", "gzip", bomb, -1, http.StatusRequestEntityTooLarge},
		{"zip bomb deflate", "deflate", zlibbed(make([]byte, 64<<20)), -1, http.StatusRequestEntityTooLarge},
		{"damaged gzip", "gzip", append(gzipped(js)[:40], 1, 2, 3), -1, http.StatusBadRequest},
		{"not gzip at all", "gzip", js, -1, http.StatusBadRequest},
		{"brotli", "br", js, -1, http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{"Content-Encoding": tt.encoding, "Content-Type": "application/json"}
			if tt.header >= 0 {
				hdr[HeaderLength] = strconv.Itoa(tt.header)
			}
			var resp *http.Response
			var b []byte
			alloc := allocated(func() { resp, b = do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", hdr, tt.body) })
			if resp.StatusCode != tt.code {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tt.code)
			}
			if tt.code == 200 {
				close32(t, inferOutput(t, b), want, 1e-6)
			}
			// the 64 MiB bomb is never expanded: what the server allocates
			// stays a small multiple of the 1 MiB limit
			if tt.code == http.StatusRequestEntityTooLarge && alloc > 16*limit {
				t.Errorf("answering the bomb allocated %d bytes", alloc)
			}
		})
	}
}

// TestCompressedResponses (issue 14, item 5): a client that sends
// Accept-Encoding gzip or deflate gets a response body of at least
// CompressMinBytes compressed (zlib for deflate, as Triton's clients
// decode it), the same bytes as an uncompressed one; smaller bodies and
// clients that accept neither get them as they are.
func TestCompressedResponses(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	in := examples.TinyCNNInput(8) // 80 outputs: a JSON body above CompressMinBytes
	body := jsonRequest(in, false)
	_, plain := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", map[string]string{"Accept-Encoding": "identity"}, body)
	if len(plain) < CompressMinBytes {
		t.Fatalf("the uncompressed response has %d bytes, the test needs %d", len(plain), CompressMinBytes)
	}
	small := jsonRequest(examples.TinyCNNInput(1), false)
	tests := []struct {
		name, accept, want string
		body               []byte
	}{
		{"gzip", "gzip", "gzip", body},
		{"deflate", "deflate", "deflate", body},
		{"both, as Triton's clients send", "gzip, deflate", "gzip", body},
		{"deflate preferred by q", "gzip;q=0.5, deflate", "deflate", body},
		{"gzip refused", "gzip;q=0", "", body},
		{"identity", "identity", "", body},
		{"small body", "gzip", "", small},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", map[string]string{"Accept-Encoding": tt.accept}, tt.body)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tt.want {
				t.Fatalf("Content-Encoding %q, want %q", got, tt.want)
			}
			var r io.Reader = bytes.NewReader(b)
			var err error
			switch tt.want {
			case "gzip":
				r, err = gzip.NewReader(r)
			case "deflate":
				r, err = zlib.NewReader(r)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && len(b) >= len(got) {
				t.Errorf("compressed %d bytes into %d", len(got), len(b))
			}
			if bytes.Equal(tt.body, body) && !bytes.Equal(got, plain) {
				t.Errorf("decompressed response differs from the uncompressed one:\n%s\n%s", got, plain)
			}
		})
	}
}

// TestCompressWriter: whatever the writes (one large, many small crossing
// CompressMinBytes, a handler's Content-Length set for the uncompressed
// body, a status without a body), the client gets the same body and
// status, compressed only from CompressMinBytes on.
func TestCompressWriter(t *testing.T) {
	chunk := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	tests := []struct {
		name       string
		code       int
		writes     [][]byte
		compressed bool
	}{
		{"one large write", 200, [][]byte{chunk(5000, 'a')}, true},
		{"small writes crossing the threshold", 200, [][]byte{chunk(600, 'a'), chunk(600, 'b'), chunk(10, 'c')}, true},
		{"header then large binary", 200, [][]byte{chunk(100, '{'), chunk(4096, 0)}, true},
		{"small body", 200, [][]byte{chunk(100, 'a'), chunk(100, 'b')}, false},
		{"error status, large", 400, [][]byte{chunk(2000, 'e')}, true},
		{"status only", 503, nil, false},
	}
	for _, enc := range []string{"gzip", "deflate"} {
		for _, tt := range tests {
			t.Run(enc+" "+tt.name, func(t *testing.T) {
				rec := httptest.NewRecorder()
				var want []byte
				for _, w := range tt.writes {
					want = append(want, w...)
				}
				cw := &compressWriter{ResponseWriter: rec, enc: enc}
				cw.Header().Set("Content-Length", strconv.Itoa(len(want)))
				cw.WriteHeader(tt.code)
				for _, w := range tt.writes {
					if n, err := cw.Write(w); n != len(w) || err != nil {
						t.Fatalf("Write: %d, %v", n, err)
					}
				}
				cw.finish()
				if rec.Code != tt.code {
					t.Errorf("status %d, want %d", rec.Code, tt.code)
				}
				got := rec.Body.Bytes()
				if (rec.Header().Get("Content-Encoding") == enc) != tt.compressed {
					t.Fatalf("Content-Encoding %q, compressed want %v", rec.Header().Get("Content-Encoding"), tt.compressed)
				}
				if tt.compressed {
					if rec.Header().Get("Content-Length") != "" {
						t.Errorf("Content-Length %s kept on a compressed body", rec.Header().Get("Content-Length"))
					}
					var r io.Reader
					var err error
					if enc == "gzip" {
						r, err = gzip.NewReader(bytes.NewReader(got))
					} else {
						r, err = zlib.NewReader(bytes.NewReader(got))
					}
					if err != nil {
						t.Fatal(err)
					}
					if got, err = io.ReadAll(r); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got, want) {
					t.Errorf("body of %d bytes, want %d", len(got), len(want))
				}
			})
		}
	}
}
