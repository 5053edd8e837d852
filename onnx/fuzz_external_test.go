//go:build unix

package onnx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// The bounds FuzzExternalData holds loading (and running) one model to.
// The loads run in the fuzz goroutine, so the bytes allocated meanwhile
// (runtime.MemStats.TotalAlloc; memory-mapped files do not count) and the
// CPU time (getrusage) belong to that model.
//
//   - extAllocPerByte (K): per byte of the model folder's files (model and
//     data file). The tinycnn model with external weights is about 1 KB
//     and its data file about 20 KB; loading it twice (onnx.Load and every
//     tensor, then kiln.Load: import, shape inference, the engine) and a
//     batch-1 run allocate about 0.4 MB. 16 per byte lets the data be
//     copied a few times (unaligned weights, the engine's packed forms).
//   - extAllocFixed (C): the engine and a batch-1 run whatever the sizes,
//     measured at 0.3-0.5 MB. 8 MiB.
//   - extCPULimit: the seed takes about 5 ms of CPU.
const (
	extAllocPerByte = 16
	extAllocFixed   = 8 << 20
	extCPULimit     = 2 * time.Second
	// extWallLimit is the wall time after which an input counts as hung.
	extWallLimit = 30 * time.Second
	// secret is what lies outside the model's folder: a load that returns
	// it escaped.
	secret = "outside the model folder: must never be read\n"
)

func extCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// externalModel returns tinycnn with every initializer moved to the file
// "weights.bin", one after the other, and that file's bytes.
func externalModel(tb testing.TB) (*onnx.ModelProto, []byte) {
	mp, err := onnx.DecodeModel(examples.TinyCNNModel)
	if err != nil {
		tb.Fatal(err)
	}
	var data []byte
	for _, tp := range mp.Graph.Initializer {
		t, err := onnx.TensorFromProto(tp, nil)
		if err != nil {
			tb.Fatal(err)
		}
		for len(data)%16 != 0 {
			data = append(data, 0)
		}
		off := len(data)
		data = append(data, t.Data...)
		*tp = onnx.TensorProto{Name: tp.Name, DataType: tp.DataType, Dims: tp.Dims, DataLocation: onnx.DataLocationExternal,
			ExternalData: []*onnx.StringStringEntryProto{{Key: "location", Value: "weights.bin"},
				{Key: "offset", Value: strconv.Itoa(off)}, {Key: "length", Value: strconv.Itoa(len(t.Data))}}}
	}
	return mp, data
}

// inside reports whether location, resolved in dir as the file system
// would (symbolic links followed), names a file inside dir.
func inside(dir, location string) bool {
	if filepath.IsAbs(location) {
		return false
	}
	real, err := filepath.EvalSymlinks(filepath.Join(dir, filepath.FromSlash(location)))
	if err != nil {
		return false
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(root, real)
	return err == nil && filepath.IsLocal(rel)
}

// FuzzExternalData loads tinycnn with its weights in an external data file,
// one initializer's location, offset and length and the data file's bytes
// chosen by the fuzzer, from a folder beside which lies a secret file
// (reachable by "../secret.bin", the symbolic link "link.bin" and the
// linked folder "up"). It loads the model with onnx.Load (and every
// initializer with TensorFromProto) and with kiln.Load, and runs it when
// it loads. No panic; no tensor read from outside the folder (the secret
// never shows in any weight); errors wrap onnx's sentinels; at most
// extAllocPerByte bytes allocated per byte of the folder's files plus
// extAllocFixed, within extCPULimit of CPU.
func FuzzExternalData(f *testing.F) {
	base, data := externalModel(f)
	n := len(base.Graph.Initializer)
	// the data file is tinycnn's weights cut to size (0: whole) with
	// patch written at at: small inputs that the fuzzer minimizes quickly
	for _, seed := range []struct {
		which                    uint8
		location, offset, length string
		size, at                 uint16
		patch                    []byte
	}{
		{0, "weights.bin", "0", "", 0, 0, nil},
		{1, "weights.bin", "", "", 0, 0, nil},
		{0, "../secret.bin", "0", "", 0, 0, nil},
		{0, "link.bin", "0", "", 0, 0, nil},
		{0, "up/secret.bin", "0", "", 0, 0, nil},
		{0, "/etc/hostname", "0", "", 0, 0, nil},
		{0, "weights.bin", "-1", "", 0, 0, nil},
		{0, "weights.bin", "9223372036854775807", "16", 0, 0, nil},
		{2, "weights.bin", "16", "99999999999", 0, 0, nil},
		{0, "model.onnx", "0", "", 0, 0, nil},
		{3, "weights.bin", "0", "", uint16(len(data) / 3), 0, nil},
		{0, "weights.bin", "0", "", 0, 4, []byte{0xff, 0xff, 0xc0, 0x7f}},
		{0, ".", "0", "", 0, 0, nil},
		{0, "", "0", "", 0, 0, nil},
		{0x80, "weights.bin", "0", "", 0, 0, nil},
	} {
		f.Add(seed.which, seed.location, seed.offset, seed.length, seed.size, seed.at, seed.patch)
	}
	// the folder, the secret beside it and the links out, made once: each
	// input rewrites only model.onnx and weights.bin
	root := f.TempDir()
	dir := filepath.Join(root, "m")
	if err := os.Mkdir(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "secret.bin"), bytes.Repeat([]byte(secret), 1024), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("../secret.bin", filepath.Join(dir, "link.bin")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(dir, "up")); err != nil {
		f.Fatal(err)
	}
	verbose := os.Getenv("KILN_FUZZ_COST") != ""
	f.Fuzz(func(t *testing.T, which uint8, location, offset, length string, cut, at uint16, patch []byte) {
		weights := data
		if cut != 0 {
			weights = weights[:min(int(cut), len(weights))]
		}
		if len(patch) > 0 {
			weights = append([]byte(nil), weights...)
			if end := int(at) + len(patch); end > len(weights) {
				weights = append(weights, make([]byte, end-len(weights))...)
			}
			copy(weights[at:], patch)
		}
		defer watchdog(location)()
		mp, err := onnx.DecodeModel(base.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		tp := mp.Graph.Initializer[int(which)%n]
		tp.ExternalData = nil
		for _, kv := range [][2]string{{"location", location}, {"offset", offset}, {"length", length}} {
			if kv[1] != "" || kv[0] == "location" && which&0x80 == 0 {
				tp.ExternalData = append(tp.ExternalData, &onnx.StringStringEntryProto{Key: kv[0], Value: kv[1]})
			}
		}
		model := mp.Marshal()
		path := filepath.Join(dir, "model.onnx")
		if err := os.WriteFile(path, model, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "weights.bin"), weights, 0o644); err != nil {
			t.Fatal(err)
		}
		size := len(model) + len(weights)

		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c0 := extCPUTime()
		loaded := 0
		if file, err := onnx.Load(path); err == nil {
			for _, x := range file.Model.Graph.Initializer {
				w, err := onnx.TensorFromProto(x, file)
				if err != nil {
					if !isSentinel(err) {
						t.Fatalf("tensor %q: error without a sentinel: %v", x.Name, err)
					}
					continue
				}
				loaded++
				if info, _ := x.External(); !inside(dir, info.Location) {
					t.Fatalf("tensor %q read from %q, outside the model folder", x.Name, info.Location)
				}
				if w.DType != tensor.String && bytes.Contains(w.Data, []byte(secret[:16])) {
					t.Fatalf("tensor %q holds the secret from outside the model folder", x.Name)
				}
			}
			file.Close()
		} else if !isSentinel(err) {
			t.Fatalf("onnx.Load: error without a sentinel: %v", err)
		}
		m, err := kiln.Load(path)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = m.Run(ctx, map[string]*kiln.Tensor{"image": examples.TinyCNNInput(1)})
			cancel()
			m.Close()
		}
		c1 := extCPUTime()
		runtime.ReadMemStats(&m1)
		alloc := m1.TotalAlloc - m0.TotalAlloc
		if verbose {
			t.Logf("%q: %d of %d tensors, kiln.Load %v; %d bytes, %d allocated (%.1f per byte), %v CPU",
				location, loaded, n, err, size, alloc, float64(alloc)/float64(size), c1-c0)
		}
		if err == nil && !inside(dir, location) && which&0x80 == 0 {
			t.Fatalf("kiln.Load accepted external data at %q, outside the model folder", location)
		}
		if limit := uint64(extAllocPerByte*size + extAllocFixed); alloc > limit {
			t.Fatalf("loading a %d-byte model folder allocated %d bytes, above the bound %d (%d per byte + %d)",
				size, alloc, limit, extAllocPerByte, extAllocFixed)
		}
		if c1-c0 > extCPULimit {
			t.Fatalf("loading a %d-byte model folder took %v of CPU, above %v", size, c1-c0, extCPULimit)
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range []error{onnx.ErrMalformed, onnx.ErrUnsupported, onnx.ErrExternalData} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// watchdog crashes the fuzz process with every goroutine's stack when one
// input runs longer than extWallLimit (a hang), so that the fuzzer keeps
// the input; the returned function stops it.
func watchdog(what string) func() {
	t := time.AfterFunc(extWallLimit, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		panic(fmt.Sprintf("one input (%q) ran over %v:\n%s", what, extWallLimit, buf))
	})
	return func() { t.Stop() }
}
