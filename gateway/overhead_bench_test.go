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
//
// With KILN_OLD_BIN (another kiln binary, say of an earlier commit), a
// second gateway of that binary runs in front of the same server, and
// each iteration sends a third request through it (the two gateways in
// turn first): old and new measured in the same run, on the same machine
// at the same time; the old one's numbers are reported as old-*.
func BenchmarkGatewayOverhead(b *testing.B) {
	s := serve(b, "serve", repo(b, "tinycnn"), b.TempDir())
	file := filepath.Join(b.TempDir(), "backends")
	os.WriteFile(file, []byte(backendLine(s.http, s)), 0o644)
	gwArgs := []string{"gateway", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
		"--backends-file", file, "--slow-start", "0"}
	gw := start(b, "gateway", gwArgs...)
	var gwOld *proc
	if old := os.Getenv("KILN_OLD_BIN"); old != "" {
		gwOld = startBin(b, old, "gateway-old", gwArgs...)
	}
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
	for _, p := range []*proc{gw, gwOld} {
		if p == nil {
			continue
		}
		deadline := time.Now().Add(30 * time.Second)
		for httpInfer(p.http)() != nil {
			if time.Now().After(deadline) {
				b.Fatalf("%s did not become ready", p.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	type target struct {
		name string
		http string // the HTTP address of the target, for its gRPC one see grpc
		grpc string
		pid  int // the gateway's process, 0 for the server
	}
	targets := []target{{"direct", s.http, s.grpc, 0}, {"gateway", gw.http, gw.grpc, gw.cmd.Process.Pid}}
	if gwOld != nil {
		targets = append(targets, target{"old-gateway", gwOld.http, gwOld.grpc, gwOld.cmd.Process.Pid})
	}
	for _, proto := range []string{"http", "grpc"} {
		b.Run(proto, func(b *testing.B) {
			calls := make([]func() error, len(targets))
			for i, tg := range targets {
				if proto == "http" {
					calls[i] = httpInfer(tg.http)
				} else {
					calls[i] = grpcInfer(tg.grpc)
				}
			}
			for range 200 { // warm up connections and caches
				for _, c := range calls {
					c()
				}
			}
			lat := make([][]time.Duration, len(targets))
			for i := range lat {
				lat[i] = make([]time.Duration, 0, b.N)
			}
			b.ReportAllocs()
			cpu0 := make([]time.Duration, len(targets))
			for i, tg := range targets {
				if tg.pid != 0 {
					cpu0[i] = cpuTime(tg.pid)
				}
			}
			b.ResetTimer()
			for n := range b.N {
				// the server first, then the gateways, in turn
				for k := range targets {
					i := k
					if k > 0 && len(targets) > 2 {
						i = 1 + (k-1+n)%(len(targets)-1)
					}
					t0 := time.Now()
					if err := calls[i](); err != nil {
						b.Fatalf("%s: %v", targets[i].name, err)
					}
					lat[i] = append(lat[i], time.Since(t0))
				}
			}
			b.StopTimer()
			q := func(d []time.Duration, p float64) float64 {
				return float64(d[min(len(d)-1, int(p*float64(len(d))))].Nanoseconds()) / 1e3
			}
			for i := range lat {
				slices.Sort(lat[i])
			}
			b.ReportMetric(q(lat[0], 0.5), "direct-p50-us")
			b.ReportMetric(q(lat[0], 0.99), "direct-p99-us")
			for i, tg := range targets[1:] {
				d := lat[i+1]
				prefix := strings.TrimSuffix(tg.name, "gateway")
				if cpu0[i+1] >= 0 {
					// the gateway process's CPU time (user and system) per request it proxied
					b.ReportMetric(float64((cpuTime(tg.pid)-cpu0[i+1]).Microseconds())/float64(b.N), prefix+"gateway-cpu-us/req")
				}
				b.ReportMetric(q(d, 0.5), prefix+"gateway-p50-us")
				b.ReportMetric(q(d, 0.5)-q(lat[0], 0.5), prefix+"added-p50-us")
				b.ReportMetric(q(d, 0.99), prefix+"gateway-p99-us")
				b.ReportMetric(q(d, 0.99)-q(lat[0], 0.99), prefix+"added-p99-us")
			}
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
