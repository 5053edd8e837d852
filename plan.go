package kiln

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/ops"
)

// BuildOptions configure Build (see build.Options).
type BuildOptions = build.Options

// ErrPlan is wrapped by the errors of loading a plan that cannot run here
// (another device, another kiln version, a corrupt file): rebuild it.
var ErrPlan = errors.New("kiln: cannot use plan")

// IsPlan reports whether the file at path is a kiln plan (starts with the
// plan magic) rather than an ONNX model.
func IsPlan(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, len(plan.Magic))
	if _, err := io.ReadFull(f, b); err != nil {
		return false
	}
	return string(b) == plan.Magic
}

func loadPlan(path string, o LoadOptions) (*Model, error) {
	open := plan.Open
	if o.Mmap {
		open = plan.OpenMapped
	}
	p, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrPlan, filepath.Base(path), err)
	}
	if err := p.CheckDeviceIn(o.Devices, o.Device); err != nil {
		p.Close()
		return nil, fmt.Errorf("%w %s: %w", ErrPlan, filepath.Base(path), err)
	}
	m, err := fromPlan(p, o)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("kiln: load %s: %w", filepath.Base(path), err)
	}
	return m, nil
}

// Build builds the ONNX model at path in memory, as kiln build would
// (optimization, precision, profiles, tactics), and returns it ready to
// run. The build's plan header (layers, notes, accuracy) is available from
// the model's Plan method.
func Build(ctx context.Context, path string, o BuildOptions) (*Model, error) {
	res, err := build.Build(ctx, path, o)
	return fromBuild(res, o.Devices, err)
}

// BuildBytes is Build for a model in memory.
func BuildBytes(ctx context.Context, name string, model []byte, o BuildOptions) (*Model, error) {
	res, err := build.BuildBytes(ctx, name, model, o)
	return fromBuild(res, o.Devices, err)
}

func fromBuild(res *build.Result, set device.Set, err error) (*Model, error) {
	if err != nil {
		return nil, fmt.Errorf("kiln: %w", err)
	}
	defer res.Close()
	var buf bytes.Buffer
	if err := res.Write(&buf); err != nil {
		return nil, fmt.Errorf("kiln: %w", err)
	}
	p, err := plan.Decode(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("kiln: %w", err)
	}
	m, err := fromPlan(p, LoadOptions{Devices: set})
	if err != nil {
		return nil, fmt.Errorf("kiln: %w", err)
	}
	return m, nil
}

// fromPlan prepares one runner per profile of p: a CPU engine, or a
// program of the plan's device.
func fromPlan(p *plan.Plan, lo LoadOptions) (*Model, error) {
	h := &p.Header
	m := &Model{plan: p, profiles: h.Profiles}
	var exec device.Executor
	ordinal := 0
	dev := h.Device
	if lo.Device != "" {
		dev = lo.Device // checked by CheckDeviceAt
	}
	if h.Device != "cpu" {
		d, ord, err := devices.Or(lo.Devices).Lookup(dev)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPlan, err)
		}
		x, ok := d.(device.Executor)
		if !ok {
			return nil, fmt.Errorf("%w: device %q cannot run plans", ErrPlan, h.Device)
		}
		exec, ordinal = x, ord
	}
	n := max(len(h.Profiles), 1)
	for i := 0; i < n; i++ {
		g, err := p.Graph()
		if err != nil {
			return nil, err
		}
		if m.graph == nil {
			m.graph = g
		}
		if exec != nil {
			// The choices made at build time (the header's tactic table)
			// are applied without timing again.
			o := device.ExecOptions{Ordinal: ordinal, Precision: h.Precision, Blobs: p.ProfileBlobs(i), Tactics: h.DeviceTactics(i)}
			if len(h.Profiles) > 0 {
				o.MaxShapes = h.Profiles[i].Shapes(2)
			}
			if _, err := ops.InferGraph(g); err != nil {
				return nil, err
			}
			// The partition made at build time, made again: the layers the
			// device lacks run on the CPU, and the plan's sections line up.
			prog, _, err := partition.Compile(g, exec, o, partition.Options{})
			if err != nil {
				m.closeRunners()
				return nil, err
			}
			m.runners = append(m.runners, prog)
			continue
		}
		o := engine.Options{MemoryLimit: lo.MemoryLimit}
		if len(h.Profiles) > 0 {
			o.Profiles = h.Profiles[i : i+1]
		}
		if i < len(h.Tactics) && len(h.Tactics[i]) > 0 {
			o.Tactics = map[string]string{}
			for _, t := range h.Tactics[i] {
				o.Tactics[t.Layer] = t.Tactic
			}
		}
		e, err := engine.NewWithOptions(g, o)
		if err != nil {
			if len(h.Profiles) > 1 {
				err = fmt.Errorf("profile %d (%s): %w", i, h.Profiles[i].Name, err)
			}
			return nil, err
		}
		if m.eng == nil {
			m.eng = e
		}
		m.runners = append(m.runners, e)
	}
	return m, nil
}

func (m *Model) closeRunners() {
	for _, r := range m.runners {
		if c, ok := r.(interface{ Close() error }); ok {
			c.Close()
		}
	}
	m.runners = nil
}

// RunObserved is Run that shows every intermediate value of the model to
// observe (see engine.RunObserved). Only models running on the CPU have it.
func (m *Model) RunObserved(ctx context.Context, inputs map[string]*Tensor, observe engine.Observer) (map[string]*Tensor, error) {
	if err := m.acquire(); err != nil {
		return nil, err
	}
	defer m.release()
	r := runner(m.eng)
	if len(m.profiles) > 0 {
		i, err := engine.CheckProfiles(m.profiles, inputs)
		if err != nil {
			return nil, err
		}
		r = m.runners[i]
	}
	e, ok := r.(*engine.Engine)
	if !ok || e == nil {
		return nil, fmt.Errorf("kiln: observing intermediate values needs a CPU model (this one runs on %s)", m.plan.Header.Device)
	}
	return e.RunObserved(ctx, inputs, observe)
}

// Plan returns the plan header of a model loaded from a plan or built with
// Build, or nil.
func (m *Model) Plan() *plan.Header {
	if m.plan == nil {
		return nil
	}
	return &m.plan.Header
}
