package plan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kilnai/kiln/device"
)

// ApplyLayerReports copies into h what a device that runs graphs itself
// reported in its device.LayersBlob sections among blobs (the sections the
// builder stores: profile i > 0's own under ProfileBlobPrefix, each device
// segment's under its segment prefix): per profile a tactic set (Tactics)
// with each layer's implementation, time and workspace, and the device's
// choice (Name, Sig) where it chose among several; the precision
// each of profile 0's layers computes in; and DeviceMemory, each segment's
// added up, the largest over the profiles. Layers no report names (those
// on the CPU) get no tactic. It changes nothing when no blob is a report,
// and returns an error naming a damaged one.
func (h *Header) ApplyLayerReports(blobs []Blob) error {
	data := map[string][]byte{}
	names := make([]string, 0, len(blobs))
	for _, b := range blobs {
		data[b.Name] = b.Data
		names = append(names, b.Name)
	}
	n := max(len(h.Profiles), 1)
	sets := make([][]Tactic, n)
	var mem *device.Memory
	for i := range n {
		var runs map[string]device.LayerRun
		var total device.Memory
		resolved := profileNames(names, i)
		var reports []string
		for name, stored := range resolved {
			if name == device.LayersBlob || strings.HasSuffix(name, "/"+device.LayersBlob) {
				reports = append(reports, stored)
			}
		}
		sort.Strings(reports)
		for _, stored := range reports {
			r, err := device.ParseLayerReport(data[stored])
			if err != nil {
				return fmt.Errorf("%w: section %s: %w", ErrCorrupt, stored, err)
			}
			if runs == nil {
				runs = map[string]device.LayerRun{}
			}
			for _, l := range r.Layers {
				runs[l.Name] = l
			}
			total = total.Add(r.Memory)
		}
		if runs == nil {
			continue
		}
		if mem == nil {
			mem = &device.Memory{}
		}
		*mem = mem.Max(total)
		for j, l := range h.Layers {
			r, ok := runs[l.Name]
			if !ok || l.Device == "cpu" {
				continue
			}
			sets[i] = append(sets[i], Tactic{Layer: l.Name, Tactic: r.Tactic, Time: r.Time, Cached: r.Cached, Workspace: r.Workspace,
				Name: r.Choice, Sig: r.Sig})
			if i == 0 && r.Precision != "" {
				h.Layers[j].Precision = r.Precision
			}
		}
	}
	if mem == nil {
		return nil
	}
	h.Tactics = sets
	h.Stats.DeviceMemory = mem
	return nil
}

// DeviceTactics returns profile i's choices (Tactics[i]) as a device takes
// them at load (device.ExecOptions.Tactics): in a plan for a device that
// runs graphs itself, the device's own (Name and Sig) and the CPU's for
// the layers that fall back to it (Tactic); in a CPU plan every layer's
// Tactic. Layers of a device plan without a Name (kernels that were not
// chosen among others, or plans that kept the device's choices in its
// sections) are left out. nil when the profile has none.
func (h *Header) DeviceTactics(i int) []device.Tactic {
	if i < 0 || i >= len(h.Tactics) {
		return nil
	}
	onCPU := map[string]bool{}
	for _, l := range h.Layers {
		if l.Device == "cpu" {
			onCPU[l.Name] = true
		}
	}
	var out []device.Tactic
	for _, t := range h.Tactics[i] {
		switch {
		case t.Name != "":
			out = append(out, device.Tactic{Layer: t.Layer, Tactic: t.Name, Sig: t.Sig})
		case DeviceBase(h.Device) == "cpu" || onCPU[t.Layer]:
			out = append(out, device.Tactic{Layer: t.Layer, Tactic: t.Tactic})
		}
	}
	return out
}
