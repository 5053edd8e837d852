package cudashm_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/grpcapi"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// fakeLib builds the fake libcuda (device/cuda/testdata/fakecuda.c) into a
// new directory as libcuda.so.1 and returns the directory.
func fakeLib(t testing.TB) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler (cc) to build the fake libcuda: %v", err)
	}
	dir := t.TempDir()
	out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, "libcuda.so.1"), "../../device/cuda/testdata/fakecuda.c").CombinedOutput()
	if err != nil {
		t.Fatalf("building the fake libcuda: %v\n%s", err, out)
	}
	return dir
}

// fakeHandle returns the raw handle by which the fake libcuda opens a
// "device allocation" of size bytes: a new POSIX shared memory object
// (see fakecuda.c), whose file it returns too, so that the test plays the
// client that owns the allocation.
func fakeHandle(t testing.TB, tag string, size int) ([]byte, string) {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("the fake libcuda's interprocess memory needs /dev/shm (POSIX shared memory)")
	}
	name := fmt.Sprintf("kiln-cudashm-%d-%s", os.Getpid(), tag)
	if len(name) > 39 {
		t.Fatalf("object name %q too long for a fake handle", name)
	}
	path := filepath.Join("/dev/shm", name)
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	h := make([]byte, 64)
	copy(h, "kilnipc1")
	binary.LittleEndian.PutUint64(h[8:], uint64(size))
	copy(h[16:56], name)
	for i := range 8 {
		h[56+i] = byte(0xc0 + i)
	}
	return h, path
}

// servers serves tinycnn with reg as the CUDA shared memory registry,
// over HTTP and gRPC on loopback.
type servers struct {
	s    *serve.Server
	url  string
	grpc inference.GRPCInferenceServiceClient
}

func start(t testing.TB, reg serve.CudaShm) *servers {
	t.Helper()
	s := serve.New(serve.Options{CudaShm: reg})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	grpcapi.Register(g, s, false)
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop(); ts.Close(); s.Shutdown(context.Background()) })
	return &servers{s: s, url: ts.URL, grpc: inference.NewGRPCInferenceServiceClient(cc)}
}

// do sends an HTTP request and returns the status and body.
func (v *servers) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, v.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// direct runs tinycnn on in without a server.
func direct(t testing.TB, in *tensor.Tensor) []float32 {
	t.Helper()
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	return out["probabilities"].Float32s()
}

func float32s(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// same reports whether got and want agree to a relative 1e-5.
func same(got, want []float32) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*(1+math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) {
			return fmt.Errorf("value %d = %v, want %v", i, got[i], want[i])
		}
	}
	return nil
}
