package repository

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
)

// TestPlacement places the instances of instance groups on the visible
// GPUs: count per GPU, every GPU for a KIND_GPU group without gpus, the
// CPU for other kinds, and a clear error for a GPU out of range.
func TestPlacement(t *testing.T) {
	two := []string{"GPU-a", "GPU-b"}
	tests := []struct {
		name, config string
		gpus         []string
		want         string // name@device per instance
		err          string
	}{
		// Triton's default count: 2 CPU instances for the ONNX Runtime
		// backend, 1 for others
		{"no config groups", "max_batch_size: 4\n", two, "m_0_0@cpu m_0_1@cpu", ""},
		{"no groups, backend onnxruntime", "backend: \"onnxruntime\"\n", nil, "m_0_0@cpu m_0_1@cpu", ""},
		{"no groups, another platform", "platform: \"pytorch_libtorch\"\n", nil, "m_0_0@cpu", ""},
		{"only an empty group", "instance_group [ { count: 0 kind: KIND_CPU } ]\n", nil, "m_0_0@cpu m_0_1@cpu", ""},
		{"cpu count 2", "instance_group [ { count: 2 kind: KIND_CPU } ]\n", two, "m_0_0@cpu m_0_1@cpu", ""},
		{"auto is the cpu", "instance_group [ { count: 1 } ]\n", nil, "m_0_0@cpu", ""},
		{"gpus [0,1] count 2", "instance_group [ { count: 2 kind: KIND_GPU gpus: [0, 1] } ]\n", two,
			"m_0_0@cuda:0/GPU-a m_0_1@cuda:0/GPU-a m_0_2@cuda:1/GPU-b m_0_3@cuda:1/GPU-b", ""},
		{"gpus [0] count 2", "instance_group [ { name: \"g\" count: 2 kind: KIND_GPU gpus: [0] } ]\n", []string{"GPU-a"},
			"g_0@cuda:0/GPU-a g_1@cuda:0/GPU-a", ""},
		{"every visible gpu", "instance_group [ { count: 1 kind: KIND_GPU } ]\n", two, "m_0_0@cuda:0/GPU-a m_0_1@cuda:1/GPU-b", ""},
		{"no driver: gpu 0, unchecked", "instance_group [ { count: 1 kind: KIND_GPU } ]\n", nil, "m_0_0@cuda:0", ""},
		{"cpu and gpu groups", "instance_group [ { count: 1 kind: KIND_CPU }, { count: 1 kind: KIND_GPU gpus: [1] } ]\n", two,
			"m_0_0@cpu m_1_0@cuda:1/GPU-b", ""},
		{"gpu out of range", "instance_group [ { count: 1 kind: KIND_GPU gpus: [0, 2] } ]\n", two, "",
			"instance_group[0] (m_0).gpus: GPU 2 is out of range: 2 GPU(s) visible (0..1; CUDA_VISIBLE_DEVICES"},
		{"no gpu visible", "instance_group [ { count: 1 kind: KIND_GPU gpus: [0] } ]\n", []string{}, "",
			"instance_group[0] (m_0).gpus: GPU 0 is out of range: 0 GPU(s) visible"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig(tt.config)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Placement("m", cfg, tt.gpus)
			if tt.err != "" {
				if !errors.Is(err, ErrPlacement) || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrPlacement (an ErrConfig) with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, in := range got {
				d := in.Name + "@" + in.Device
				if in.UUID != "" {
					d += "/" + in.UUID
				}
				s = append(s, d)
			}
			if strings.Join(s, " ") != tt.want {
				t.Errorf("placement %s, want %s", strings.Join(s, " "), tt.want)
			}
			// the completed config lists the GPUs, and counts the instances
			cfg.Name = "m"
			cfg.resolveGPUs(got)
			if n := cfg.Instances(); n != len(got) {
				t.Errorf("Instances() = %d after resolveGPUs, want %d", n, len(got))
			}
			for _, dev := range Devices(got) {
				c := cfg.ForDevice(dev, got)
				o, err := BuildOptions("", c)
				if err != nil {
					t.Fatal(err)
				}
				want := dev
				if dev == "cpu" {
					want = ""
				}
				if o.Device != want {
					t.Errorf("BuildOptions(ForDevice(%s)).Device = %q", dev, o.Device)
				}
			}
		})
	}
	if got := fmt.Sprint(Devices([]Instance{{Device: "cuda:1"}, {Device: "cpu"}, {Device: "cuda:1"}})); got != "[cuda:1 cpu]" {
		t.Errorf("Devices = %s", got)
	}
}

// TestLoadPlaced loads a model whose instance groups span devices (two
// stand-in GPUs and the CPU): the loader is called once per device, in
// order, with the config narrowed to that device (so that BuildOptions
// builds for it), each instance gets its device's model, the completed
// config lists the GPUs of a group without gpus and counts every
// instance, and a failing device's load closes the others and names it.
func TestLoadPlaced(t *testing.T) {
	saved := VisibleGPUs
	t.Cleanup(func() { VisibleGPUs = saved })
	VisibleGPUs = func() ([]string, error) { return []string{"GPU-a", "GPU-b"}, nil }
	dir := t.TempDir()
	p := filepath.Join(dir, "m", "1")
	os.MkdirAll(p, 0o755)
	os.WriteFile(filepath.Join(p, "model.onnx"), examples.TinyCNNModel, 0o644)
	os.WriteFile(filepath.Join(dir, "m", "config.pbtxt"), []byte("max_batch_size: 4\n"+
		"instance_group [ { count: 2 kind: KIND_GPU }, { count: 1 kind: KIND_CPU } ]\n"), 0o644)
	var devices []string
	fail := ""
	load := func(path string, cfg *Config) (*kiln.Model, error) {
		o, err := BuildOptions(filepath.Dir(filepath.Dir(path)), cfg)
		if err != nil {
			return nil, err
		}
		devices = append(devices, o.Device)
		if fail != "" && o.Device == fail {
			return nil, errors.New("no such GPU here")
		}
		return kiln.Load(path) // the graph on the CPU stands in for each device's engine
	}
	m, err := LoadWith(dir, "m", load)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := strings.Join(devices, " "); got != "cuda:0 cuda:1 " {
		t.Errorf("loads for devices %q, want cuda:0, cuda:1 and the CPU", got)
	}
	ins := m.Versions[0].Instances
	var got []string
	for _, in := range ins {
		got = append(got, in.Name+"@"+in.Device)
	}
	if want := "m_0_0@cuda:0 m_0_1@cuda:0 m_0_2@cuda:1 m_0_3@cuda:1 m_1_0@cpu"; strings.Join(got, " ") != want {
		t.Errorf("instances %s, want %s", strings.Join(got, " "), want)
	}
	if len(ins) == 5 && (ins[0].Model != ins[1].Model || ins[1].Model == ins[2].Model || ins[2].Model == ins[4].Model || m.Versions[0].Model != ins[0].Model) {
		t.Errorf("instances of one device must share its model, and only they")
	}
	if g := m.Config.InstanceGroups[0].GPUs; fmt.Sprint(g) != "[0 1]" || m.Config.Instances() != 5 {
		t.Errorf("completed config: gpus %v, %d instances; want [0 1] and 5", g, m.Config.Instances())
	}
	if mc := m.Config.ModelConfig(); fmt.Sprint(mc.GetInstanceGroup()[0].GetGpus()) != "[0 1]" {
		t.Errorf("ModelConfig instance_group %v", mc.GetInstanceGroup())
	}

	devices, fail = nil, "cuda:1"
	if _, err := LoadWith(dir, "m", load); err == nil || !strings.Contains(err.Error(), "on cuda:1: no such GPU here") {
		t.Errorf("a failing GPU: %v", err)
	}
}
