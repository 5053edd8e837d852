package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

func TestStream(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/v2/models/tinycnn/stream"
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	in := examples.TinyCNNInput(1)
	want := direct(t, in)
	const n = 40 // more than DefaultStreamInFlight: the server applies backpressure
	go func() {
		for i := range n {
			var err error
			switch i % 3 {
			case 0: // JSON
				b, _ := json.Marshal(map[string]any{"id": fmt.Sprint(i), "inputs": []any{map[string]any{
					"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
				err = c.Write(ctx, websocket.MessageText, b)
			case 1: // binary in and out
				hdr, _ := json.Marshal(map[string]any{"id": fmt.Sprint(i), "inputs": []any{map[string]any{
					"name": "image", "shape": in.Shape, "datatype": "FP32", "parameters": map[string]any{"binary_data_size": len(in.Data)}}},
					"parameters": map[string]any{"binary_data_output": true}})
				msg := binary.LittleEndian.AppendUint32(nil, uint32(len(hdr)))
				msg = append(append(msg, hdr...), in.Data...)
				err = c.Write(ctx, websocket.MessageBinary, msg)
			case 2: // a bad request answers an error and keeps the stream
				err = c.Write(ctx, websocket.MessageText, []byte(`{"id":"`+fmt.Sprint(i)+`","inputs":[{"name":"image","shape":[1],"datatype":"FP32","data":[1]}]}`))
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range n {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hdr := msg
		var raw []byte
		if typ == websocket.MessageBinary {
			hl := binary.LittleEndian.Uint32(msg)
			hdr, raw = msg[4:4+hl], msg[4+hl:]
		}
		var r struct {
			ID      string `json:"id"`
			Error   string `json:"error"`
			Code    int    `json:"code"`
			Outputs []struct {
				Data []float32 `json:"data"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(hdr, &r); err != nil {
			t.Fatal(err)
		}
		if r.ID != fmt.Sprint(i) {
			t.Fatalf("reply %d has id %q: out of order", i, r.ID)
		}
		switch i % 3 {
		case 0:
			close32(t, r.Outputs[0].Data, want, 1e-6)
		case 1:
			var got []float32
			for j := 0; j+4 <= len(raw); j += 4 {
				got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
			}
			close32(t, got, want, 1e-6)
		case 2:
			if r.Code != 400 || r.Error == "" {
				t.Errorf("bad request reply %+v", r)
			}
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestStreamUnknownModel(t *testing.T) {
	ts, _, _ := startServer(t, 0)
	_, resp, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/v2/models/nope/stream", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("dial unknown model: %v, %v", resp, err)
	}
}

func FuzzDecodeStreamMessage(f *testing.F) {
	// a small tensor: the fuzzer minimizes every input that finds new
	// coverage, and minimizing a 30 KB image request took longer than a
	// whole short fuzz run
	in := tensor.New(tensor.Float32, 1, 2, 2)
	copy(in.Float32s(), []float32{0.5, -1, 2, 3.25})
	f.Add(false, jsonRequest(in, false))
	b, n := binaryRequest(in, true)
	f.Add(true, append(binary.LittleEndian.AppendUint32(nil, uint32(n)), b...))
	f.Add(true, []byte{1, 0})
	f.Fuzz(func(t *testing.T, bin bool, msg []byte) {
		if _, err := DecodeStreamMessage(bin, msg); err != nil && !errors.Is(err, ErrDecode) {
			t.Fatalf("error %v is not ErrDecode", err)
		}
	})
}
