package perf

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// sampleReport is a fixed two-step report.
func sampleReport(mode string) *Report {
	ms := func(f float64) time.Duration { return time.Duration(f * 1e6) }
	r := &Report{Model: "tinycnn", URL: "localhost:8000", Protocol: HTTP, Mode: mode, BatchSize: 1,
		Window: time.Second, Stability: 10, Requests: 5000, ServerRequests: 5000}
	for i, tput := range []float64{1000, 1800} {
		s := Step{Stable: i == 0, Duration: 3 * time.Second, Requests: int64(tput * 3), Throughput: tput,
			Latency: Latencies{Count: int(tput * 3), Min: ms(0.5), Max: ms(9), Avg: ms(1.2 + float64(i)),
				P50: ms(1 + float64(i)), P90: ms(1.5 + float64(i)), P95: ms(2 + float64(i)), P99: ms(4 + float64(i))},
			Errors: map[string]int64{},
			Server: Server{Requests: uint64(tput * 3), Inferences: uint64(tput * 3), Throughput: tput,
				Total: ms(0.4), Queue: ms(0.1), ComputeInput: ms(0.01), ComputeInfer: ms(0.25), ComputeOutput: ms(0.02)}}
		if i == 1 {
			s.Errors = map[string]int64{"HTTP 429": 3, "timeout": 1}
		}
		if mode == "request_rate" {
			s.RequestRate = tput
		} else {
			s.Concurrency = 1 + i
		}
		r.Steps = append(r.Steps, s)
	}
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestWriteCSV(t *testing.T) {
	for _, mode := range []string{"concurrency", "request_rate"} {
		t.Run(mode, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteCSV(&b, sampleReport(mode)); err != nil {
				t.Fatal(err)
			}
			golden(t, "report-"+mode+".csv", b.Bytes())
			header, _, _ := strings.Cut(b.String(), "\n")
			want := strings.Join(CSVHeader, ",")
			if mode == "request_rate" {
				want = "Request Rate" + strings.TrimPrefix(want, "Concurrency")
			}
			if header != want {
				t.Errorf("header %q, want %q", header, want)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, sampleReport("concurrency")); err != nil {
		t.Fatal(err)
	}
	golden(t, "report-table.txt", b.Bytes())
	if !strings.Contains(b.String(), "HTTP 429=3 timeout=1") {
		t.Errorf("errors by kind missing:\n%s", b.String())
	}
}

func TestWriteJSON(t *testing.T) {
	r := sampleReport("request_rate")
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Steps) != 2 || back.Steps[1].Errors["HTTP 429"] != 3 || back.Steps[0].Latency.P95 != r.Steps[0].Latency.P95 ||
		back.Steps[1].RequestRate != 1800 || back.Steps[0].Server.Queue != r.Steps[0].Server.Queue {
		t.Errorf("JSON round trip lost data:\n%s", b.String())
	}
	for _, key := range []string{`"p95_ns"`, `"compute_infer_ns"`, `"server_requests"`, `"mode": "request_rate"`} {
		if !strings.Contains(b.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestWritePlot(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		file    string
		magic   string
		wantErr string
	}{
		{"latency.svg", "<?xml", ""},
		{"latency.png", "\x89PNG", ""},
		{"LATENCY.SVG", "<?xml", ""},
		{"latency.jpg", "", "want a .svg or .png file"},
		{"latency", "", "want a .svg or .png file"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			err := WritePlot(path, sampleReport("concurrency"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("WritePlot(%s) = %v, want an error with %q", tt.file, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte(tt.magic)) {
				t.Errorf("%s starts with %q, want %q", tt.file, b[:min(len(b), 8)], tt.magic)
			}
			if strings.HasSuffix(strings.ToLower(tt.file), ".svg") {
				for _, s := range []string{"p50", "p99", "throughput (inferences/s)", "latency (ms)"} {
					if !bytes.Contains(b, []byte(s)) {
						t.Errorf("the SVG lacks %q", s)
					}
				}
			}
		})
	}
}
