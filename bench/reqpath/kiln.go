package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/kilnai/kiln/api/inference"
)

// startKiln starts kiln serve from the binary bin and, with gateway, kiln
// gateway in front of it (a backends file naming the server's HTTP and
// gRPC ports, slow start off), and returns their processes and the targets
// PREFIX+kiln-http, PREFIX+kiln-grpc and, with gateway, PREFIX+gw-http and
// PREFIX+gw-grpc. The processes are returned even with an error, to be
// stopped.
func startKiln(ctx context.Context, c config, bin, prefix string, gateway bool, body []byte, greq *inference.ModelInferRequest, log io.Writer) ([]*proc, map[string]target, error) {
	var procs []*proc
	var addrs [6]string // serve: http, grpc, metrics; gateway: http, grpc, metrics
	for i := range addrs {
		var err error
		if addrs[i], err = freeAddr(); err != nil {
			return procs, nil, err
		}
	}
	port := func(a string) string { _, p, _ := net.SplitHostPort(a); return p }
	cache, err := os.MkdirTemp("", "reqpath-plans-")
	if err != nil {
		return procs, nil, err
	}
	args := []string{"serve", "--host", "127.0.0.1", "--http-port", port(addrs[0]), "--grpc-port", port(addrs[1]),
		"--metrics-port", "-1", "--plan-cache", cache}
	if c.pprof {
		args[len(args)-3] = port(addrs[2])
		args = append(args, "--pprof")
		fmt.Fprintf(log, "reqpath: %skiln serve's profiles: http://%s/debug/pprof/\n", prefix, addrs[2])
	}
	args = append(args, c.serveArgs...)
	p, err := start(ctx, log, bin, args...)
	if err != nil {
		os.RemoveAll(cache)
		return procs, nil, err
	}
	p.cleanup = func() { os.RemoveAll(cache) }
	procs = append(procs, p)
	if err := waitReady(ctx, prefix+"kiln serve", httpReady("http://"+addrs[0]+"/v2/health/ready")); err != nil {
		return procs, nil, err
	}
	pid := p.cmd.Process.Pid
	targets := map[string]target{
		prefix + "kiln-http": httpTarget(prefix+"kiln-http", "http://"+addrs[0]+"/v2/models/"+modelName+"/infer", body, pid),
		prefix + "kiln-grpc": grpcTarget(prefix+"kiln-grpc", addrs[1], greq, pid),
	}
	// the batches kiln serve's scheduler formed, from its statistics
	runs, closeRuns, err := statsRuns(addrs[1])
	if err != nil {
		return procs, nil, err
	}
	p.cleanup = func() { closeRuns(); os.RemoveAll(cache) }
	for _, name := range []string{prefix + "kiln-http", prefix + "kiln-grpc"} {
		t := targets[name]
		t.runs = runs
		targets[name] = t
	}
	if !gateway {
		return procs, targets, nil
	}
	dir, err := os.MkdirTemp("", "reqpath-gateway-")
	if err != nil {
		return procs, nil, err
	}
	file := filepath.Join(dir, "backends")
	if err := os.WriteFile(file, []byte("http="+addrs[0]+",grpc="+addrs[1]+"\n"), 0o644); err != nil {
		os.RemoveAll(dir)
		return procs, nil, err
	}
	args = []string{"gateway", "--host", "127.0.0.1", "--http-port", port(addrs[3]), "--grpc-port", port(addrs[4]),
		"--metrics-port", "-1", "--backends-file", file, "--slow-start", "0"}
	if c.pprof {
		args[8] = port(addrs[5])
		args = append(args, "--pprof")
		fmt.Fprintf(log, "reqpath: %skiln gateway's profiles: http://%s/debug/pprof/\n", prefix, addrs[5])
	}
	g, err := start(ctx, log, bin, args...)
	if err != nil {
		os.RemoveAll(dir)
		return procs, nil, err
	}
	g.cleanup = func() { os.RemoveAll(dir) }
	procs = append(procs, g)
	// ready once it has seen the server's model
	if err := waitReady(ctx, prefix+"kiln gateway", httpReady("http://"+addrs[3]+"/v2/models/"+modelName+"/ready")); err != nil {
		return procs, nil, err
	}
	gpid := g.cmd.Process.Pid
	targets[prefix+"gw-http"] = httpTarget(prefix+"gw-http", "http://"+addrs[3]+"/v2/models/"+modelName+"/infer", body, gpid)
	targets[prefix+"gw-grpc"] = grpcTarget(prefix+"gw-grpc", addrs[4], greq, gpid)
	return procs, targets, nil
}
