package cuda

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/tensor"
)

// The tests in this file need NVRTC (TestNVRTC*) or a GPU (the rest); they
// skip, saying why, where those are missing.

func openNVRTC(t testing.TB) *NVRTC {
	t.Helper()
	n, err := OpenNVRTC(Options{})
	if err != nil {
		t.Skipf("needs NVRTC (libnvrtc.so.13, .12 or .11.2; Debian: apt-get install libnvrtc11.2): %v", err)
	}
	return n
}

func TestNVRTCCompileKernels(t *testing.T) {
	n := openNVRTC(t)
	ma, mi := n.Version()
	t.Logf("NVRTC %d.%d from %s", ma, mi, n.Path())
	archs, err := n.SupportedArchs()
	if err != nil {
		t.Fatal(err)
	}
	if target, err := n.TargetFor(9, 0); err != nil || target != "sm_90" {
		t.Fatalf("TargetFor(9, 0) = %q, %v (supported: %v)", target, err, archs)
	}
	start := time.Now()
	c, err := CompileKernels(n, "sm_90")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cubin for sm_90: %d bytes in %v", len(c.CUBIN), time.Since(start))
	if len(c.CUBIN) < 4 || string(c.CUBIN[:4]) != "\x7fELF" {
		t.Fatalf("cubin does not start with the ELF magic: %q", c.CUBIN[:min(4, len(c.CUBIN))])
	}
	p, err := CompileKernels(n, "compute_90")
	if err != nil {
		t.Fatal(err)
	}
	ptx := string(p.PTX)
	for _, k := range KernelNames {
		if !strings.Contains(ptx, ".entry "+k+"(") {
			t.Errorf("PTX has no entry %s", k)
		}
	}
}

func TestNVRTCCompileError(t *testing.T) {
	n := openNVRTC(t)
	_, err := n.Compile("bad.cu", "extern \"C\" __global__ void k() { undeclared_thing(); }", "--gpu-architecture=compute_80")
	if !errors.Is(err, ErrCompile) || !errors.Is(err, ErrCUDA) {
		t.Fatalf("error %v, want ErrCompile wrapping ErrCUDA", err)
	}
	if !strings.Contains(err.Error(), "undeclared_thing") || !strings.Contains(err.Error(), "bad.cu") {
		t.Errorf("error does not carry the compiler log: %v", err)
	}
}

// gpu is a test's CUDA context on device 0, bound to the test's OS thread.
type gpu struct {
	d   *Driver
	dev Device
	ctx Context
	fp  Fingerprint
}

// bind makes the context current in a subtest, which runs on its own
// goroutine and so maybe on another OS thread.
func (g *gpu) bind(t testing.TB) {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	if err := g.d.SetCurrent(g.ctx); err != nil {
		t.Fatal(err)
	}
}

func openGPU(t testing.TB) *gpu {
	t.Helper()
	fp, err := Probe(Options{})
	if fp.GPUName == "" {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	d, err := OpenDriver(Options{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := d.Device(0)
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	ctx, err := d.RetainPrimaryContext(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetCurrent(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.ReleasePrimaryContext(dev)
		runtime.UnlockOSThread()
	})
	return &gpu{d: d, dev: dev, ctx: ctx, fp: fp}
}

func (g *gpu) module(t testing.TB) Module {
	t.Helper()
	n := openNVRTC(t)
	start := time.Now()
	c, err := CompileKernels(n, g.fp.Arch())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NVRTC compiled the kernels for %s: %d-byte cubin in %v", g.fp.Arch(), len(c.CUBIN), time.Since(start))
	m, err := g.d.ModuleLoadData(c.CUBIN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.d.ModuleUnload(m) })
	return m
}

func (g *gpu) upload(t testing.TB, b []byte) DevicePtr {
	t.Helper()
	p, err := g.d.MemAlloc(len(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.d.MemFree(p) })
	if err := g.d.MemcpyHtoD(p, b); err != nil {
		t.Fatal(err)
	}
	return p
}

func f32bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func f16bytes(x []float32) []byte {
	b := make([]byte, 2*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint16(b[2*i:], tensor.Float32ToHalf(v))
	}
	return b
}

func decode(b []byte, half bool) []float32 {
	if half {
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = tensor.HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func randoms(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()*8 - 4
	}
	return x
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

func activate(x float32, act int) float32 {
	switch act {
	case ActReLU:
		return max(x, 0)
	case ActSigmoid:
		return sigmoid(x)
	case ActSiLU:
		return x * sigmoid(x)
	}
	return x
}

func TestProbe(t *testing.T) {
	fp, err := Probe(Options{})
	if fp.GPUName == "" {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	t.Logf("fingerprint: %s", fp)
	if err != nil {
		t.Logf("missing libraries: %v", err)
	}
	if fp.ComputeMajor < 3 || fp.DriverVersion < 10000 {
		t.Errorf("implausible fingerprint %+v", fp)
	}
}

func TestKernelsOnGPU(t *testing.T) {
	g := openGPU(t)
	m := g.module(t)
	r := rand.New(rand.NewPCG(1, 2))
	const rows, cols = 37, 129 // not multiples of the block size
	n := rows * cols
	a, b, bias := randoms(r, n), randoms(r, n), randoms(r, cols)
	type kase struct {
		kernel string
		act    int // for bias_act
		want   func(i int) float32
	}
	cases := []kase{
		{kernel: "add", want: func(i int) float32 { return a[i] + b[i] }},
		{kernel: "relu", want: func(i int) float32 { return max(a[i], 0) }},
		{kernel: "sigmoid", want: func(i int) float32 { return sigmoid(a[i]) }},
		{kernel: "silu", want: func(i int) float32 { return a[i] * sigmoid(a[i]) }},
	}
	for act := range 4 {
		cases = append(cases, kase{kernel: "bias_act", act: act, want: func(i int) float32 { return activate(a[i]+bias[i%cols], act) }})
	}
	for _, half := range []bool{false, true} {
		enc, suffix, size, tol := f32bytes, "_f32", 4, 1e-5
		if half {
			enc, suffix, size, tol = f16bytes, "_f16", 2, 4e-3
			// The CPU reference sees the inputs rounded to half.
			for _, x := range [][]float32{a, b, bias} {
				copy(x, decode(f16bytes(x), true))
			}
		}
		da, db, dbias := g.upload(t, enc(a)), g.upload(t, enc(b)), g.upload(t, enc(bias))
		out := g.upload(t, make([]byte, n*size))
		for _, c := range cases {
			name := c.kernel + suffix
			t.Run(name+"/act"+string(rune('0'+c.act)), func(t *testing.T) {
				g.bind(t)
				f, err := g.d.ModuleFunction(m, name)
				if err != nil {
					t.Fatal(err)
				}
				var args *KernelArgs
				switch c.kernel {
				case "add":
					args = NewKernelArgs(4)
					args.SetPtr(0, out)
					args.SetPtr(1, da)
					args.SetPtr(2, db)
					args.SetInt64(3, int64(n))
				case "bias_act":
					args = NewKernelArgs(6)
					args.SetPtr(0, out)
					args.SetPtr(1, da)
					args.SetPtr(2, dbias)
					args.SetInt64(3, rows)
					args.SetInt32(4, cols)
					args.SetInt32(5, int32(c.act))
				default:
					args = NewKernelArgs(3)
					args.SetPtr(0, out)
					args.SetPtr(1, da)
					args.SetInt64(2, int64(n))
				}
				defer args.Free()
				if err := g.d.Launch(f, Dim3{8, 1, 1}, Dim3{128, 1, 1}, 0, Stream{}, args); err != nil {
					t.Fatal(err)
				}
				if err := g.d.Synchronize(); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, n*size)
				if err := g.d.MemcpyDtoH(got, out); err != nil {
					t.Fatal(err)
				}
				for i, v := range decode(got, half) {
					w := c.want(i)
					if math.Abs(float64(v-w)) > tol*(1+math.Abs(float64(w))) {
						t.Fatalf("element %d: got %v, want %v", i, v, w)
					}
				}
			})
		}
	}
}

// TestGraphAndEvents captures two launches on a stream into a graph,
// replays it, copies through pinned buffers and times it with events.
func TestGraphAndEvents(t *testing.T) {
	g := openGPU(t)
	m := g.module(t)
	f, err := g.d.ModuleFunction(m, "add_f32")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1 << 16
	r := rand.New(rand.NewPCG(3, 4))
	a := randoms(r, n)
	da := g.upload(t, f32bytes(a))
	out := g.upload(t, make([]byte, 4*n))
	s, err := g.d.StreamCreate(1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.StreamDestroy(s)
	// out = a + a; out = out + out: 4a.
	a1, a2 := NewKernelArgs(4), NewKernelArgs(4)
	defer a1.Free()
	defer a2.Free()
	a1.SetPtr(0, out)
	a1.SetPtr(1, da)
	a1.SetPtr(2, da)
	a1.SetInt64(3, n)
	a2.SetPtr(0, out)
	a2.SetPtr(1, out)
	a2.SetPtr(2, out)
	a2.SetInt64(3, n)
	if err := g.d.BeginCapture(s, CaptureModeThreadLocal); err != nil {
		t.Fatal(err)
	}
	for _, args := range []*KernelArgs{a1, a2} {
		if err := g.d.Launch(f, Dim3{64, 1, 1}, Dim3{256, 1, 1}, 0, s, args); err != nil {
			t.Fatal(err)
		}
	}
	graph, err := g.d.EndCapture(s)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.GraphDestroy(graph)
	exec, err := g.d.GraphInstantiate(graph)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.GraphExecDestroy(exec)
	start, _ := g.d.EventCreate(0)
	end, _ := g.d.EventCreate(0)
	defer g.d.EventDestroy(start)
	defer g.d.EventDestroy(end)
	if err := g.d.EventRecord(start, s); err != nil {
		t.Fatal(err)
	}
	if err := g.d.GraphLaunch(exec, s); err != nil {
		t.Fatal(err)
	}
	if err := g.d.EventRecord(end, s); err != nil {
		t.Fatal(err)
	}
	host, err := g.d.MemAllocHost(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.MemFreeHost(host)
	if err := g.d.MemcpyDtoHAsync(host, out, 4*n, s); err != nil {
		t.Fatal(err)
	}
	if err := g.d.StreamSynchronize(s); err != nil {
		t.Fatal(err)
	}
	if err := g.d.EventSynchronize(end); err != nil {
		t.Fatal(err)
	}
	ms, err := g.d.EventElapsed(start, end)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("graph of 2 kernels over %d floats: %.3f ms (first replay)", n, ms)
	for i, v := range decode(host.Bytes(), false) {
		if w := 4 * a[i]; math.Abs(float64(v-w)) > 1e-5*(1+math.Abs(float64(w))) {
			t.Fatalf("element %d: got %v, want %v", i, v, w)
		}
	}
	// Upload through the pinned buffer too.
	copy(host.Bytes(), f32bytes(a))
	if err := g.d.MemcpyHtoDAsync(out, host, 4*n, s); err != nil {
		t.Fatal(err)
	}
	if err := g.d.MemcpyHtoDAsync(out, host, 4*n+1, s); err == nil {
		t.Error("a copy past the pinned buffer's end did not fail")
	}
	if err := g.d.StreamSynchronize(s); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 4*n)
	if err := g.d.MemcpyDtoH(back, out); err != nil {
		t.Fatal(err)
	}
	if string(back) != string(f32bytes(a)) {
		t.Error("pinned upload did not arrive")
	}
}

func TestOutOfMemory(t *testing.T) {
	g := openGPU(t)
	total, err := g.d.TotalMem(g.dev)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.d.MemAlloc(int(4 * total))
	if !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("allocating 4x the device memory: %v, want ErrOutOfMemory", err)
	}
	t.Logf("as expected: %v", err)
}

func TestLibraryHandles(t *testing.T) {
	g := openGPU(t)
	if lt, err := OpenCUBLASLt(Options{}); err != nil {
		t.Errorf("cuBLASLt: %v", err)
	} else {
		h, err := lt.Create()
		if err != nil {
			t.Error(err)
		} else if err := lt.Destroy(h); err != nil {
			t.Error(err)
		}
		t.Logf("cuBLASLt %d from %s", lt.Version(), lt.Path())
	}
	if dnn, err := OpenCUDNN(Options{}); err != nil {
		t.Errorf("cuDNN: %v", err)
	} else {
		h, err := dnn.Create()
		if err != nil {
			t.Error(err)
		} else if err := dnn.Destroy(h); err != nil {
			t.Error(err)
		}
		t.Logf("cuDNN %d from %s", dnn.Version(), dnn.Path())
	}
	m, err := OpenNVML(Options{})
	if err != nil {
		t.Fatalf("NVML: %v", err)
	}
	defer m.Shutdown()
	dev, err := m.Device(0)
	if err != nil {
		t.Fatal(err)
	}
	gu, mu, err := m.Utilization(dev)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := m.Memory(dev)
	if err != nil {
		t.Fatal(err)
	}
	if mem.Total == 0 || mem.Used > mem.Total {
		t.Errorf("implausible memory info %+v", mem)
	}
	t.Logf("NVML: utilization gpu %d%% memory %d%%, memory %+v; driver %s", gu, mu, mem, g.fp.DriverRelease)
}

// TestLaunchAllocs checks that the hot calls do not allocate.
func TestLaunchAllocs(t *testing.T) {
	g := openGPU(t)
	m := g.module(t)
	f, err := g.d.ModuleFunction(m, "relu_f32")
	if err != nil {
		t.Fatal(err)
	}
	p := g.upload(t, make([]byte, 4*1024))
	args := NewKernelArgs(3)
	defer args.Free()
	args.SetPtr(0, p)
	args.SetPtr(1, p)
	args.SetInt64(2, 1024)
	ev, _ := g.d.EventCreate(0)
	defer g.d.EventDestroy(ev)
	allocs := testing.AllocsPerRun(100, func() {
		g.d.Launch(f, Dim3{4, 1, 1}, Dim3{256, 1, 1}, 0, Stream{}, args)
		g.d.EventRecord(ev, Stream{})
	})
	if allocs != 0 {
		t.Errorf("Launch + EventRecord allocate %v times", allocs)
	}
	if err := g.d.Synchronize(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLaunch measures the host cost of one cuLaunchKernel through the
// bindings (a small kernel on the default stream).
func BenchmarkLaunch(b *testing.B) {
	g := openGPU(b)
	m := g.module(b)
	f, err := g.d.ModuleFunction(m, "relu_f32")
	if err != nil {
		b.Fatal(err)
	}
	p := g.upload(b, make([]byte, 4*1024))
	args := NewKernelArgs(3)
	defer args.Free()
	args.SetPtr(0, p)
	args.SetPtr(1, p)
	args.SetInt64(2, 1024)
	s, err := g.d.StreamCreate(1)
	if err != nil {
		b.Fatal(err)
	}
	defer g.d.StreamDestroy(s)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := g.d.Launch(f, Dim3{4, 1, 1}, Dim3{256, 1, 1}, 0, s, args); err != nil {
			b.Fatal(err)
		}
		if i%512 == 511 { // keep the queue from filling
			b.StopTimer()
			g.d.StreamSynchronize(s)
			b.StartTimer()
		}
	}
	b.StopTimer()
	if err := g.d.StreamSynchronize(s); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGraphLaunch measures the host cost of replaying a captured graph
// of 16 kernels.
func BenchmarkGraphLaunch(b *testing.B) {
	g := openGPU(b)
	m := g.module(b)
	f, err := g.d.ModuleFunction(m, "relu_f32")
	if err != nil {
		b.Fatal(err)
	}
	p := g.upload(b, make([]byte, 4*1024))
	args := NewKernelArgs(3)
	defer args.Free()
	args.SetPtr(0, p)
	args.SetPtr(1, p)
	args.SetInt64(2, 1024)
	s, err := g.d.StreamCreate(1)
	if err != nil {
		b.Fatal(err)
	}
	defer g.d.StreamDestroy(s)
	if err := g.d.BeginCapture(s, CaptureModeThreadLocal); err != nil {
		b.Fatal(err)
	}
	for range 16 {
		if err := g.d.Launch(f, Dim3{4, 1, 1}, Dim3{256, 1, 1}, 0, s, args); err != nil {
			b.Fatal(err)
		}
	}
	graph, err := g.d.EndCapture(s)
	if err != nil {
		b.Fatal(err)
	}
	defer g.d.GraphDestroy(graph)
	exec, err := g.d.GraphInstantiate(graph)
	if err != nil {
		b.Fatal(err)
	}
	defer g.d.GraphExecDestroy(exec)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := g.d.GraphLaunch(exec, s); err != nil {
			b.Fatal(err)
		}
		if i%256 == 255 {
			b.StopTimer()
			g.d.StreamSynchronize(s)
			b.StartTimer()
		}
	}
	b.StopTimer()
	if err := g.d.StreamSynchronize(s); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEventRecord measures the host cost of one cuEventRecord.
func BenchmarkEventRecord(b *testing.B) {
	g := openGPU(b)
	s, err := g.d.StreamCreate(1)
	if err != nil {
		b.Fatal(err)
	}
	defer g.d.StreamDestroy(s)
	ev, err := g.d.EventCreate(2) // CU_EVENT_DISABLE_TIMING
	if err != nil {
		b.Fatal(err)
	}
	defer g.d.EventDestroy(ev)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := g.d.EventRecord(ev, s); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := g.d.StreamSynchronize(s); err != nil {
		b.Fatal(err)
	}
}
