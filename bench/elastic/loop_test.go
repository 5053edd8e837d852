package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestElasticLoopShort runs the loop as bench/elastic-loop.sh does, twenty
// times faster (about a minute): bert_mini replicas with 250m CPU limits,
// Prometheus, kiln gateway, kiln perf at 6, 150, then 6 requests/s (more than
// the script's step: queues build up at the real speed, only the controller
// is faster). The load step must scale the replicas up, the fall must bring
// them back to minReplicas, and no request may fail, not even while
// replicas drain. The fall lasts 60 s (1200 s scaled): on a loaded machine
// (CI runs other packages' tests beside it) the replicas' queues drain
// slower, and 40 s once ended with more than minReplicas.
// It needs root (the CPU limits are cgroup quotas), Debian's prometheus
// and ../shared/models/bert_mini; it skips without them, and under -short.
func TestElasticLoopShort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the elastic loop takes a minute")
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not found: bash scripts/deps-deploy.sh installs Debian's prometheus package")
	}
	model := "../../../shared/models/bert_mini"
	if _, err := os.Stat(filepath.Join(model, "model.onnx")); err != nil {
		t.Skipf("bert_mini not found (%v): the shared models folder is next to the repository", err)
	}
	probe := filepath.Join("/sys/fs/cgroup/cpu", "kiln-elastic-probe-"+filepath.Base(t.TempDir()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		t.Skipf("no writable cgroup v1 cpu controller for the replicas' CPU limits (root needed): %v", err)
	}
	os.Remove(probe)
	dir := t.TempDir()
	kiln := filepath.Join(dir, "kiln")
	build := exec.Command("go", "build", "-o", kiln, "github.com/kilnai/kiln/cmd/kiln")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build kiln: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	o := options{kiln: kiln, prometheus: prom, chart: "../../deploy/helm/kiln", values: []string{"values.yaml"}, out: out,
		window: 5 * time.Second, scale: 20, sync: 15 * time.Second, cpu: "250m", cpuPeriod: 10 * time.Millisecond,
		model: "bert_mini", onnx: filepath.Join(model, "model.onnx"), inputData: filepath.Join(model, "test_data_set_0"),
		binary: true, maxThreads: 32}
	if o.phases, err = parsePhases("60s:6,240s:150,1200s:6"); err != nil {
		t.Fatal(err)
	}
	var logw io.Writer = io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := run(ctx, o, logw)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.summaryLine())
	if res.peak <= res.hpa.Min {
		t.Errorf("the load step did not scale up: peak %d replicas (min %d)\n%s", res.peak, res.hpa.Min, strings.Join(res.events, "\n"))
	}
	if n := len(res.samples); n == 0 || res.samples[n-1].Replicas != res.hpa.Min {
		t.Errorf("the replicas did not come back to %d after the load fell\n%s", res.hpa.Min, strings.Join(res.events, "\n"))
	}
	if res.lost() != 0 {
		t.Errorf("%d requests failed\n%s", res.lost(), strings.Join(res.events, "\n"))
	}
	for _, e := range res.exits {
		if e.Code != 0 || e.Killed {
			t.Errorf("%s exited %d (killed %v) after its drain", e.Name, e.Code, e.Killed)
		}
	}
	for _, f := range []string{"elastic-loop.csv", "elastic-loop.svg", "elastic-loop.md"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}
