package onnx

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kilnai/kiln/tensor"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// fakeResolver serves external data from a 1 KiB buffer under any
// location, so fuzzed external tensors exercise the range checks.
type fakeResolver struct{ data []byte }

func (r fakeResolver) ExternalData(location string, offset, length int64) ([]byte, error) {
	size := int64(len(r.data))
	if offset < 0 || offset > size || length > size-offset {
		return nil, fmt.Errorf("%w: %q: range out of file", ErrExternalData, location)
	}
	if length < 0 {
		length = size - offset
	}
	return r.data[offset : offset+length], nil
}

var fuzzResolver = fakeResolver{data: make([]byte, 1024)}

// checkTensorErr fails on an error from TensorFromProto that is not one of
// the package's sentinels.
func checkTensorErr(t *testing.T, err error) {
	if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrExternalData) {
		t.Fatalf("TensorFromProto: error without a sentinel: %v", err)
	}
}

func FuzzDecodeModel(f *testing.F) {
	for _, seed := range modelSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeModel(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		// Encoding is a fixed point after one decode.
		enc := m.Marshal()
		m2, err := DecodeModel(enc)
		if err != nil {
			t.Fatalf("decoding the re-encoded model: %v", err)
		}
		if enc2 := m2.Marshal(); !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable: %x vs %x", enc, enc2)
		}
		if m.Graph != nil {
			for _, init := range m.Graph.Initializer {
				_, err := TensorFromProto(init, fuzzResolver)
				checkTensorErr(t, err)
			}
		}
		if _, err := LoadBytes(b, ""); err != nil {
			t.Fatalf("LoadBytes fails where DecodeModel succeeds: %v", err)
		}
	})
}

func FuzzDecodeTensor(f *testing.F) {
	for _, seed := range tensorSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The test data formats share the decoder's machinery: none may panic.
		DecodeSequence(b)
		DecodeMap(b)
		DecodeOptional(b)

		tp, err := DecodeTensor(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		enc := tp.Marshal()
		tp2, err := DecodeTensor(enc)
		if err != nil {
			t.Fatalf("decoding the re-encoded tensor: %v", err)
		}
		if !bytes.Equal(enc, tp2.Marshal()) {
			t.Fatal("re-encoding is not stable")
		}
		x, err := TensorFromProto(tp, fuzzResolver)
		checkTensorErr(t, err)
		if err != nil {
			return
		}
		if x.Len() != tensor.NumElements(x.Shape) {
			t.Fatalf("tensor %v: %d elements for shape %v", x, x.Len(), x.Shape)
		}
		// What converts one way converts back.
		y, err := TensorFromProto(TensorToProto(tp.Name, x), nil)
		if err != nil {
			t.Fatalf("converting back: %v", err)
		}
		if !sameTensor(x, y) {
			t.Fatalf("round trip through TensorToProto: %v vs %v", x, y)
		}
	})
}

// modelSeeds returns small valid models and edge cases for FuzzDecodeModel.
func modelSeeds() [][]byte {
	small := &ModelProto{
		IRVersion: 8, OpsetImport: []*OperatorSetIdProto{{Version: 13}}, ProducerName: "seed",
		Graph: &GraphProto{
			Name: "g",
			Node: []*NodeProto{{OpType: "Add", Input: []string{"x", "w"}, Output: []string{"y"}}},
			Initializer: []*TensorProto{
				TensorToProto("w", tensor.FromFloat32([]float32{1, 2, 3}, 3)),
				{Name: "i", DataType: tensor.Int64, Dims: []int64{2}, Int64Data: []int64{-1, 1}},
				externalTensor("e", "w.bin", 8, 12, 3),
			},
			Input: []*ValueInfoProto{{Name: "x", Type: &TypeProto{TensorType: &TypeProtoTensor{ElemType: tensor.Float32,
				Shape: &TensorShapeProto{Dim: []*TensorShapeDimension{{DimParam: "n"}, {DimValue: 3, HasValue: true}}}}}}},
			Output: []*ValueInfoProto{{Name: "y"}},
		},
	}
	deep := []byte{}
	for i := 0; i < MaxDepth/3; i++ {
		attr := protowire.AppendTag(nil, 6, protowire.BytesType)
		attr = protowire.AppendBytes(attr, deep)
		node := protowire.AppendTag(nil, 5, protowire.BytesType)
		node = protowire.AppendBytes(node, attr)
		deep = protowire.AppendTag(nil, 1, protowire.BytesType)
		deep = protowire.AppendBytes(deep, node)
	}
	full := richModel().Marshal()
	return [][]byte{
		small.Marshal(),
		full,
		full[:len(full)/2],
		{},
		protowire.AppendBytes(protowire.AppendTag(nil, 7, protowire.BytesType), deep),
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // ir_version -1
		{0x3a, 0x7f},                               // graph longer than the input
		{0x0b, 0x08, 0x01, 0x0c},                   // a group
		{0x3a, 0x05, 0x2a, 0x03, 0x0a, 0x01, 0x80}, // packed dims with a cut varint
	}
}

// tensorSeeds returns valid tensors of every type and edge cases for
// FuzzDecodeTensor.
func tensorSeeds() [][]byte {
	var seeds [][]byte
	for _, dt := range allDTypes {
		x := testTensor(dt)
		seeds = append(seeds, TensorToProto(dt.String(), x).Marshal(), typedProto(x).Marshal())
	}
	seq := &SequenceProto{ElemType: ElemTensor, TensorValues: []*TensorProto{TensorToProto("s", tensor.FromInt64([]int64{1}, 1))}}
	seeds = append(seeds,
		marshalUnpacked(typedProto(testTensor(tensor.Float64))),
		externalTensor("e", "w.bin", 1000, 16, 4).Marshal(),
		(&TensorProto{DataType: tensor.Float32, Dims: []int64{1 << 20, 1 << 20}}).Marshal(),
		(&TensorProto{DataType: tensor.Bool, Dims: []int64{3}, RawData: []byte{0, 2, 255}}).Marshal(),
		(&TensorProto{DataType: 17, Dims: []int64{1}, RawData: []byte{1}}).Marshal(),
		seq.Marshal(),
		(&MapProto{KeyType: tensor.String, StringKeys: [][]byte{[]byte("k")}, Values: seq}).Marshal(),
		(&OptionalProto{ElemType: ElemSequence, SequenceValue: seq}).Marshal(),
		[]byte{},
	)
	return seeds
}

// TestFuzzCorpus writes the seeds to testdata/fuzz with -update, and
// otherwise checks that the committed corpus exists (go test runs it as
// part of the fuzz targets).
func TestFuzzCorpus(t *testing.T) {
	for name, seeds := range map[string][][]byte{"FuzzDecodeModel": modelSeeds(), "FuzzDecodeTensor": tensorSeeds()} {
		dir := filepath.Join("testdata", "fuzz", name)
		if !*update {
			if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) < len(seeds) {
				t.Errorf("%s has %d corpus files, want at least %d (go test ./onnx -run TestFuzzCorpus -update)", dir, len(files), len(seeds))
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, seed := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
