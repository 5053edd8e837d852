package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/examples"
)

// TestServeCudaSharedMemory: kiln serve answers Triton's
// cudasharedmemory requests, with the CUDA driver found as kiln finds it
// (KILN_CUDA_LIB_PATH here): without libcuda a registration says why
// (501) and the status lists nothing; with the fake libcuda, whose device
// allocations are shared memory objects, a region registers and feeds an
// inference.
func TestServeCudaSharedMemory(t *testing.T) {
	post := func(url, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const inBytes = 3 * 32 * 32 * 4
	reg := func(h []byte) string {
		return fmt.Sprintf(`{"raw_handle":{"b64":%q},"device_id":0,"byte_size":%d}`, base64.StdEncoding.EncodeToString(h), inBytes)
	}

	t.Run("no driver", func(t *testing.T) {
		t.Setenv(cuda.EnvLibPath, t.TempDir())
		s := startServed(t, "--no-build")
		code, body := post("http://"+s.http+"/v2/cudasharedmemory/region/in/register", reg(make([]byte, 64)))
		if code != http.StatusNotImplemented || !strings.Contains(body, "CUDA shared memory needs a CUDA driver and device") || !strings.Contains(body, "cannot open libcuda") {
			t.Fatalf("register: %d %s", code, body)
		}
		if code, body := get("http://" + s.http + "/v2/cudasharedmemory/status"); code != 200 || body != "[]" {
			t.Fatalf("status: %d %s", code, body)
		}
	})

	t.Run("fake driver", func(t *testing.T) {
		cc, err := exec.LookPath("cc")
		if err != nil {
			t.Skipf("needs a C compiler (cc) to build the fake libcuda: %v", err)
		}
		if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
			t.Skip("the fake libcuda's interprocess memory needs /dev/shm")
		}
		dir := t.TempDir()
		if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, "libcuda.so.1"), "../../device/cuda/testdata/fakecuda.c").CombinedOutput(); err != nil {
			t.Fatalf("building the fake libcuda: %v\n%s", err, out)
		}
		// the client's "allocation": a shared memory object holding the
		// input, named by a handle in the fake's format (see fakecuda.c)
		name := fmt.Sprintf("kiln-cmd-cudashm-%d", os.Getpid())
		path := filepath.Join("/dev/shm", name)
		in := examples.TinyCNNInput(1)
		if err := os.WriteFile(path, in.Data, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		h := make([]byte, 64)
		copy(h, "kilnipc1")
		binary.LittleEndian.PutUint64(h[8:], inBytes)
		copy(h[16:56], name)
		for i := range 8 {
			h[56+i] = byte(0xc0 + i)
		}
		t.Setenv(cuda.EnvLibPath, dir)
		s := startServed(t, "--no-build")
		url := "http://" + s.http
		if code, body := post(url+"/v2/cudasharedmemory/region/in/register", reg(h)); code != 200 {
			t.Fatalf("register: %d %s", code, body)
		}
		if code, body := get(url + "/v2/cudasharedmemory/status"); code != 200 || body != fmt.Sprintf(`[{"name":"in","device_id":0,"byte_size":%d}]`, inBytes) {
			t.Fatalf("status: %d %s", code, body)
		}
		shmReq := fmt.Sprintf(`{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","parameters":{"shared_memory_region":"in","shared_memory_byte_size":%d}}]}`, inBytes)
		data := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(in.Float32s())), ","), "[]")
		code, fromShm := post(url+"/v2/models/tinycnn/infer", shmReq)
		_, plain := post(url+"/v2/models/tinycnn/infer", `{"inputs":[{"name":"image","shape":[1,3,32,32],"datatype":"FP32","data":[`+data+`]}]}`)
		if code != 200 || !bytes.Equal([]byte(fromShm), []byte(plain)) {
			t.Fatalf("inference from the CUDA region: %d %s\nwithout shared memory: %s", code, fromShm, plain)
		}
		if code, body := post(url+"/v2/cudasharedmemory/unregister", ""); code != 200 {
			t.Fatalf("unregister all: %d %s", code, body)
		}
	})
}
