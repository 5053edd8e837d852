package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln/api/inference"
)

// BenchmarkGatewayOverhead measures what kiln gateway adds to a request's
// latency on loopback: one kiln serve process (tinycnn) and one kiln
// gateway process in front of it; each iteration sends one request to the
// server directly and one through the gateway, alternately (one at a time,
// so that only the gateway's work differs), and the benchmark reports the
// p50 and p99 of both and their differences, in microseconds.
// bench/gateway-overhead.sh runs it.
func BenchmarkGatewayOverhead(b *testing.B) {
	s := serve(b, "serve", repo(b, "tinycnn"), b.TempDir())
	file := filepath.Join(b.TempDir(), "backends")
	os.WriteFile(file, []byte(backendLine(s.http, s)), 0o644)
	gw := start(b, "gateway", "gateway", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
		"--backends-file", file, "--slow-start", "0")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	body := tinyRequest()
	httpInfer := func(addr string) func() error {
		return func() error {
			resp, err := client.Post("http://"+addr+"/v2/models/tinycnn/infer", "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return &httpStatus{resp.StatusCode}
			}
			return nil
		}
	}
	grpcInfer := func(addr string) func() error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		c := inference.NewGRPCInferenceServiceClient(cc)
		req := tinyGRPCRequest("tinycnn")
		return func() error {
			_, err := c.ModelInfer(context.Background(), req)
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for httpInfer(gw.http)() != nil {
		if time.Now().After(deadline) {
			b.Fatal("the gateway did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, bc := range []struct {
		name        string
		direct, via func() error
	}{
		{"http", httpInfer(s.http), httpInfer(gw.http)},
		{"grpc", grpcInfer(s.grpc), grpcInfer(gw.grpc)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range 200 { // warm up connections and caches
				bc.direct()
				bc.via()
			}
			direct := make([]time.Duration, 0, b.N)
			via := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			cpu0 := cpuTime(gw.cmd.Process.Pid)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if err := bc.direct(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := bc.via(); err != nil {
					b.Fatal(err)
				}
				direct = append(direct, t1.Sub(t0))
				via = append(via, time.Since(t1))
			}
			b.StopTimer()
			if cpu0 >= 0 {
				// the gateway process's CPU time (user and system) per request it proxied
				b.ReportMetric(float64((cpuTime(gw.cmd.Process.Pid)-cpu0).Microseconds())/float64(b.N), "gateway-cpu-us/req")
			}
			slices.Sort(direct)
			slices.Sort(via)
			q := func(d []time.Duration, p float64) float64 {
				return float64(d[min(len(d)-1, int(p*float64(len(d))))].Nanoseconds()) / 1e3
			}
			b.ReportMetric(q(direct, 0.5), "direct-p50-us")
			b.ReportMetric(q(via, 0.5), "gateway-p50-us")
			b.ReportMetric(q(via, 0.5)-q(direct, 0.5), "added-p50-us")
			b.ReportMetric(q(direct, 0.99), "direct-p99-us")
			b.ReportMetric(q(via, 0.99), "gateway-p99-us")
			b.ReportMetric(q(via, 0.99)-q(direct, 0.99), "added-p99-us")
		})
	}
}

type httpStatus struct{ code int }

func (e *httpStatus) Error() string { return http.StatusText(e.code) }

// cpuTime is the user and system CPU time of process pid so far, from
// /proc/PID/stat (Linux); -1 when it cannot be read.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime, in clock ticks
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}
