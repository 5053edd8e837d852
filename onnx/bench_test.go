package onnx

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/tensor"
)

// bigInitializers returns about 100 MB of initializers: four float32
// tensors of 25 MB each and two small ones, as an exporter would write them.
func bigInitializers() []*TensorProto {
	const n = 25 << 20 / 4 // floats per big initializer
	var inits []*TensorProto
	for i, name := range []string{"encoder.weight", "decoder.weight", "proj.w", "head.weight"} {
		x := tensor.New(tensor.Float32, 2048, n/2048)
		fs := x.Float32s()
		for j := range fs {
			fs[j] = float32(i+j%977) * 0.001
		}
		inits = append(inits, TensorToProto(name, x))
	}
	return append(inits, TensorToProto("bias", tensor.FromFloat32(make([]float32, 2048), 2048)),
		TensorToProto("shape", tensor.FromInt64([]int64{1, -1}, 2)))
}

// writeBigModel writes the initializers as a model in dir. With external
// set, every initializer's data goes to weights.bin at 4 KiB-aligned
// offsets (as onnxruntime's align_offset saving option writes them) and the
// model file holds only their descriptions. It returns the model's path and
// the total bytes written.
func writeBigModel(b *testing.B, dir string, external bool) (string, int64) {
	b.Helper()
	inits := bigInitializers()
	var total int64
	if external {
		var side []byte
		for _, tp := range inits {
			for len(side)%4096 != 0 {
				side = append(side, 0)
			}
			off := len(side)
			side = append(side, tp.RawData...)
			ext := externalTensor(tp.Name, "weights.bin", off, len(tp.RawData), tp.Dims...)
			ext.DataType = tp.DataType
			*tp = *ext
		}
		if err := os.WriteFile(filepath.Join(dir, "weights.bin"), side, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(side))
	}
	m := &ModelProto{IRVersion: 10, OpsetImport: []*OperatorSetIdProto{{Version: 21}}, ProducerName: "bench",
		Graph: &GraphProto{Name: "big", Initializer: inits,
			Node: []*NodeProto{{OpType: "MatMul", Input: []string{"x", "encoder.weight"}, Output: []string{"y"}}}}}
	path := filepath.Join(dir, "model.onnx")
	data := m.Marshal()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return path, total + int64(len(data))
}

// BenchmarkLoad100MB compares loading a 100 MB model and turning every
// initializer into a tensor:
//
//   - read: Load (read into aligned memory of its own, zero-copy decode) +
//     TensorFromProto, which views raw_data in place where it is 4-byte
//     aligned in the file and copies it otherwise: what serving uses;
//   - mmap: the same with LoadMapped (memory-mapped);
//   - mmap-touch: the same, then reading one byte of every 4 KiB page of
//     every tensor, to charge the page faults that mmap defers to first use;
//   - readfile-copy: os.ReadFile + decode + copying every initializer into a
//     fresh aligned tensor, what a generated-protobuf decoder (which copies
//     bytes fields) followed by tensor creation costs.
func BenchmarkLoad100MB(b *testing.B) {
	for _, layout := range []string{"inline", "external"} {
		path, size := writeBigModel(b, b.TempDir(), layout == "external")

		b.Run(layout+"/read", func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				f, err := Load(path)
				if err != nil {
					b.Fatal(err)
				}
				for _, init := range f.Model.Graph.Initializer {
					if _, err := TensorFromProto(init, f); err != nil {
						b.Fatal(err)
					}
				}
				f.Close()
			}
		})

		b.Run(layout+"/mmap", func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				f, err := LoadMapped(path)
				if err != nil {
					b.Fatal(err)
				}
				for _, init := range f.Model.Graph.Initializer {
					if _, err := TensorFromProto(init, f); err != nil {
						b.Fatal(err)
					}
				}
				f.Close()
			}
			reportInPlace(b, path)
		})

		b.Run(layout+"/mmap-touch", func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			var sink byte
			for b.Loop() {
				f, err := LoadMapped(path)
				if err != nil {
					b.Fatal(err)
				}
				for _, init := range f.Model.Graph.Initializer {
					x, err := TensorFromProto(init, f)
					if err != nil {
						b.Fatal(err)
					}
					for i := 0; i < len(x.Data); i += 4096 {
						sink += x.Data[i]
					}
				}
				f.Close()
			}
			_ = sink
		})

		b.Run(layout+"/readfile-copy", func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				data, err := os.ReadFile(path)
				if err != nil {
					b.Fatal(err)
				}
				m, err := DecodeModel(data)
				if err != nil {
					b.Fatal(err)
				}
				var side []byte
				for _, init := range m.Graph.Initializer {
					raw := init.RawData
					if init.DataLocation == DataLocationExternal {
						info, err := init.External()
						if err != nil {
							b.Fatal(err)
						}
						if side == nil {
							if side, err = os.ReadFile(filepath.Join(filepath.Dir(path), info.Location)); err != nil {
								b.Fatal(err)
							}
						}
						raw = side[info.Offset : info.Offset+info.Length]
					}
					shape := make([]int, len(init.Dims))
					for i, d := range init.Dims {
						shape[i] = int(d)
					}
					x, err := tensor.Make(init.DataType, shape)
					if err != nil {
						b.Fatal(err)
					}
					copy(x.Data, raw)
				}
			}
		})
	}
}

// reportInPlace reports how many of the model's initializers are used in
// place, not copied (their data is aligned in the file).
func reportInPlace(b *testing.B, path string) {
	f, err := Load(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	inPlace := 0
	for _, init := range f.Model.Graph.Initializer {
		x, err := TensorFromProto(init, f)
		if err != nil {
			b.Fatal(err)
		}
		var src []byte
		if init.DataLocation == DataLocationExternal {
			info, _ := init.External()
			src, _ = f.ExternalData(info.Location, info.Offset, info.Length)
		} else {
			src = init.RawData
		}
		if len(x.Data) > 0 && unsafe.SliceData(x.Data) == unsafe.SliceData(src) {
			inPlace++
		}
	}
	b.ReportMetric(float64(inPlace), "in-place-tensors")
	b.ReportMetric(float64(len(f.Model.Graph.Initializer)), "tensors")
}
