package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/internal/tempfile"
	"github.com/kilnai/kiln/internal/version"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// Errors of Open and Decode. Each error says exactly what is wrong; they are
// distinct so that callers (kiln run, the server's plan cache) can decide to
// rebuild.
var (
	// ErrNotPlan: the file does not start with the plan magic.
	ErrNotPlan = errors.New("plan: not a kiln plan")
	// ErrFormat: the plan's format version is not the one this kiln reads.
	ErrFormat = errors.New("plan: unsupported plan format")
	// ErrCorrupt: the plan is truncated, its checksum does not match, or a
	// section is malformed.
	ErrCorrupt = errors.New("plan: corrupt plan")
	// ErrVersion: the plan was built by another kiln version.
	ErrVersion = errors.New("plan: built by another kiln version")
	// ErrDevice: the plan was built for another device than this machine's.
	ErrDevice = errors.New("plan: built for another device")
)

// Magic starts every plan file.
const Magic = "KILNPLAN"

// FormatVersion is the version of the file layout this package writes and
// reads.
const FormatVersion = 1

// Align is the alignment of every section and weight in the file, so that
// weights can be used in place from the aligned memory the plan is read
// into, or from a memory mapping.
const Align = 64

// fixed layout: magic (8) | format version (u32) | header length (u32) |
// header JSON | pad | graph (ONNX ModelProto, weights external) | pad |
// weights and blobs, each aligned | SHA-256 of everything before (32).
const (
	prefixLen   = 16
	checksumLen = sha256.Size
)

// Header is a plan's metadata: everything except the graph and the weights.
type Header struct {
	KilnVersion string             `json:"kiln_version"`
	Device      string             `json:"device"`
	Fingerprint device.Fingerprint `json:"fingerprint"`
	Created     time.Time          `json:"created"`
	Model       ModelInfo          `json:"model"`
	// BuildKey identifies everything the plan was built from, as the
	// caller of the builder keys it: kiln's plan cache stores its key (a
	// hash of the model file, the build options, the device fingerprint
	// and the kiln version) and on a cache hit checks it against the key
	// it looked up, so that a plan file swapped for another is never
	// served. Empty when nobody set it.
	BuildKey  string           `json:"build_key,omitempty"`
	Precision string           `json:"precision"` // fp32, fp16 or int8
	OptLevel  int              `json:"opt_level"`
	Profiles  []engine.Profile `json:"profiles,omitempty"`
	// Tactics holds, per profile (same index as Profiles; one entry when
	// there are no profiles), the chosen implementation by node name.
	Tactics [][]Tactic `json:"tactics,omitempty"`
	// Layers describes the optimized graph's nodes for kiln inspect.
	Layers []Layer `json:"layers"`
	Stats  Stats   `json:"stats"`
	// Notes are the builder's messages: passes applied, precision
	// decisions, the accuracy report.
	Notes    []string        `json:"notes,omitempty"`
	Accuracy json.RawMessage `json:"accuracy,omitempty"`
	// Blobs are device-specific sections (compiled GPU kernels).
	Blobs []Section `json:"blobs,omitempty"`

	Graph   Section  `json:"graph"`
	Weights []Weight `json:"weights"`
}

// ModelInfo identifies the model a plan was built from.
type ModelInfo struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Nodes  int    `json:"nodes"` // node count before optimization
}

// Tactic is the implementation chosen for one layer at a profile's opt
// shape. In plans for a device that runs graphs itself (cuda) it records
// what the device reported (ApplyLayerReports): the library algorithm or
// kernels, the time measured while tuning (0 when not timed) and the
// library workspace.
//
// Where the device chose among several implementations (a cuDNN algorithm,
// a cuBLASLt configuration, kiln's kernels) Name is that choice as the
// device names it and Sig the layer signature it was chosen for: a plan's
// load hands them back to the device (device.ExecOptions.Tactics, see
// DeviceTactics), which applies them without timing. In CPU plans, and for
// the layers of a device plan that fall back to the CPU, Tactic is itself
// the name the CPU kernels parse, and Name and Sig are empty.
type Tactic struct {
	Layer  string        `json:"layer"`
	Tactic string        `json:"tactic"`
	Time   time.Duration `json:"time_ns"`
	Cached bool          `json:"cached,omitempty"`
	// Workspace is the scratch memory the tactic needs, in bytes.
	Workspace int64  `json:"workspace_bytes,omitempty"`
	Name      string `json:"name,omitempty"`
	Sig       string `json:"sig,omitempty"`
}

// Layer is one node of the optimized graph.
type Layer struct {
	Name      string   `json:"name"`
	Op        string   `json:"op"`
	Inputs    []string `json:"inputs"`
	Outputs   []string `json:"outputs"`
	Precision string   `json:"precision"`
	// Fused lists what the node absorbed (e.g. "BatchNormalization",
	// "Relu", "residual Add"), from the optimizer's log.
	Fused []string `json:"fused,omitempty"`
	// Device is where the layer runs in a plan for a device that runs
	// graphs itself (cuda): the plan's device, or "cpu" for a layer that
	// falls back to the CPU, whose reason Fallback gives. Empty in CPU
	// plans and in plans written before kiln recorded it.
	Device   string `json:"device,omitempty"`
	Fallback string `json:"fallback,omitempty"`
	// Reason says why the layer computes in Precision where the builder
	// decided it per layer: in INT8 builds, the INT8 rule's decision, a
	// --layer-precision override or the sensitivity analysis.
	Reason string `json:"reason,omitempty"`
	// Kernel names, in CPU plans, the CPU kernel that ran the layer when
	// the plan was built: a fast kernel of the CPU registry
	// (device/cpu/kernels, e.g. "cpu.ToBlocked") or "reference", the op's
	// own. Informational: a load prepares the layer again. Empty in plans
	// for other devices and in plans written before kiln recorded it.
	Kernel string `json:"kernel,omitempty"`
}

// Stats are a plan's sizes.
type Stats struct {
	NodesBefore       int   `json:"nodes_before"`
	NodesAfter        int   `json:"nodes_after"`
	WeightBytes       int64 `json:"weight_bytes"`
	ArenaBytes        int64 `json:"arena_bytes"`
	IntermediateBytes int64 `json:"intermediate_bytes"`
	// DeviceMemory is, in plans for a device that runs graphs itself, the
	// memory on that device: its weights, and per execution context its
	// activation arena and library workspace, at the largest shapes of the
	// profile that needs most (every device segment's together). Nil in
	// CPU plans and plans written before kiln recorded it.
	DeviceMemory *device.Memory `json:"device_memory,omitempty"`
}

// Section locates a byte range of the file.
type Section struct {
	Name   string `json:"name,omitempty"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
}

// Weight locates one initializer's data.
type Weight struct {
	Name   string       `json:"name"`
	DType  tensor.DType `json:"dtype"`
	Shape  []int        `json:"shape"`
	Offset int64        `json:"offset"`
	Length int64        `json:"length"`
}

// Plan is an opened plan file: its header and, on demand, its graph.
type Plan struct {
	Header Header
	data   []byte
	closer func() error
}

// Blob is a device-specific section to store in a plan.
type Blob struct {
	Name string
	Data []byte
}

// Write serializes a plan: header h (its Graph, Weights, Blobs and
// KilnVersion are filled in here), graph g whose initializers (top-level
// constants) go to the aligned weight section, and device blobs.
func Write(w io.Writer, h Header, g *ir.Graph, blobs []Blob) error {
	h.KilnVersion = writeVersion
	mp, err := onnx.FromGraph(g, "kiln "+version.Kiln)
	if err != nil {
		return fmt.Errorf("plan: encode graph: %w", err)
	}
	// Move raw tensor data out of the graph into the weight section. The
	// offsets are relative to the start of the weight section here and
	// made absolute below, once the header size is known; the graph refers
	// to weights by index so that its size does not depend on offsets.
	type pending struct {
		tp   *onnx.TensorProto
		data []byte
	}
	var ws []pending
	h.Weights = h.Weights[:0]
	for _, tp := range mp.Graph.Initializer {
		if tp.DataType == tensor.String || tp.RawData == nil {
			continue
		}
		ws = append(ws, pending{tp, tp.RawData})
		shape := make([]int, len(tp.Dims))
		for i, d := range tp.Dims {
			shape[i] = int(d)
		}
		h.Weights = append(h.Weights, Weight{Name: tp.Name, DType: tp.DataType, Shape: shape, Length: int64(len(tp.RawData))})
		tp.RawData = nil
		tp.DataLocation = onnx.DataLocationExternal
		tp.ExternalData = []*onnx.StringStringEntryProto{
			{Key: "location", Value: weightLocation},
			{Key: "offset", Value: fmt.Sprint(len(h.Weights) - 1)},
			{Key: "length", Value: fmt.Sprint(len(ws[len(ws)-1].data))},
		}
	}
	graph := mp.Marshal()
	h.Blobs = h.Blobs[:0]
	for _, b := range blobs {
		h.Blobs = append(h.Blobs, Section{Name: b.Name, Length: int64(len(b.Data))})
	}
	// The header holds the offsets, whose values depend on the header's
	// length: iterate until the layout is stable (twice in practice).
	var hdr []byte
	for round := 0; ; round++ {
		off := alignUp(int64(prefixLen + len(hdr)))
		h.Graph = Section{Offset: off, Length: int64(len(graph))}
		off = alignUp(off + int64(len(graph)))
		for i := range h.Weights {
			h.Weights[i].Offset = off
			off = alignUp(off + h.Weights[i].Length)
		}
		for i := range h.Blobs {
			h.Blobs[i].Offset = off
			off = alignUp(off + h.Blobs[i].Length)
		}
		next, err := json.Marshal(h)
		if err != nil {
			return fmt.Errorf("plan: encode header: %w", err)
		}
		if alignUp(int64(prefixLen+len(next))) == alignUp(int64(prefixLen+len(hdr))) && round > 0 {
			hdr = next
			break
		}
		hdr = next
		if round > 8 {
			return errors.New("plan: header layout does not converge")
		}
	}
	sum := sha256.New()
	out := io.MultiWriter(w, sum)
	var pos int64
	write := func(b []byte) error {
		n, err := out.Write(b)
		pos += int64(n)
		return err
	}
	pad := func(to int64) error {
		if to < pos {
			return fmt.Errorf("plan: layout error at offset %d (want %d)", pos, to)
		}
		return write(make([]byte, to-pos))
	}
	prefix := make([]byte, prefixLen)
	copy(prefix, Magic)
	binary.LittleEndian.PutUint32(prefix[8:], FormatVersion)
	binary.LittleEndian.PutUint32(prefix[12:], uint32(len(hdr)))
	if err := write(prefix); err != nil {
		return err
	}
	if err := write(hdr); err != nil {
		return err
	}
	if err := pad(h.Graph.Offset); err != nil {
		return err
	}
	if err := write(graph); err != nil {
		return err
	}
	for i, p := range ws {
		if err := pad(h.Weights[i].Offset); err != nil {
			return err
		}
		if err := write(p.data); err != nil {
			return err
		}
	}
	for i, b := range blobs {
		if err := pad(h.Blobs[i].Offset); err != nil {
			return err
		}
		if err := write(b.Data); err != nil {
			return err
		}
	}
	if err := pad(alignUp(pos)); err != nil {
		return err
	}
	_, err = w.Write(sum.Sum(nil))
	return err
}

// writeVersion is the kiln version Write records (tests change it).
var writeVersion = version.Kiln

// weightLocation is the external-data location naming the plan's weight
// section; the offset is the weight's index in Header.Weights.
const weightLocation = "kiln-plan-weights"

func alignUp(n int64) int64 { return (n + Align - 1) / Align * Align }

// WriteFile writes a plan to path atomically (a temporary file renamed).
func WriteFile(path string, h Header, g *ir.Graph, blobs []Blob) error {
	dir := filepath.Dir(path)
	f, err := tempfile.Create(dir, ".kiln-plan-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	bw := &bufWriter{f: f}
	if err := Write(bw, h, g, blobs); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type bufWriter struct{ f *os.File }

func (b *bufWriter) Write(p []byte) (int, error) { return b.f.Write(p) }

// Decode checks and opens a plan held in memory; the plan keeps references
// into data. It verifies the magic, the format version, the layout and the
// checksum, then the kiln version (ErrVersion). It does not check the
// device: call CheckDevice before running the plan.
func Decode(data []byte) (*Plan, error) {
	if len(data) < len(Magic) || string(data[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: the file does not start with %q", ErrNotPlan, Magic)
	}
	if len(data) < prefixLen {
		return nil, fmt.Errorf("%w: truncated: %d bytes, the fixed header alone has %d", ErrCorrupt, len(data), prefixLen)
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != FormatVersion {
		return nil, fmt.Errorf("%w: the plan has format version %d, this kiln (%s) reads version %d: rebuild it with kiln build", ErrFormat, v, version.Kiln, FormatVersion)
	}
	hlen := int64(binary.LittleEndian.Uint32(data[12:]))
	if int64(len(data)) < prefixLen+hlen+checksumLen {
		return nil, fmt.Errorf("%w: truncated: %d bytes, the header alone needs %d", ErrCorrupt, len(data), prefixLen+hlen+checksumLen)
	}
	body := data[:len(data)-checksumLen]
	want := data[len(data)-checksumLen:]
	got := sha256.Sum256(body)
	if !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("%w: SHA-256 checksum mismatch (the file is truncated or was modified): stored %x, computed %x", ErrCorrupt, want[:8], got[:8])
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(data[prefixLen : prefixLen+hlen]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	if h.KilnVersion != version.Kiln {
		return nil, fmt.Errorf("%w: the plan was built by kiln %s, this is kiln %s: rebuild it with kiln build", ErrVersion, h.KilnVersion, version.Kiln)
	}
	check := func(what string, s Section) error {
		if s.Offset < prefixLen+hlen || s.Length < 0 || s.Offset%Align != 0 || s.Offset+s.Length > int64(len(body)) {
			return fmt.Errorf("%w: %s section [%d, +%d) lies outside the file (%d bytes)", ErrCorrupt, what, s.Offset, s.Length, len(body))
		}
		return nil
	}
	if err := check("graph", h.Graph); err != nil {
		return nil, err
	}
	for _, w := range h.Weights {
		if err := check("weight "+w.Name, Section{Offset: w.Offset, Length: w.Length}); err != nil {
			return nil, err
		}
		if !w.DType.Valid() || w.DType == tensor.String {
			return nil, fmt.Errorf("%w: weight %q has data type %v", ErrCorrupt, w.Name, w.DType)
		}
		if err := tensor.CheckShape(w.Shape); err != nil || int64(tensor.NumElements(w.Shape))*int64(w.DType.Size()) != w.Length {
			return nil, fmt.Errorf("%w: weight %q: %d bytes do not fit %v %v", ErrCorrupt, w.Name, w.Length, w.DType, w.Shape)
		}
	}
	for _, b := range h.Blobs {
		if err := check("blob "+b.Name, b); err != nil {
			return nil, err
		}
	}
	if len(h.Tactics) > 1 && len(h.Tactics) != len(h.Profiles) {
		return nil, fmt.Errorf("%w: %d tactic sets for %d profiles", ErrCorrupt, len(h.Tactics), len(h.Profiles))
	}
	return &Plan{Header: h, data: data}, nil
}

// Open reads the plan file at path into memory (aligned, so that weights
// are used in place from it) and checks it (see Decode). The plan owns its
// memory: rewriting or truncating the file afterwards does not affect it,
// which makes Open the right choice for a server.
func Open(path string) (*Plan, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return Decode(data)
}

// OpenMapped is Open with the file memory-mapped read-only where the system
// allows, instead of read: it saves a copy (time and memory on large plans),
// but the file must not be truncated or rewritten in place while the plan
// is in use, or the process dies of SIGBUS (replacing it by renaming a new
// file over it, as WriteFile does, is safe). Close releases the mapping.
func OpenMapped(path string) (*Plan, error) {
	data, closer, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	p, err := Decode(data)
	if err != nil {
		closer()
		return nil, err
	}
	p.closer = closer
	return p, nil
}

// ReadHeader reads only the header of the plan file at path: enough to
// see what the plan is (its build key, device, profiles) without reading
// the weights. Nothing is verified beyond the magic, the format version
// and the header's syntax: Open checks the whole file.
func ReadHeader(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	defer f.Close()
	prefix := make([]byte, prefixLen)
	if n, err := io.ReadFull(f, prefix); err != nil {
		if n < len(Magic) || string(prefix[:len(Magic)]) != Magic {
			return nil, fmt.Errorf("%w: the file does not start with %q", ErrNotPlan, Magic)
		}
		return nil, fmt.Errorf("%w: truncated: %d bytes, the fixed header alone has %d", ErrCorrupt, n, prefixLen)
	}
	if string(prefix[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: the file does not start with %q", ErrNotPlan, Magic)
	}
	if v := binary.LittleEndian.Uint32(prefix[8:]); v != FormatVersion {
		return nil, fmt.Errorf("%w: the plan has format version %d, this kiln (%s) reads version %d: rebuild it with kiln build", ErrFormat, v, version.Kiln, FormatVersion)
	}
	hlen := int64(binary.LittleEndian.Uint32(prefix[12:]))
	if st, err := f.Stat(); err == nil && prefixLen+hlen+checksumLen > st.Size() {
		return nil, fmt.Errorf("%w: truncated: %d bytes, the header alone needs %d", ErrCorrupt, st.Size(), prefixLen+hlen+checksumLen)
	}
	var h Header
	dec := json.NewDecoder(io.LimitReader(f, hlen))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	return &h, nil
}

// Close releases the plan's file mapping (OpenMapped). Graphs and tensors
// obtained from the plan must not be used after.
func (p *Plan) Close() error {
	if p.closer == nil {
		return nil
	}
	err := p.closer()
	p.closer = nil
	return err
}

// Size is the plan's size in bytes.
func (p *Plan) Size() int64 { return int64(len(p.data)) }

// CheckDevice verifies that the plan's device exists on this machine and
// has the fingerprint the plan was built for, with an error (ErrDevice)
// naming every property that differs.
func (p *Plan) CheckDevice() error { return p.CheckDeviceAt("") }

// CheckDeviceAt is CheckDevice for running the plan on another unit of its
// device than the one it was built on (a plan built on "cuda:0" run on
// "cuda:1"): name must be the plan's device with another ordinal, whose
// fingerprint must equal the plan's. An empty name is the plan's device.
func (p *Plan) CheckDeviceAt(name string) error { return p.CheckDeviceIn(nil, name) }

// CheckDeviceIn is CheckDeviceAt with the plan's device looked up in s
// (empty: kiln's devices, devices.All).
func (p *Plan) CheckDeviceIn(s device.Set, name string) error {
	if name == "" {
		name = p.Header.Device
	}
	if DeviceBase(name) != DeviceBase(p.Header.Device) {
		return fmt.Errorf("%w: the plan is for %s and cannot run on %s", ErrDevice, p.Header.Device, name)
	}
	d, ord, err := devices.Or(s).Lookup(name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDevice, err)
	}
	fp, err := device.FingerprintAt(d, ord)
	if err != nil {
		return fmt.Errorf("%w: the plan is for %s, which is not usable here: %w", ErrDevice, name, err)
	}
	if diff := device.Diff(p.Header.Fingerprint, fp); diff != "" {
		return fmt.Errorf("%w: the plan was built for %s [%s]; this machine's %s differs: %s. Rebuild the plan here with kiln build", ErrDevice, p.Header.Device, p.Header.Fingerprint, name, diff)
	}
	return nil
}

// DeviceBase returns a device name without its ordinal: "cuda" for
// "cuda:1".
func DeviceBase(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i]
	}
	return name
}

// ProfileBlobPrefix prefixes the device sections of profile i (> 0) that
// differ from profile 0's (tactics tuned at that profile's shapes); a
// device section without it is profile 0's, and every profile's where the
// profile has no own version.
func ProfileBlobPrefix(i int) string { return fmt.Sprintf("profile%d/", i) }

// ProfileBlobs returns the device sections of profile i by their names
// without the profile prefix: profile 0's, replaced by profile i's own.
func (p *Plan) ProfileBlobs(i int) map[string][]byte {
	names := make([]string, len(p.Header.Blobs))
	for j, b := range p.Header.Blobs {
		names[j] = b.Name
	}
	out := map[string][]byte{}
	for name, stored := range profileNames(names, i) {
		out[name], _ = p.Blob(stored)
	}
	return out
}

// profileNames maps the names of profile i's device sections, without
// the profile prefix, to the names they are stored under among names:
// profile 0's, replaced by profile i's own.
func profileNames(names []string, i int) map[string]string {
	out := map[string]string{}
	own := map[string]string{}
	for _, name := range names {
		if rest, ok := strings.CutPrefix(name, "profile"); ok {
			if k := strings.IndexByte(rest, '/'); k > 0 {
				if n, err := strconv.Atoi(rest[:k]); err == nil && ProfileBlobPrefix(n) == name[:len("profile")+k+1] {
					if n == i {
						own[rest[k+1:]] = name
					}
					continue
				}
			}
		}
		out[name] = name
	}
	for name, stored := range own {
		out[name] = stored
	}
	return out
}

// Blob returns the named device blob.
func (p *Plan) Blob(name string) ([]byte, bool) {
	for _, b := range p.Header.Blobs {
		if b.Name == name {
			return p.data[b.Offset : b.Offset+b.Length], true
		}
	}
	return nil, false
}

// Graph decodes the plan's graph with its weights read in place from the
// plan. Each call returns a new graph (sharing the weight memory), so that
// several engines can be prepared from one plan.
func (p *Plan) Graph() (*ir.Graph, error) {
	s := p.Header.Graph
	mp, err := onnx.DecodeModel(p.data[s.Offset : s.Offset+s.Length])
	if err != nil {
		return nil, fmt.Errorf("%w: graph: %w", ErrCorrupt, err)
	}
	g, err := onnx.ToGraph(mp, weightResolver{p})
	if err != nil {
		return nil, fmt.Errorf("%w: graph: %w", ErrCorrupt, err)
	}
	return g, nil
}

type weightResolver struct{ p *Plan }

func (r weightResolver) ExternalData(location string, index, length int64) ([]byte, error) {
	ws := r.p.Header.Weights
	if location != weightLocation || index < 0 || index >= int64(len(ws)) {
		return nil, fmt.Errorf("%w: graph refers to weight %q #%d, the plan has %d weights", ErrCorrupt, location, index, len(ws))
	}
	w := ws[index]
	if length != w.Length {
		return nil, fmt.Errorf("%w: weight %q has %d bytes, the graph expects %d", ErrCorrupt, w.Name, w.Length, length)
	}
	return r.p.data[w.Offset : w.Offset+w.Length], nil
}
