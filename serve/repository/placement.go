package repository

import (
	"fmt"
	"os"
	"slices"
	"strconv"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
)

// Instance is one execution context of a model version, as its config's
// instance_group places it: which group, which device, which engine.
type Instance struct {
	// Name is the instance's name: the group's name (by default MODEL_N
	// for the N-th group) and the instance's number in the group.
	Name  string
	Group string
	// Kind is KIND_GPU or KIND_CPU (KIND_AUTO and KIND_MODEL run on the
	// CPU).
	Kind string
	// GPU is the CUDA ordinal of a KIND_GPU instance (among the GPUs that
	// CUDA_VISIBLE_DEVICES leaves visible), -1 for the CPU.
	GPU int
	// UUID identifies the GPU ("GPU-...", the gpu_uuid of the nv_gpu_*
	// metrics); empty for the CPU or when the driver cannot say.
	UUID string
	// Device is the engine's device: "cpu" or "cuda:N".
	Device string
	// Model is the engine the instance runs: one per device, shared by
	// the device's instances (nil until loaded).
	Model *kiln.Model
}

// VisibleGPUs lists the GPUs this process can use, by CUDA ordinal, each
// by its UUID (the "cuda" device of package devices, which honours
// CUDA_VISIBLE_DEVICES). Placement asks it for instance groups of kind
// KIND_GPU; tests replace it. Without a CUDA driver (or in a binary built
// without the cuda device) it returns an error.
var VisibleGPUs = func() ([]string, error) {
	d, _, err := devices.Lookup("cuda")
	if err != nil {
		return nil, err
	}
	u, ok := d.(device.Units)
	if !ok {
		return nil, fmt.Errorf("%w: device cuda does not list its GPUs", device.ErrUnavailable)
	}
	return u.Units()
}

// ErrPlacement is returned when an instance group names a GPU this
// process cannot use. It wraps ErrConfig (a load request asking for it is
// a bad request).
var ErrPlacement = fmt.Errorf("%w: instance placement", ErrConfig)

// Placement returns the instances cfg's instance groups ask for, in order:
// group by group, GPU by GPU, count instances each. A KIND_GPU group runs
// count instances on each GPU of its gpus list, or on every visible GPU
// when the list is empty (the completed config lists them); other kinds
// run count instances on the CPU. gpus are the visible GPUs
// (VisibleGPUs); nil means they could not be listed (no driver): GPU
// numbers are then not checked and a group without a list is placed on
// GPU 0, so that the engine's build says what is missing. A GPU number out
// of range is an error naming the field. Without groups (or with only
// empty ones) there are DefaultCPUInstances(cfg) CPU instances.
func Placement(model string, cfg *Config, gpus []string) ([]Instance, error) {
	var out []Instance
	if cfg == nil {
		return defaultInstances(model, cfg), nil
	}
	for gi, g := range cfg.InstanceGroups {
		group := g.Name
		if group == "" {
			group = model + "_" + strconv.Itoa(gi)
		}
		if g.Kind != "KIND_GPU" {
			for k := range g.Count {
				out = append(out, Instance{Name: fmt.Sprintf("%s_%d", group, k), Group: group, Kind: "KIND_CPU", GPU: -1, Device: "cpu"})
			}
			continue
		}
		list := g.GPUs
		if len(list) == 0 {
			list = []int{0}
			if len(gpus) > 0 {
				list = make([]int, len(gpus))
				for i := range list {
					list[i] = i
				}
			}
		}
		k := 0
		for _, gpu := range list {
			if gpus != nil && gpu >= len(gpus) {
				vis := "unset"
				if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
					vis = strconv.Quote(v)
				}
				return nil, fmt.Errorf("%w: model %s: instance_group[%d] (%s).gpus: GPU %d is out of range: %d GPU(s) visible (0..%d; CUDA_VISIBLE_DEVICES %s)",
					ErrPlacement, model, gi, group, gpu, len(gpus), len(gpus)-1, vis)
			}
			uuid := ""
			if gpu < len(gpus) {
				uuid = gpus[gpu]
			}
			for range g.Count {
				out = append(out, Instance{Name: fmt.Sprintf("%s_%d", group, k), Group: group, Kind: "KIND_GPU", GPU: gpu, UUID: uuid, Device: fmt.Sprintf("cuda:%d", gpu)})
				k++
			}
		}
	}
	if len(out) == 0 {
		out = defaultInstances(model, cfg)
	}
	return out, nil
}

// defaultInstances are the CPU instances of a config without instance
// groups (or with only empty ones): DefaultCPUInstances of them, in one
// group named as the first group is (MODEL_0).
func defaultInstances(model string, cfg *Config) []Instance {
	out := make([]Instance, DefaultCPUInstances(cfg))
	for k := range out {
		out[k] = Instance{Name: fmt.Sprintf("%s_0_%d", model, k), Group: model + "_0", Kind: "KIND_CPU", GPU: -1, Device: "cpu"}
	}
	return out
}

// DefaultCPUInstances is how many CPU instances a model gets when its
// config asks for none (no instance_group, or only groups of count 0): as
// Triton's core sets a group's count by default (SetDefaultInstanceCount;
// the model configuration guide's "CPU Model Instance": "the default
// instance count will be 2 for selected backends (Onnxruntime)"), 2 for a
// model of the ONNX Runtime backend (kiln's default platform,
// onnxruntime_onnx, or backend onnxruntime), 1 for any other. (Triton
// places such a model on the GPUs when there are any; kiln runs a model
// on the CPU unless its config asks for KIND_GPU.)
func DefaultCPUInstances(cfg *Config) int {
	if cfg == nil {
		return 2
	}
	switch {
	case cfg.Backend == "onnxruntime":
		return 2
	case cfg.Backend == "" && (cfg.Platform == "" || cfg.Platform == "onnxruntime_onnx"):
		return 2
	}
	return 1
}

// Devices returns the distinct devices of instances, in order of first
// use.
func Devices(instances []Instance) []string {
	var out []string
	for _, in := range instances {
		if !slices.Contains(out, in.Device) {
			out = append(out, in.Device)
		}
	}
	return out
}

// ForDevice returns cfg narrowed to the instances on dev ("cpu" or
// "cuda:N"): a copy whose instance groups are one group of those
// instances on that device, so that BuildOptions builds for dev. The
// model loader gets it when a model's instances span several devices.
func (c *Config) ForDevice(dev string, instances []Instance) *Config {
	n := *c
	g := InstanceGroup{Kind: "KIND_CPU"}
	for _, in := range instances {
		if in.Device != dev {
			continue
		}
		g.Count++
		if in.Kind == "KIND_GPU" {
			g.Kind, g.GPUs = "KIND_GPU", []int{in.GPU}
		}
	}
	n.InstanceGroups = []InstanceGroup{g}
	return &n
}

// needsGPUs reports whether cfg has a KIND_GPU instance group.
func (c *Config) needsGPUs() bool {
	if c == nil {
		return false
	}
	for _, g := range c.InstanceGroups {
		if g.Kind == "KIND_GPU" {
			return true
		}
	}
	return false
}

// completeGroups makes cfg's instance groups say what Placement placed, as
// Triton's completed config does: a config asking for no instances gets
// the default group (MODEL_0, KIND_CPU, DefaultCPUInstances), an unnamed
// group its name (MODEL_N), and a group of another kind than KIND_GPU runs
// on the CPU, so it is listed as KIND_CPU.
func (c *Config) completeGroups(instances []Instance) {
	if !slices.ContainsFunc(c.InstanceGroups, func(g InstanceGroup) bool { return g.Count > 0 }) {
		c.InstanceGroups = []InstanceGroup{{Name: c.Name + "_0", Kind: "KIND_CPU", Count: len(instances)}}
		return
	}
	groups := make([]InstanceGroup, len(c.InstanceGroups))
	for gi, g := range c.InstanceGroups {
		if g.Name == "" {
			g.Name = c.Name + "_" + strconv.Itoa(gi)
		}
		if g.Kind != "KIND_GPU" {
			g.Kind = "KIND_CPU"
		}
		groups[gi] = g
	}
	c.InstanceGroups = groups
}

// resolveGPUs fills the gpus list of each KIND_GPU group that has none
// with the GPUs instances placed it on, as Triton's completed config does.
func (c *Config) resolveGPUs(instances []Instance) {
	for gi := range c.InstanceGroups {
		g := &c.InstanceGroups[gi]
		if g.Kind != "KIND_GPU" || len(g.GPUs) > 0 {
			continue
		}
		group := g.Name
		if group == "" {
			group = c.Name + "_" + strconv.Itoa(gi)
		}
		for _, in := range instances {
			if in.Group == group && in.Kind == "KIND_GPU" && !slices.Contains(g.GPUs, in.GPU) {
				g.GPUs = append(g.GPUs, in.GPU)
			}
		}
	}
}

// loadPlaced loads the model file at path once per device of instances
// (in order, so that a plan one GPU builds is in the plan cache when the
// next GPU of the same fingerprint looks for it) and gives each instance
// its device's model. With one device, load gets cfg itself; with
// several, cfg narrowed to each device (ForDevice).
func loadPlaced(path string, cfg *Config, load ModelLoader, instances []Instance) ([]Instance, error) {
	devs := Devices(instances)
	models := map[string]*kiln.Model{}
	closeAll := func() {
		for _, m := range models {
			m.Close()
		}
	}
	for _, dev := range devs {
		c := cfg
		if len(devs) > 1 {
			c = cfg.ForDevice(dev, instances)
		}
		m, err := load(path, c)
		if err != nil {
			closeAll()
			if len(devs) > 1 {
				return nil, fmt.Errorf("on %s: %w", dev, err)
			}
			return nil, err
		}
		models[dev] = m
	}
	out := slices.Clone(instances)
	for i := range out {
		out[i].Model = models[out[i].Device]
	}
	return out, nil
}
