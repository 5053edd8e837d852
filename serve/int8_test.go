package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/httpapi"
)

// imageBody is a KServe v2 JSON request of one tinycnn image with values
// in [0, 1] (the model's "real traffic").
func imageBody(r *rand.Rand) []byte {
	x := make([]float32, 3*32*32)
	base := 0.3 + 0.4*r.Float64()
	for i := range x {
		x[i] = float32(min(max(base+0.2*math.Sin(float64(i)*0.07)+0.05*r.NormFloat64(), 0), 1))
	}
	b, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "image", "shape": []int{1, 3, 32, 32}, "datatype": "FP32", "data": x}}})
	return b
}

// TestINT8RebuildAndSwitch (issue 14, item 7): a model recording its
// requests with int8_rebuild_after is rebuilt at INT8 in the background,
// calibrated on its recorded requests, checked against the served FP32
// engine on held-back ones, and switched to only when the check passes
// int8_min_cosine; clients sending requests all along over HTTP see no
// failure, and once switched the answers are the INT8 engine's.
func TestINT8RebuildAndSwitch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		minCosine string
		switched  bool
	}{
		{name: "passes the threshold: switched", minCosine: "0.99", switched: true},
		{name: "below the threshold: kept", minCosine: "1", switched: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := t.TempDir()
			os.MkdirAll(filepath.Join(repo, "cnn", "1"), 0o755)
			os.WriteFile(filepath.Join(repo, "cnn", "1", "model.onnx"), examples.TinyCNNModel, 0o644)
			os.WriteFile(filepath.Join(repo, "cnn", "config.pbtxt"), []byte("max_batch_size: 4\n"+
				`parameters { key: "record_requests" value: { string_value: "1" } }`+"\n"+
				`parameters { key: "int8_rebuild_after" value: { string_value: "16" } }`+"\n"+
				`parameters { key: "int8_min_cosine" value: { string_value: "`+tc.minCosine+`" } }`+"\n"), 0o644)
			// the recorder may still write its last requests as the model
			// closes after Shutdown: remove the folder once it is done
			rec, err := os.MkdirTemp("", "kiln-record-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for range 100 {
					if os.RemoveAll(rec) == nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			})
			s := serve.New(serve.Options{Repository: repo, RecordDir: rec})
			if err := s.LoadAll(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer s.Shutdown(context.Background())
			srv := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
			defer srv.Close()
			post := func(body []byte) (int, []byte) {
				resp, err := http.Post(srv.URL+"/v2/models/cnn/infer", "application/json", bytes.NewReader(body))
				if err != nil {
					return 0, []byte(err.Error())
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, b
			}
			probe := imageBody(rand.New(rand.NewPCG(1, 1)))
			code, fp32 := post(probe)
			if code != 200 {
				t.Fatalf("probe: %d %s", code, fp32)
			}

			// two clients send requests until the rebuild has been decided
			var failed atomic.Int64
			var sent atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for c := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(c), 9))
					for {
						select {
						case <-stop:
							return
						default:
						}
						if code, body := post(imageBody(r)); code != 200 {
							failed.Add(1)
							t.Errorf("a request failed during the rebuild: %d %s", code, body)
						}
						sent.Add(1)
					}
				}()
			}
			deadline := time.Now().Add(60 * time.Second)
			for len(s.Rebuilds()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			// keep sending a little after the decision: the swap happens then
			for n := sent.Load(); sent.Load() < n+20 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			close(stop)
			wg.Wait()
			reps := s.Rebuilds()
			if len(reps) != 1 {
				t.Fatalf("rebuilds %+v, want one", reps)
			}
			rep := reps[0]
			t.Logf("rebuild: %+v", rep)
			if rep.Err != "" || rep.Switched != tc.switched || rep.Calibration+rep.HeldBack < 16 || rep.HeldBack < 1 {
				t.Fatalf("rebuild %+v, want switched %v", rep, tc.switched)
			}
			if rep.Cosine < 0.99 || rep.Cosine >= 1 || rep.Top1 < 0.9 {
				t.Fatalf("INT8 against FP32 on held-back requests: cosine %v top-1 %v", rep.Cosine, rep.Top1)
			}
			if failed.Load() > 0 {
				t.Fatalf("%d of %d requests failed", failed.Load(), sent.Load())
			}
			code, now := post(probe)
			if code != 200 {
				t.Fatalf("probe after: %d %s", code, now)
			}
			if changed := !bytes.Equal(now, fp32); changed != tc.switched {
				t.Fatalf("the answer changed %v, want %v (switched %v):\nbefore %s\nafter  %s", changed, tc.switched, rep.Switched, fp32, now)
			}
		})
	}
}
