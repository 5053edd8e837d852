package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// replica is one kiln serve process: a pod of the server Deployment.
type replica struct {
	name                string
	http, grpc, metrics int
	cmd                 *exec.Cmd
	done                chan struct{} // closed when the process has exited
	exit                error
	ready               bool
	started             time.Time
}

// cluster runs the server replicas, lists the ready ones for the gateway
// (its --backends-file, as the EndpointSlices of the headless Service) and
// for Prometheus (file_sd, as the ServiceMonitor's endpoints), and removes
// a replica as Kubernetes deletes a pod: out of the endpoints, preStop
// sleep, SIGTERM, SIGKILL after the grace period.
type cluster struct {
	kiln      string
	dir       string
	args      []string // the chart's server args, ports and paths replaced per replica
	preStop   time.Duration
	grace     time.Duration
	probe     time.Duration // the startup probe's period
	cpuQuota  int           // cfs_quota_us per replica; 0: no limit
	cpuPeriod int           // cfs_period_us
	cgroupDir string
	log       func(format string, args ...any)

	mu       sync.Mutex
	live     []*replica // the Deployment's pods that are not being deleted
	leaving  []*replica
	n        int
	exits    []exitRecord
	draining sync.WaitGroup
}

// exitRecord is how a deleted replica ended.
type exitRecord struct {
	Name    string
	Code    int
	Drain   time.Duration // from SIGTERM to exit
	Killed  bool
	Message string
}

func (c *cluster) backendsFile() string { return filepath.Join(c.dir, "backends.txt") }
func (c *cluster) targetsFile() string  { return filepath.Join(c.dir, "targets.json") }

// freePorts reserves n free loopback ports (closed again before use).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// serverArgs is the chart's server command for one replica: its ports and
// plan cache, on loopback. The drain's durations stay as they are: a drain
// ends when its requests are done, and a shorter --exit-timeout would only
// cut it.
func serverArgs(chartArgs []string, r *replica, planCache string) []string {
	out := []string{}
	for _, a := range chartArgs {
		name, val, ok := strings.Cut(a, "=")
		if !ok {
			out = append(out, a)
			continue
		}
		switch name {
		case "--http-port":
			val = strconv.Itoa(r.http)
		case "--grpc-port":
			val = strconv.Itoa(r.grpc)
		case "--metrics-port":
			val = strconv.Itoa(r.metrics)
		case "--plan-cache":
			val = planCache
		}
		out = append(out, name+"="+val)
	}
	return append(out, "--host=127.0.0.1")
}

// start starts n replicas; each joins the endpoints when its readiness
// endpoint answers 200.
func (c *cluster) start(ctx context.Context, n int) error {
	for range n {
		ports, err := freePorts(3)
		if err != nil {
			return err
		}
		c.mu.Lock()
		r := &replica{name: fmt.Sprintf("kiln-server-%d", c.n), http: ports[0], grpc: ports[1], metrics: ports[2],
			done: make(chan struct{}), started: time.Now()}
		c.n++
		c.mu.Unlock()
		args := serverArgs(c.args, r, filepath.Join(c.dir, "plans"))
		logf, err := os.Create(filepath.Join(c.dir, r.name+".log"))
		if err != nil {
			return err
		}
		if c.cpuQuota > 0 {
			// the process joins its cgroup before exec: a pod's CPU limit
			cg := filepath.Join(c.cgroupDir, r.name)
			if err := os.Mkdir(cg, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(cg, "cpu.cfs_period_us"), []byte(strconv.Itoa(c.cpuPeriod)), 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(cg, "cpu.cfs_quota_us"), []byte(strconv.Itoa(c.cpuQuota)), 0o644); err != nil {
				return err
			}
			r.cmd = exec.Command("sh", append([]string{"-c", `echo $$ > "$CGROUP/cgroup.procs" && exec "$0" "$@"`, c.kiln}, args...)...)
			r.cmd.Env = append(os.Environ(), "CGROUP="+cg)
		} else {
			r.cmd = exec.Command(c.kiln, args...)
		}
		r.cmd.Stdout, r.cmd.Stderr = logf, logf
		if err := r.cmd.Start(); err != nil {
			logf.Close()
			return err
		}
		go func() {
			r.exit = r.cmd.Wait()
			logf.Close()
			close(r.done)
		}()
		c.mu.Lock()
		c.live = append(c.live, r)
		c.mu.Unlock()
		c.log("%s started (http %d, metrics %d)", r.name, r.http, r.metrics)
		go c.probeReady(ctx, r)
	}
	return nil
}

// probeReady is the startup probe: GET /v2/health/ready every probe period
// until 200, then the replica joins the endpoints.
func (c *cluster) probeReady(ctx context.Context, r *replica) {
	url := fmt.Sprintf("http://127.0.0.1:%d/v2/health/ready", r.http)
	tm := time.NewTicker(c.probe)
	defer tm.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			c.log("%s exited before it was ready: %v", r.name, r.exit)
			return
		case <-tm.C:
		}
		resp, err := http.Get(url)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		c.mu.Lock()
		r.ready = true
		err = c.writeEndpoints()
		c.mu.Unlock()
		if err != nil {
			c.log("endpoints: %v", err)
		}
		c.log("%s ready after %.1f s", r.name, time.Since(r.started).Seconds())
		return
	}
}

// remove deletes the n newest replicas, as a ReplicaSet scaling down picks
// the youngest pods.
func (c *cluster) remove(n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range n {
		if len(c.live) == 0 {
			return errors.New("no replica left to remove")
		}
		r := c.live[len(c.live)-1]
		c.live = c.live[:len(c.live)-1]
		c.leaving = append(c.leaving, r)
		c.draining.Add(1)
		go c.terminate(r)
	}
	return c.writeEndpoints()
}

// terminate is the kubelet's pod deletion: the pod is out of the endpoints
// already; preStop sleep, SIGTERM, then SIGKILL at the grace period.
func (c *cluster) terminate(r *replica) {
	defer c.draining.Done()
	c.log("%s deleted: out of the endpoints, preStop sleep %s", r.name, c.preStop)
	select {
	case <-time.After(c.preStop):
	case <-r.done:
	}
	term := time.Now()
	rec := exitRecord{Name: r.name}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		rec.Message = err.Error()
	}
	select {
	case <-r.done:
	case <-time.After(max(c.grace-c.preStop, 0)):
		rec.Killed = true
		r.cmd.Process.Kill()
		<-r.done
	}
	rec.Drain = time.Since(term)
	var ee *exec.ExitError
	if errors.As(r.exit, &ee) {
		rec.Code = ee.ExitCode()
	} else if r.exit != nil {
		rec.Code, rec.Message = -1, r.exit.Error()
	}
	c.log("%s exited %d, %.2f s after SIGTERM%s", r.name, rec.Code, rec.Drain.Seconds(), map[bool]string{true: " (killed at the grace period)"}[rec.Killed])
	c.mu.Lock()
	c.exits = append(c.exits, rec)
	for i, x := range c.leaving {
		if x == r {
			c.leaving = append(c.leaving[:i], c.leaving[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	c.removeCgroup(r)
}

func (c *cluster) removeCgroup(r *replica) {
	if c.cpuQuota > 0 {
		os.Remove(filepath.Join(c.cgroupDir, r.name))
	}
}

// writeEndpoints writes the ready replicas to the gateway's backends file
// and Prometheus's file_sd targets, each by an atomic rename. c.mu is held.
func (c *cluster) writeEndpoints() error {
	var backends strings.Builder
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	targets := []group{}
	for _, r := range c.live {
		if !r.ready {
			continue
		}
		fmt.Fprintf(&backends, "http=127.0.0.1:%d,grpc=127.0.0.1:%d,metrics=127.0.0.1:%d # %s\n", r.http, r.grpc, r.metrics, r.name)
		targets = append(targets, group{[]string{fmt.Sprintf("127.0.0.1:%d", r.metrics)},
			map[string]string{"namespace": "kiln", "service": "kiln-server", "pod": r.name}})
	}
	js, err := json.MarshalIndent(targets, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(c.backendsFile(), []byte(backends.String())); err != nil {
		return err
	}
	return writeAtomic(c.targetsFile(), js)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// state is the replica counts: the Deployment's (not being deleted), the
// ready ones among them, and those being deleted.
func (c *cluster) state() (spec, ready, leaving int, pods []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.live {
		pods = append(pods, r.name)
		if r.ready {
			ready++
		}
	}
	return len(c.live), ready, len(c.leaving), pods
}

// stopAll ends every replica (the end of the run: SIGTERM, then SIGKILL).
func (c *cluster) stopAll() {
	c.mu.Lock()
	all := append(append([]*replica{}, c.live...), c.leaving...)
	c.mu.Unlock()
	for _, r := range all {
		r.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, r := range all {
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
		}
		c.removeCgroup(r)
	}
}
