package deploy

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/gateway"
)

var binDir string

// kilnBinary builds kiln once for the tests of the package.
var buildKiln = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "kiln")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/kilnai/kiln/cmd/kiln").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return bin, nil
})

func kilnBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds kiln and runs it")
	}
	bin, err := buildKiln()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	flag.Parse()
	var err error
	if binDir, err = os.MkdirTemp("", "kiln-deploy-test"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// TestGatewayArgs checks the gateway container's command line against the
// real kiln gateway: every flag known and well formed (kiln gateway ARGS -h
// parses them all before printing its help), and a policy it has.
func TestGatewayArgs(t *testing.T) {
	bin := kilnBinary(t)
	for _, tc := range valuesCases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := render(tc.files...)
			if err != nil {
				t.Fatal(err)
			}
			objs := decode(t, out)
			if !slices.ContainsFunc(objs, func(o object) bool { return o.kind == "Deployment" && o.name == gatewayName }) {
				return
			}
			gw := container(t, find[appsv1.Deployment](t, objs, "Deployment", gatewayName).Spec.Template.Spec.Containers, "gateway")
			if b, err := exec.Command(bin, append(slices.Clone(gw.Args), "-h")...).CombinedOutput(); err != nil {
				t.Errorf("kiln %s -h: %v\n%s", strings.Join(gw.Args, " "), err, b)
			}
			if p, _ := flagValue(gw.Args, "policy"); !slices.Contains(gateway.PolicyNames(), p) {
				t.Errorf("gateway policy %q, kiln gateway has %v", p, gateway.PolicyNames())
			}
		})
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// localArgs turns a container's args into a local command line: the
// volumes' mount paths become folders here, the ports free loopback ports.
func localArgs(args []string, paths map[string]string, ports map[string]int) []string {
	var out []string
	for _, a := range args {
		name, v, ok := strings.Cut(a, "=")
		if ok {
			if p, ok := paths[v]; ok {
				a = name + "=" + p
			}
			if p, ok := ports[strings.TrimPrefix(name, "--")]; ok {
				a = name + "=" + strconv.Itoa(p)
			}
		}
		out = append(out, a)
	}
	return out
}

// TestChartRunsKiln runs the pod the chart renders (examples/values-fetch.yaml)
// with a real kiln binary, as the kubelet would: the build-plans
// initContainer's command, then the server's, with the volumes as local
// folders and the ports on loopback. The server must become ready on the
// startup probe's path from the plans the initContainer built (no build at
// start), answer the liveness path, serve an inference and the metrics the
// autoscaler and alerts read, and drain and exit 0 on SIGTERM within the
// pod's terminationGracePeriodSeconds.
func TestChartRunsKiln(t *testing.T) {
	out, err := render("examples/values-fetch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dep := find[appsv1.Deployment](t, decode(t, out), "Deployment", serverName)
	pod := dep.Spec.Template.Spec
	build := container(t, pod.InitContainers, "build-plans")
	srv := container(t, pod.Containers, "server")

	bin := kilnBinary(t)
	dir := t.TempDir()
	// the repository the fetch step would leave: one model, batched
	repo, cache := filepath.Join(dir, "models"), filepath.Join(dir, "plans")
	if err := os.MkdirAll(filepath.Join(repo, "tinycnn", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(repo, "tinycnn", "config.pbtxt"), []byte("max_batch_size: 8\n"), 0o644)
	if err := os.WriteFile(filepath.Join(repo, "tinycnn", "1", "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := map[string]string{}
	for _, c := range []string{"build-plans", "server"} {
		var cs = pod.InitContainers
		if c == "server" {
			cs = pod.Containers
		}
		for _, m := range container(t, cs, c).VolumeMounts {
			switch m.Name {
			case "models":
				mounts[m.MountPath] = repo
			case "plan-cache":
				mounts[m.MountPath] = cache
			}
		}
	}
	os.MkdirAll(cache, 0o755) // an emptyDir exists before the containers start

	// the initContainer
	cmd := exec.Command(bin, localArgs(build.Args, mounts, nil)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-plans %v: %v\n%s", cmd.Args, err, b)
	}

	// the server, on loopback
	ports := map[string]int{"http-port": freePort(t), "grpc-port": freePort(t), "metrics-port": freePort(t)}
	args := append(localArgs(srv.Args, mounts, ports), "--host=127.0.0.1")
	var logs bytes.Buffer
	cmd = exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", ports["http-port"])
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// the startup probe: its path until 200, at most its period x failureThreshold
	sp := srv.StartupProbe
	limit := time.Duration(sp.PeriodSeconds*sp.FailureThreshold) * time.Second
	for {
		if code, _ := get(base + sp.HTTPGet.Path); code == 200 {
			break
		}
		if time.Since(start) > limit {
			t.Fatalf("not ready on %s within the startup probe's %s; log:\n%s", sp.HTTPGet.Path, limit, logs.String())
		}
		select {
		case err := <-done:
			t.Fatalf("the server exited: %v; log:\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("ready %s after start (plans built by the initContainer)", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(logs.String(), "engine cached plan") || strings.Contains(logs.String(), "engine built") {
		t.Errorf("the server did not start from the initContainer's plans; log:\n%s", logs.String())
	}
	if code, body := get(base + srv.LivenessProbe.HTTPGet.Path); code != 200 {
		t.Errorf("liveness %s: %d %s", srv.LivenessProbe.HTTPGet.Path, code, body)
	}

	// an inference, then the metrics the HPA, KEDA and the alerts read
	data := strings.TrimSuffix(strings.Repeat("0.5,", 3*32*32), ",")
	body := `{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","data":[` + data + `]}]}`
	resp, err := http.Post(base+"/v2/models/tinycnn/infer", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("infer: %d %s", resp.StatusCode, b)
	}
	_, metrics := get(fmt.Sprintf("http://127.0.0.1:%d/metrics", ports["metrics-port"]))
	for _, want := range []string{
		`kiln_model_ready{model="tinycnn",version="1"} 1`,
		`nv_inference_request_success{model="tinycnn",version="1"} 1`,
		`nv_inference_request_duration_us{model="tinycnn",version="1"}`,
		`kiln_request_duration_us{model="tinycnn"}`,
		`nv_inference_queue_duration_us{model="tinycnn",version="1"}`,
		`kiln_request_duration_seconds_bucket{model="tinycnn",version="1"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// SIGTERM (after the preStop sleep, which is the kubelet's): the drain
	// ends and the process exits 0 within the rest of the grace period
	grace := time.Duration(*pod.TerminationGracePeriodSeconds-srv.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	stop := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v; log:\n%s", err, logs.String())
		}
		t.Logf("exited %s after SIGTERM (grace left: %s)", time.Since(stop).Round(time.Millisecond), grace)
	case <-ctx.Done():
		t.Errorf("still running %s after SIGTERM: the kubelet would kill it", grace)
	}
}
