//go:build unix

package kiln_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// The bounds FuzzPlanRun holds loading and running one plan to. Loading
// and running happen in the fuzz goroutine (and the engine's, waited for),
// so the bytes allocated meanwhile (runtime.MemStats.TotalAlloc; the plan
// file itself is memory-mapped or read once, which counts) and the CPU
// time used (getrusage) belong to that plan.
//
//   - planAllocPerByte (K): the tinycnn plan is about 30 KB; loading it
//     (header, graph, engine, tactics) and running a batch of 8 allocates
//     about 0.7 MB. 16 per byte lets a plan be read and copied a few times.
//   - planAllocFixed (C): the engine's per-run memory (the arena of the
//     profile's largest batch, 8 tinycnn images: about 0.5 MB) and the
//     run's outputs, whatever the file's size; measured at 0.3-0.8 MB. 8 MiB.
//   - planCPULimit: loading and running the seed takes about 10 ms of CPU.
const (
	planAllocPerByte = 16
	planAllocFixed   = 8 << 20
	planCPULimit     = 2 * time.Second
	// planMemLimit is the soft memory limit (GOMEMLIMIT) of the fuzz
	// processes, which the engine's default memory limit per execution
	// context follows: a plan whose arena needs more must be refused, so
	// that a load and run may also allocate up to twice that (an arena per
	// profile) beyond the bound above.
	planMemLimit = 64 << 20
	planAlign    = 64
)

func planCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// planParts is a plan taken apart: header JSON, graph (ONNX ModelProto)
// and the weights one after the other, so that the fuzzer can change each
// while the test keeps the file's layout consistent.
type planParts struct {
	header, graph, weights []byte
}

func splitPlan(tb testing.TB, b []byte) planParts {
	p, err := plan.Decode(b)
	if err != nil {
		tb.Fatal(err)
	}
	h := p.Header
	hlen := binary.LittleEndian.Uint32(b[12:])
	out := planParts{header: append([]byte(nil), b[16:16+hlen]...),
		graph: append([]byte(nil), b[h.Graph.Offset:h.Graph.Offset+h.Graph.Length]...)}
	for _, w := range h.Weights {
		out.weights = append(out.weights, b[w.Offset:w.Offset+w.Length]...)
	}
	return out
}

func alignUp(n int64) int64 { return (n + planAlign - 1) / planAlign * planAlign }

// slot is a numeric field of a plan header the fuzzer may set.
type slot struct {
	name string
	set  func(int64)
}

// headerSlots lists h's numeric fields: sections, weights (offset, length,
// type, dimensions), profile ranges, blobs.
func headerSlots(h *plan.Header) []slot {
	var out []slot
	i64 := func(name string, p *int64) { out = append(out, slot{name, func(v int64) { *p = v }}) }
	num := func(name string, p *int) { out = append(out, slot{name, func(v int64) { *p = int(v) }}) }
	i64("graph.offset", &h.Graph.Offset)
	i64("graph.length", &h.Graph.Length)
	num("opt_level", &h.OptLevel)
	for i := range h.Weights {
		w := &h.Weights[i]
		i64(fmt.Sprintf("weights[%d].offset", i), &w.Offset)
		i64(fmt.Sprintf("weights[%d].length", i), &w.Length)
		out = append(out, slot{fmt.Sprintf("weights[%d].dtype", i), func(v int64) { w.DType = tensor.DType(v) }})
		for j := range w.Shape {
			num(fmt.Sprintf("weights[%d].shape[%d]", i, j), &w.Shape[j])
		}
	}
	for i := range h.Profiles {
		for j := range h.Profiles[i].Inputs {
			r := &h.Profiles[i].Inputs[j]
			for k := range r.Min {
				num(fmt.Sprintf("profiles[%d].inputs[%d].min[%d]", i, j, k), &r.Min[k])
			}
			for k := range r.Opt {
				num(fmt.Sprintf("profiles[%d].inputs[%d].opt[%d]", i, j, k), &r.Opt[k])
			}
			for k := range r.Max {
				num(fmt.Sprintf("profiles[%d].inputs[%d].max[%d]", i, j, k), &r.Max[k])
			}
		}
	}
	for i := range h.Blobs {
		i64(fmt.Sprintf("blobs[%d].offset", i), &h.Blobs[i].Offset)
		i64(fmt.Sprintf("blobs[%d].length", i), &h.Blobs[i].Length)
	}
	return out
}

// assemblePlan writes a plan file from parts, with the header's numeric
// field number field (1-based, see headerSlots; 0 for none) set to value. A header that parses places
// the sections: the graph and each weight are written at their offsets
// (when the file can reach them) from the graph and weight bytes, zeros
// past their end. With relayout, the header first gets its sections
// pointed at consecutive aligned places (the weights' lengths, shapes and
// types stay the fuzzer's); with local, it gets this kiln's version and
// this machine's CPU fingerprint, so that mutations reach past those
// checks. A header that does not parse is written as it is, followed by
// the graph and the weights. The checksum is always right, or only the
// checksum check would be fuzzed.
func assemblePlan(parts planParts, field uint16, value int64, relayout, local bool, fp device.Fingerprint) []byte {
	hdr := parts.header
	var h plan.Header
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.DisallowUnknownFields()
	parsed := dec.Decode(&h) == nil
	edited := false
	if parsed && field > 0 {
		if slots := headerSlots(&h); len(slots) > 0 {
			slots[int(field-1)%len(slots)].set(value)
			edited = true
		}
	}
	var total int64
	for _, w := range h.Weights {
		total += max(w.Length, 0)
	}
	for _, s := range h.Blobs {
		total += max(s.Length, 0)
	}
	if total > 16<<20 {
		parsed = false // not worth writing: Decode refuses what the file lacks
	}
	if parsed && (relayout || local || edited) {
		if local {
			h.KilnVersion, h.Device, h.Fingerprint = kiln.Version, "cpu", fp
		}
		for round := 0; round < 6; round++ {
			if relayout {
				off := alignUp(int64(16 + len(hdr)))
				h.Graph = plan.Section{Offset: off, Length: int64(len(parts.graph))}
				off = alignUp(off + int64(len(parts.graph)))
				for i := range h.Weights {
					h.Weights[i].Offset = off
					off = alignUp(off + max(h.Weights[i].Length, 0))
				}
				for i := range h.Blobs {
					h.Blobs[i].Offset = off
					off = alignUp(off + max(h.Blobs[i].Length, 0))
				}
			}
			next, err := json.Marshal(h)
			if err != nil {
				break
			}
			same := alignUp(int64(16+len(next))) == alignUp(int64(16+len(hdr)))
			hdr = next
			if same && round > 0 {
				break
			}
		}
	}
	var b bytes.Buffer
	prefix := make([]byte, 16)
	copy(prefix, plan.Magic)
	binary.LittleEndian.PutUint32(prefix[8:], plan.FormatVersion)
	binary.LittleEndian.PutUint32(prefix[12:], uint32(len(hdr)))
	b.Write(prefix)
	b.Write(hdr)
	// seek pads to off when it lies ahead (and not absurdly far), else to
	// the next alignment
	seek := func(off int64) {
		to := alignUp(int64(b.Len()))
		if parsed && off >= int64(b.Len()) && off-int64(b.Len()) < 1<<20 {
			to = off
		}
		b.Write(make([]byte, to-int64(b.Len())))
	}
	seek(h.Graph.Offset)
	b.Write(parts.graph)
	if !parsed {
		seek(0)
		b.Write(parts.weights)
	} else {
		w := parts.weights
		for _, x := range h.Weights {
			seek(x.Offset)
			n := int(max(x.Length, 0))
			k := min(n, len(w))
			b.Write(w[:k])
			b.Write(make([]byte, n-k))
			w = w[k:]
		}
		for _, s := range h.Blobs {
			seek(s.Offset)
			b.Write(make([]byte, max(s.Length, 0)))
		}
	}
	seek(0)
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// runInputs makes inputs of the model's shapes, symbolic dimensions set to
// batch (first) or 1; nil when the model wants more than a few MB.
func runInputs(m *kiln.Model, batch int) map[string]*kiln.Tensor {
	in := map[string]*kiln.Tensor{}
	for _, x := range m.Inputs() {
		shape := make([]int, len(x.Shape))
		n := 1
		for i, d := range x.Shape {
			switch {
			case d >= 0:
				shape[i] = d
			case i == 0:
				shape[i] = batch
			default:
				shape[i] = 1
			}
			n *= max(shape[i], 1)
			if n > 1<<20 {
				return nil
			}
		}
		t, err := kiln.NewTensor(x.DType, shape...)
		if err != nil {
			return nil
		}
		for i := range t.Data {
			t.Data[i] = byte(i * 7)
		}
		in[x.Name] = t
	}
	return in
}

// FuzzPlanRun builds tinycnn's plan and lets the fuzzer change it: a patch
// written into its header JSON, graph (ONNX) or weights, the part cut to
// a length, and one numeric header field (a section's offset or length, a
// weight's type or dimension, a profile's range) set to a value. The test
// lays the file out (sections at their offsets, or relaid when fix asks),
// gives it this kiln's version and this machine's fingerprint (when fix
// asks) and the right checksum, so that mutations get past those checks,
// then loads it with kiln.Load from a file and, when it loads, runs it on
// a batch of 1 to 8. Any outcome but a panic or a hang is fine, within
// planCPULimit of CPU and planAllocPerByte bytes allocated per byte of
// plan plus planAllocFixed (plus the engine's memory limit twice: see
// planMemLimit). The fuzzer's inputs are edits, not whole plans, so that
// it mutates and minimizes them quickly.
func FuzzPlanRun(f *testing.F) {
	// before any engine reads the limit (fuzz processes run only this)
	old := debug.SetMemoryLimit(planMemLimit)
	f.Cleanup(func() { debug.SetMemoryLimit(old) })
	arenas := uint64(2 * engine.DefaultMemoryLimit())
	res, err := build.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, build.Options{MaxBatch: 8, NoTiming: true})
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	err = res.Write(&buf)
	res.Close()
	if err != nil {
		f.Fatal(err)
	}
	cpu, ord, err := devices.Lookup("cpu")
	if err != nil {
		f.Fatal(err)
	}
	fp, err := device.FingerprintAt(cpu, ord)
	if err != nil {
		f.Fatal(err)
	}
	seed := splitPlan(f, buf.Bytes())
	var h plan.Header
	if err := json.Unmarshal(seed.header, &h); err != nil {
		f.Fatal(err)
	}
	slotOf := func(name string) uint16 {
		for i, s := range headerSlots(&h) {
			if s.name == name {
				return uint16(i + 1)
			}
		}
		f.Fatalf("no header field %s", name)
		return 0
	}
	type edit struct {
		part       uint8
		at         uint16
		patch      []byte
		cut        uint16
		field      uint16
		value      int64
		fix, batch uint8
	}
	for _, e := range []edit{
		{fix: 3, batch: 1},
		{fix: 0, batch: 8},
		{part: 2, cut: uint16(len(seed.weights) / 2), fix: 3, batch: 2},
		{part: 2, at: 64, patch: []byte{0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0x7f}, fix: 3, batch: 1},
		{part: 1, at: 40, patch: []byte("Relu"), fix: 3, batch: 1},
		{part: 0, at: 10, patch: []byte("{}"), fix: 3, batch: 1},
		// a profile whose largest batch no machine can allocate (issue 9
		// item 4): refused at load or run, not a crash
		{field: slotOf("profiles[0].inputs[0].max[0]"), value: 1 << 24, fix: 3, batch: 1},
		{field: slotOf("profiles[0].inputs[0].max[0]"), value: 4096, fix: 3, batch: 8},
		{field: slotOf("weights[0].shape[0]"), value: 1 << 40, fix: 3, batch: 1},
		{field: slotOf("weights[0].length"), value: -64, fix: 1, batch: 1},
		{field: slotOf("weights[0].dtype"), value: 11, fix: 3, batch: 1},
		{field: slotOf("graph.length"), value: 1 << 50, fix: 2, batch: 1},
	} {
		f.Add(e.part, e.at, e.patch, e.cut, e.field, e.value, e.fix, e.batch)
	}
	dir := f.TempDir()
	verbose := os.Getenv("KILN_FUZZ_COST") != ""
	f.Fuzz(func(t *testing.T, part uint8, at uint16, patch []byte, cut, field uint16, value int64, fix, batch uint8) {
		defer planWatchdog()()
		edited := planParts{seed.header, seed.graph, seed.weights}
		p := []*[]byte{&edited.header, &edited.graph, &edited.weights}[int(part)%3]
		if cut > 0 {
			*p = (*p)[:min(int(cut), len(*p))]
		}
		if len(patch) > 0 {
			b := append([]byte(nil), *p...)
			if end := int(at) + len(patch); end > len(b) {
				b = append(b, make([]byte, end-len(b))...)
			}
			copy(b[at:], patch)
			*p = b
		}
		b := assemblePlan(edited, field, value, fix&1 != 0, fix&2 != 0, fp)
		path := filepath.Join(dir, "model.plan")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		what := "load"
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c0 := planCPUTime()
		m, err := kiln.Load(path)
		if err == nil {
			what = "load and run"
			if in := runInputs(m, 1+int(batch)%8); in != nil {
				_, _ = m.Run(ctx, in)
			}
			m.Close()
		}
		c1 := planCPUTime()
		runtime.ReadMemStats(&m1)
		alloc := m1.TotalAlloc - m0.TotalAlloc
		if verbose {
			t.Logf("%s: %d bytes, %d allocated (%.1f per byte), %v CPU, err %v", what, len(b), alloc, float64(alloc)/float64(len(b)), c1-c0, err)
		}
		if limit := uint64(planAllocPerByte*len(b)+planAllocFixed) + arenas; alloc > limit {
			t.Fatalf("%s of a %d-byte plan allocated %d bytes, above the bound %d (%d per byte + %d + twice the engine's memory limit)",
				what, len(b), alloc, limit, planAllocPerByte, planAllocFixed)
		}
		if c1-c0 > planCPULimit {
			t.Fatalf("%s of a %d-byte plan took %v of CPU, above %v", what, len(b), c1-c0, planCPULimit)
		}
	})
}

// planWallLimit is the wall time after which one input counts as hung.
const planWallLimit = 30 * time.Second

// planWatchdog crashes the fuzz process with every goroutine's stack when
// one input runs longer than planWallLimit, so that the fuzzer keeps the
// input; the returned function stops it.
func planWatchdog() func() {
	t := time.AfterFunc(planWallLimit, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		panic(fmt.Sprintf("one input ran over %v:\n%s", planWallLimit, buf))
	})
	return func() { t.Stop() }
}

// FuzzBuildRun feeds ONNX models to the path kiln serve takes to serve
// one: PlanCache.Load builds it (optimizer, precision, profiles, memory
// plan; tactic timing off, for speed), writes the plan to the cache and
// loads it from there; a second Load must then be a cache hit that loads;
// the model is run on a batch of 1. The model is one of a few bases
// (tinycnn, ONNX node tests when installed) cut to a length and patched
// at an offset, or the patch alone when base is past them: small inputs
// that the fuzzer mutates and minimizes quickly. Any outcome but a panic,
// a hang or a plan the cache wrote and cannot load is fine, within
// planCPULimit of CPU and planAllocPerByte bytes allocated per byte of
// model plus planAllocFixed and twice the engine's memory limit
// (planMemLimit).
func FuzzBuildRun(f *testing.F) {
	old := debug.SetMemoryLimit(planMemLimit)
	f.Cleanup(func() { debug.SetMemoryLimit(old) })
	arenas := uint64(2 * engine.DefaultMemoryLimit())
	bases := [][]byte{examples.TinyCNNModel}
	for _, name := range []string{"test_add", "test_conv_with_strides_padding", "test_gemm_default_no_bias", "test_relu",
		"test_maxpool_2d_default", "test_softmax_axis_1", "test_reshape_negative_dim", "test_gather_0", "test_matmul_2d"} {
		if b, err := os.ReadFile(filepath.Join("/usr/share/libonnx-testdata/data/node", name, "model.onnx")); err == nil {
			bases = append(bases, b)
		}
	}
	for i := range bases {
		f.Add(uint8(i), uint16(0), uint16(0), []byte(nil))
	}
	f.Add(uint8(0), uint16(0), uint16(len(examples.TinyCNNModel)/2), []byte(nil))
	f.Add(uint8(0), uint16(200), uint16(0), []byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(uint8(255), uint16(0), uint16(0), []byte("\x08\x07\x12\x00"))
	root := f.TempDir()
	model := filepath.Join(root, "model.onnx")
	cache := &kiln.PlanCache{Dir: filepath.Join(root, "plans"), MemoryLimit: planMemLimit}
	opts := kiln.BuildOptions{MaxBatch: 8, NoTiming: true}
	verbose := os.Getenv("KILN_FUZZ_COST") != ""
	f.Fuzz(func(t *testing.T, base uint8, cut, at uint16, patch []byte) {
		defer planWatchdog()()
		b := patch
		if int(base) < len(bases) {
			b = bases[base]
			if cut > 0 {
				b = b[:min(int(cut), len(b))]
			}
			if len(patch) > 0 {
				b = append([]byte(nil), b...)
				if end := int(at) + len(patch); end > len(b) {
					b = append(b, make([]byte, end-len(b))...)
				}
				copy(b[at:], patch)
			}
		}
		if err := os.WriteFile(model, b, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(cache.Dir) // one plan per input: the folder stays small
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		what := "build"
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c0 := planCPUTime()
		m, res, err := cache.Load(ctx, model, opts)
		if err == nil {
			m.Close()
			what = "build, load from the cache and run"
			m2, res2, err := cache.Load(ctx, model, opts)
			if err != nil || !res2.Hit {
				t.Fatalf("the plan the cache wrote (%s) does not load from it: hit %v, %v", res.Path, res2.Hit, err)
			}
			if in := runInputs(m2, 1); in != nil {
				_, _ = m2.Run(ctx, in)
			}
			m2.Close()
		}
		c1 := planCPUTime()
		runtime.ReadMemStats(&m1)
		alloc := m1.TotalAlloc - m0.TotalAlloc
		if verbose {
			t.Logf("%s: %d bytes, %d allocated (%.1f per byte), %v CPU, err %v", what, len(b), alloc, float64(alloc)/float64(max(len(b), 1)), c1-c0, err)
		}
		if limit := uint64(planAllocPerByte*len(b)+planAllocFixed) + arenas; alloc > limit {
			t.Fatalf("%s of a %d-byte model allocated %d bytes, above the bound %d (%d per byte + %d + twice the engine's memory limit)",
				what, len(b), alloc, limit, planAllocPerByte, planAllocFixed)
		}
		if c1-c0 > planCPULimit {
			t.Fatalf("%s of a %d-byte model took %v of CPU, above %v", what, len(b), c1-c0, planCPULimit)
		}
	})
}
