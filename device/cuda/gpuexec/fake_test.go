package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// fakeLibs builds the fake libcuda, libcudnn and libcublasLt of
// ../testdata into a directory, links this machine's NVRTC there, and
// returns the directory (for Options.LibDir). It skips without a C
// compiler or NVRTC.
func fakeLibs(t testing.TB) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler (cc) to build the fake CUDA libraries: %v", err)
	}
	dir := t.TempDir()
	for src, lib := range map[string]string{"fakecuda.c": "libcuda.so.1", "fakecudnn.c": "libcudnn.so.9", "fakecublaslt.c": "libcublasLt.so.13"} {
		out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, lib), filepath.Join("..", "testdata", src)).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", lib, err, out)
		}
	}
	for _, d := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"} {
		found, _ := filepath.Glob(filepath.Join(d, "libnvrtc.so.*"))
		for _, f := range found {
			if err := os.Symlink(f, filepath.Join(dir, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
		if len(found) > 0 {
			return dir
		}
	}
	t.Skip("needs NVRTC (libnvrtc.so.13, .12 or .11.2; Debian: apt-get install libnvrtc11.2)")
	return ""
}

// TestEngineFake runs the executor against the fake libraries: the plan
// picks cuDNN and cuBLASLt, contexts run eagerly, capture and replay, and
// the errors name the call and the layer. Results are not computed.
func TestEngineFake(t *testing.T) {
	dir := fakeLibs(t)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 2, 1)
	g := optimizedGraph(t, path, in)
	e, err := NewEngine(g, Options{LibDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	impl := map[string]string{}
	for _, l := range e.Layers() {
		impl[l.Op] = l.Impl
	}
	if impl["kiln::FusedConv"] != "cudnn (algo 1, math 3)" || impl["Gemm"] != "cublaslt (bias epilogue)" || impl["MaxPool"] != "pool2d_f32" || impl["Flatten"] != "alias" {
		t.Errorf("layers run as %v", impl)
	}
	var ctxs []*Context
	for range 2 {
		c, err := e.NewContext()
		if err != nil {
			t.Fatal(err)
		}
		ctxs = append(ctxs, c)
	}
	for i, c := range ctxs {
		for run := range 3 {
			out, err := c.Run(context.Background(), in)
			if err != nil {
				t.Fatalf("context %d run %d: %v", i, run, err)
			}
			if y := out["output"]; y == nil || tensor.ShapeString(y.Shape) != "2x1000" {
				t.Fatalf("context %d run %d: outputs %v", i, run, out)
			}
		}
		if !c.Graphed() {
			t.Errorf("context %d does not replay a graph after 3 runs", i)
		}
	}
	if err := e.Close(); err == nil {
		t.Error("Close with open contexts succeeded")
	}
	for _, c := range ctxs {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// A failing launch names the call, the CUDA error and the layer.
	t.Run("launch error", func(t *testing.T) {
		t.Setenv("KILN_FAKE_BAD_KERNEL", "pool2d_f32")
		e, c := fakeEngine(t, dir, g, Options{LibDir: dir})
		_, err := c.Run(context.Background(), in)
		for _, want := range []string{"MaxPool node", "cuLaunchKernel", "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not name %q", err, want)
			}
		}
		if !errors.Is(err, cuda.ErrCUDA) {
			t.Errorf("error %v does not wrap cuda.ErrCUDA", err)
		}
		_ = e
	})
	t.Run("cudnn error", func(t *testing.T) {
		t.Setenv("KILN_FAKE_CUDNN_FAIL", "1")
		_, c := fakeEngine(t, dir, g, Options{LibDir: dir})
		_, err := c.Run(context.Background(), in)
		for _, want := range []string{"kiln::FusedConv node", "cudnnConvolutionForward", "CUDNN_STATUS_EXECUTION_FAILED"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not name %q", err, want)
			}
		}
	})
	t.Run("own kernels", func(t *testing.T) {
		e, _ := fakeEngine(t, dir, g, Options{LibDir: dir, NoCUDNN: true, NoCUBLASLt: true})
		for _, l := range e.Layers() {
			if strings.HasPrefix(l.Impl, "cu") {
				t.Errorf("%s %s runs as %s", l.Op, l.Node, l.Impl)
			}
		}
	})
	t.Run("fp16", func(t *testing.T) {
		// cuDNN takes its first (tensor-op) algorithm in half, the
		// kernels are the _f16 ones, the input and output are converted,
		// and Run still takes and gives float32.
		e, c := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true})
		impl := map[string]string{}
		ls := e.Layers()
		for _, l := range ls {
			impl[l.Op] = l.Impl
		}
		// NHWC by default in half (layout.go): the convolutions as cuDNN's
		// fused call, pooling with the NHWC kernels.
		if impl["kiln::FusedConv"] != "cudnn nhwc fused (algo 6, math 1)" || impl["Gemm"] != "cublaslt (bias epilogue)" || impl["MaxPool"] != "pool2d_nhwc8_f16" ||
			ls[0].Impl != "cast_f32_f16_nhwc" || ls[len(ls)-1].Impl != "cast_f16_f32" {
			t.Errorf("layers run as %v", ls)
		}
		if e32 := fakeWeights(t, dir, g); e.WeightBytes() > e32*6/10 {
			t.Errorf("half weights take %d bytes, float32 ones %d", e.WeightBytes(), e32)
		}
		for run := range 3 {
			out, err := c.Run(context.Background(), in)
			if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
			if y := out["output"]; y == nil || y.DType != tensor.Float32 || tensor.ShapeString(y.Shape) != "2x1000" {
				t.Fatalf("run %d: outputs %v", run, out)
			}
		}
		if _, err := c.DeviceTimes(2); err != nil {
			t.Errorf("DeviceTimes: %v", err)
		}
	})
	t.Run("memory limit", func(t *testing.T) {
		e, err := NewEngine(g, Options{LibDir: dir, MemoryLimit: e.WeightBytes() + e.ArenaBytes()})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		// the engine fits; a context needs the arena and 8 KiB of workspace more
		if _, err := e.NewContext(); !errors.Is(err, ErrMemoryLimit) {
			t.Errorf("NewContext over the limit: %v, want ErrMemoryLimit", err)
		}
	})
	t.Run("out of memory", func(t *testing.T) {
		// the fake libcuda has 1 GiB: a 1.2 GB activation does not fit
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(300<<20))
		b.Output(b.Op("Relu", []*ir.Value{x}), "y")
		big := b.Graph()
		if _, err := ops.InferGraph(big); err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(big, Options{LibDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		_, err = e.NewContext()
		if !errors.Is(err, cuda.ErrOutOfMemory) || !strings.Contains(err.Error(), "activations") {
			t.Errorf("error %v, want cuda.ErrOutOfMemory for the activations", err)
		}
	})
}

// fakeWeights returns the constant bytes of a float32 engine of g.
func fakeWeights(t *testing.T, dir string, g *ir.Graph) int64 {
	e, err := NewEngine(g, Options{LibDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.WeightBytes()
}

// fakeEngine makes an engine and one context, closed with the test.
func fakeEngine(t *testing.T, dir string, g *ir.Graph, opt Options) (*Engine, *Context) {
	t.Helper()
	e, err := NewEngine(g, opt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.NewContext()
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		e.Close()
	})
	return e, c
}

// TestShapesFake runs Shapes against the fake libraries: one engine per
// distinct input shape, shared by concurrent calls, the least recently
// used engine closed at the limit, and build errors reported.
func TestShapesFake(t *testing.T) {
	dir := fakeLibs(t)
	path := modelPath(t, "resnet_mini")
	s := NewShapes(FileGraphs(path, 2), Options{LibDir: dir}, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	ins := make([]map[string]*tensor.Tensor, 8)
	for i := range ins {
		ins[i] = randomImages(t, "resnet_mini", 1+i%2, uint64(i))
	}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := 1 + i%2
			out, err := s.Run(context.Background(), ins[i])
			if err == nil && (out["output"] == nil || out["output"].Shape[0] != batch) {
				err = fmt.Errorf("batch %d: outputs %v", batch, out)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Engines(); n != 2 {
		t.Errorf("%d engines for 2 shapes", n)
	}
	// At the limit, a new shape closes the least recently used engine and
	// an evicted shape is built again when it comes back: batches 3, 1, 2,
	// 3 evict at least three engines whatever order the calls above ended in.
	for i, batch := range []int{3, 1, 2, 3} {
		out, err := s.Run(context.Background(), randomImages(t, "resnet_mini", batch, 1))
		if err != nil || out["output"] == nil || out["output"].Shape[0] != batch {
			t.Fatalf("batch %d at the limit: %v, %v", batch, out, err)
		}
		if n := s.Engines(); n != 2 {
			t.Errorf("after run %d: %d engines, limit 2", i, n)
		}
	}
	if n := s.Evicted(); n < 3 {
		t.Errorf("%d engines evicted, want at least 3", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background(), randomImages(t, "resnet_mini", 1, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: error %v, want ErrClosed", err)
	}

	bad := NewShapes(FileGraphs(path, 2), Options{LibDir: dir}, 0)
	defer bad.Close()
	wrong := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 5, 224, 224)}
	for range 2 {
		if _, err := bad.Run(context.Background(), wrong); err == nil || !strings.Contains(err.Error(), "engine for input:float32[1 5 224 224]") {
			t.Errorf("5 channels: error %v, want the build's error naming the shapes", err)
		}
	}
}

// TestKernelsOption builds an engine from a kernel image made beforehand,
// where NVRTC cannot be found.
func TestKernelsOption(t *testing.T) {
	dir := fakeLibs(t)
	arch, img, err := KernelImage(cuda.Options{LibDir: dir}, 9, 0)
	if err != nil {
		t.Fatal(err)
	}
	if arch != "sm_90" || len(img) < 4 || string(img[:4]) != "\x7fELF" {
		t.Fatalf("KernelImage = %s, %d bytes starting %q", arch, len(img), img[:min(4, len(img))])
	}
	nonvrtc := t.TempDir()
	for _, lib := range []string{"libcuda.so.1", "libcudnn.so.9", "libcublasLt.so.13"} {
		if err := os.Symlink(filepath.Join(dir, lib), filepath.Join(nonvrtc, lib)); err != nil {
			t.Fatal(err)
		}
	}
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 1)
	if _, err := NewEngine(optimizedGraph(t, path, in), Options{LibDir: nonvrtc}); !errors.Is(err, cuda.ErrUnavailable) || !strings.Contains(err.Error(), "libnvrtc") {
		t.Errorf("without NVRTC nor Kernels: error %v, want one naming libnvrtc", err)
	}
	_, c := fakeEngine(t, nonvrtc, optimizedGraph(t, path, in), Options{LibDir: nonvrtc, Kernels: img})
	if _, err := c.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}

// TestCompilePlanFake compiles a plan graph through the cuda device's
// Compiler (found with KILN_CUDA_LIB_PATH, the fake libraries) in each
// precision: fp32 and fp16 give programs that take and return float32
// tensors, with the kernel image and the layer report as blobs; int8
// without the calibration's input scales (ExecOptions.Int8Scales) is
// refused with an error that says so.
func TestCompilePlanFake(t *testing.T) {
	dir := fakeLibs(t)
	t.Setenv(cuda.EnvLibPath, dir)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 1)
	g := optimizedGraph(t, path, in)
	tests := []struct {
		precision string
		ok        bool
	}{{"", true}, {"fp32", true}, {"fp16", true}, {"int8", false}}
	for _, tt := range tests {
		t.Run("precision "+tt.precision, func(t *testing.T) {
			prog, err := compilePlan(g, device.ExecOptions{Precision: tt.precision})
			if !tt.ok {
				if err == nil || !strings.Contains(err.Error(), "Int8Scales") {
					t.Fatalf("error %v, want one naming the missing Int8Scales", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			// the kernel image and the layer report
			if bp, ok := prog.(device.BlobProgram); !ok || len(bp.Blobs()) != 2 || bp.Blobs()[kernelBlob("sm_90")] == nil || bp.Blobs()[device.LayersBlob] == nil {
				t.Errorf("program blobs: %v", ok)
			}
			out, err := prog.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if y := out["output"]; y == nil || y.DType != tensor.Float32 || tensor.ShapeString(y.Shape) != "1x1000" {
				t.Fatalf("outputs %v", out)
			}
		})
	}
}
