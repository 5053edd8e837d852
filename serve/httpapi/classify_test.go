package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kilnai/kiln/examples"
)

// topClasses returns the classification extension's strings for the top k
// of each row of 10 values, labelled "c<index>".
func topClasses(out []float32, k int) []string {
	var want []string
	for r := 0; r < len(out)/10; r++ {
		row := out[r*10 : r*10+10]
		idx := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		slices.SortStableFunc(idx, func(a, b int) int {
			if row[a] > row[b] {
				return -1
			} else if row[a] < row[b] {
				return 1
			}
			return 0
		})
		for _, i := range idx[:k] {
			want = append(want, fmt.Sprintf("%s:%d:c%d", strconv.FormatFloat(float64(row[i]), 'f', 6, 64), i, i))
		}
	}
	return want
}

// TestClassificationHTTP (issue 14, item 5): an output asked for with the
// "classification" parameter (or "class_count") comes back as BYTES
// "value:index:label" strings of its top classes, labels from the
// output's label_filename, as JSON, as binary data and on a WebSocket
// stream; a bad count is a 400.
func TestClassificationHTTP(t *testing.T) {
	ts, _, dir := startServer(t, 0)
	var labels []string
	for i := range 10 {
		labels = append(labels, fmt.Sprintf("c%d", i))
	}
	os.WriteFile(filepath.Join(dir, "tinycnn", "labels.txt"), []byte(strings.Join(labels, "\n")), 0o644)
	cfg := `{"max_batch_size": 8, "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10], "label_filename": "labels.txt"}]}`
	if resp, b := do(t, "POST", ts.URL+"/v2/repository/models/tinycnn/load", nil, loadBody(map[string]any{"config": cfg})); resp.StatusCode != 200 {
		t.Fatalf("load: %d %s", resp.StatusCode, b)
	}
	in := examples.TinyCNNInput(2)
	want := topClasses(direct(t, in), 3)
	request := func(params map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{
			"inputs":  []any{map[string]any{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}},
			"outputs": []any{map[string]any{"name": "probabilities", "parameters": params}},
		})
		return b
	}
	type output struct {
		Datatype   string         `json:"datatype"`
		Shape      []int          `json:"shape"`
		Data       []string       `json:"data"`
		Parameters map[string]int `json:"parameters"`
	}
	tests := []struct {
		name   string
		params map[string]any
		code   int
	}{
		{"classification", map[string]any{"classification": 3}, 200},
		{"class_count", map[string]any{"class_count": 3}, 200},
		{"binary", map[string]any{"classification": 3, "binary_data": true}, 200},
		{"not a number", map[string]any{"classification": "3"}, 400},
		{"negative", map[string]any{"classification": -1}, 400},
		{"too many", map[string]any{"classification": 1 << 20}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, "POST", ts.URL+"/v2/models/tinycnn/infer", nil, request(tt.params))
			if resp.StatusCode != tt.code {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tt.code)
			}
			if tt.code != 200 {
				return
			}
			hdr := b
			if n := resp.Header.Get(HeaderLength); n != "" {
				l, _ := strconv.Atoi(n)
				hdr = b[:l]
			}
			var out struct{ Outputs []output }
			if err := json.Unmarshal(hdr, &out); err != nil || len(out.Outputs) != 1 {
				t.Fatalf("response %s: %v", b, err)
			}
			o := out.Outputs[0]
			got := o.Data
			if size, ok := o.Parameters["binary_data_size"]; ok {
				got = nil
				for rest := b[len(hdr):][:size]; len(rest) >= 4; {
					n := binary.LittleEndian.Uint32(rest)
					got, rest = append(got, string(rest[4:4+n])), rest[4+n:]
				}
			}
			if o.Datatype != "BYTES" || fmt.Sprint(o.Shape) != "[2 3]" || !slices.Equal(got, want) {
				t.Errorf("got %s %v %q, want BYTES [2 3] %q", o.Datatype, o.Shape, got, want)
			}
		})
	}

	t.Run("stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v2/models/tinycnn/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, request(map[string]any{"classification": 3})); err != nil {
			t.Fatal(err)
		}
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Outputs []output }
		if err := json.Unmarshal(msg, &out); err != nil || len(out.Outputs) != 1 || !slices.Equal(out.Outputs[0].Data, want) {
			t.Errorf("stream answer %s (%v), want %q", msg, err, want)
		}
	})
}
