// Command fallback writes small ONNX models whose ops the CUDA executor
// partly lacks (ConvTranspose, CumSum, linear Resize, NonMaxSuppression
// between convolutions, HardSigmoid beside them), built with kiln's ir.Builder and
// ONNX writer, with reference inputs and outputs computed by kiln's CPU
// engine: OUT/NAME/model.onnx and OUT/NAME/test_data_set_N/{input,output}_K.pb.
// bench/gpu-fallback.sh builds them for cuda and checks the GPU against
// the references.
//
//	go run ./bench/fallback -out DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// model is one generated network and the input shapes of its test sets.
type model struct {
	name   string
	graph  func() *ir.Graph
	inputs [][]int // one image shape per test set
	// image makes a test set's input (default: normal random values).
	image func(seed uint64, shape []int) *tensor.Tensor
}

func main() {
	out := flag.String("out", "", "folder to write the models into (required)")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	models := []model{
		{"fallback_unet", func() *ir.Graph { return unet(ir.D(64), ir.D(64)) }, [][]int{{2, 3, 64, 64}, {1, 3, 64, 64}}, nil},
		{"fallback_unet_dyn", func() *ir.Graph { return unet(ir.S("h"), ir.S("w")) }, [][]int{{1, 3, 64, 64}, {2, 3, 48, 80}, {1, 3, 96, 32}}, nil},
		{"fallback_nms", nms, [][]int{{1, 3, 8, 8}}, nmsImage},
	}
	for _, m := range models {
		if err := write(filepath.Join(*out, m.name), m); err != nil {
			log.Fatalf("%s: %v", m.name, err)
		}
		fmt.Printf("wrote %s (%d test sets)\n", filepath.Join(*out, m.name), len(m.inputs))
	}
}

func write(dir string, m model) error {
	pm, err := onnx.FromGraph(m.graph(), "kiln")
	if err != nil {
		return err
	}
	b := pm.Marshal()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), b, 0o644); err != nil {
		return err
	}
	ref, err := kiln.LoadBytes(b)
	if err != nil {
		return err
	}
	defer ref.Close()
	for i, shape := range m.inputs {
		set := filepath.Join(dir, fmt.Sprintf("test_data_set_%d", i))
		if err := os.MkdirAll(set, 0o755); err != nil {
			return err
		}
		x := normal(uint64(100+i), 1, shape...)
		if m.image != nil {
			x = m.image(uint64(100+i), shape)
		}
		outs, err := ref.Run(context.Background(), map[string]*kiln.Tensor{"image": x})
		if err != nil {
			return err
		}
		if err := onnx.SaveTensor(filepath.Join(set, "input_0.pb"), "image", x); err != nil {
			return err
		}
		for k, o := range ref.Outputs() {
			if err := onnx.SaveTensor(filepath.Join(set, fmt.Sprintf("output_%d.pb", k)), o.Name, outs[o.Name]); err != nil {
				return err
			}
		}
	}
	return nil
}

// normal returns a tensor of normal random values times scale.
func normal(seed uint64, scale float64, shape ...int) *tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 17))
	t := tensor.New(tensor.Float32, shape...)
	for i := range t.Float32s() {
		t.Float32s()[i] = float32(r.NormFloat64() * scale)
	}
	return t
}

// weights draws a convolution's weights scaled by 1/sqrt(fan in).
func weights(b *ir.Builder, seed uint64, shape ...int) *ir.Value {
	fan := 1
	for _, d := range shape[1:] {
		fan *= d
	}
	return b.Const("", normal(seed, 1/math.Sqrt(float64(fan)), shape...))
}

func conv(b *ir.Builder, x *ir.Value, seed uint64, cin, cout, k, stride int) *ir.Value {
	p := int64(k / 2)
	return b.Op("Conv", []*ir.Value{x, weights(b, seed, cout, cin, k, k), b.Const("", normal(seed+1, 0.1, cout))},
		ir.IntsAttr("kernel_shape", int64(k), int64(k)), ir.IntsAttr("strides", int64(stride), int64(stride)),
		ir.IntsAttr("pads", p, p, p, p))
}

// unet is a U-Net-like block: image[batch,3,h,w] -> Conv+Relu -> Conv
// stride 2+Relu -> ConvTranspose stride 2 (no CUDA kernel) -> HardSigmoid
// -> CumSum over w (no CUDA kernel) -> Conv 1x1 -> Add the first block
// (a skip connection) and the second one upsampled by a linear Resize (no
// CUDA kernel: nearest only) -> Conv 1x1 -> Reshape to [batch, -1] with a shape
// computed from the image at the start (Shape -> Gather -> Concat), so
// that the last GPU segment recomputes it.
func unet(h, w ir.Dim) *ir.Graph {
	b := ir.NewBuilder("fallback_unet", 17)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(3), h, w)
	c1 := b.Op("Relu", []*ir.Value{conv(b, x, 1, 3, 16, 3, 1)})
	c2 := b.Op("Relu", []*ir.Value{conv(b, c1, 3, 16, 16, 3, 2)})
	up := b.Op("ConvTranspose", []*ir.Value{c2, weights(b, 5, 16, 8, 2, 2), b.Const("", normal(6, 0.1, 8))},
		ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("strides", 2, 2))
	hs := b.Op("HardSigmoid", []*ir.Value{up}, &ir.Attr{Name: "alpha", Type: ir.AttrFloat, F: 0.2}, &ir.Attr{Name: "beta", Type: ir.AttrFloat, F: 0.5})
	cs := b.Op("CumSum", []*ir.Value{hs, b.Const("axis", tensor.FromInt64([]int64{3}, 1))})
	y := conv(b, cs, 7, 8, 16, 1, 1)
	y = b.Op("Add", []*ir.Value{y, c1})
	scales := b.Const("", tensor.FromFloat32([]float32{1, 1, 2, 2}, 4))
	side := b.Op("Resize", []*ir.Value{c2, nil, scales}, &ir.Attr{Name: "mode", Type: ir.AttrString, S: "linear"})
	y = b.Op("Add", []*ir.Value{y, side})
	y = conv(b, y, 9, 16, 4, 1, 1)
	shape := b.Op("Shape", []*ir.Value{x})
	batch := b.Op("Gather", []*ir.Value{shape, b.Const("", tensor.FromInt64([]int64{0}, 1))})
	target := b.Op("Concat", []*ir.Value{batch, b.Const("", tensor.FromInt64([]int64{-1}, 1))}, ir.IntAttr("axis", 0))
	b.Output(b.Op("Reshape", []*ir.Value{y, target}), "y")
	return b.Graph()
}

// nms is a detector head: image[1,3,8,8] -> Conv+Relu -> boxes (Conv
// 1x1, [1,64,4]) -> NonMaxSuppression (no CUDA kernel) with scores
// Sigmoid(image channel 0) ([1,1,64], through a 1x1 convolution that
// picks the channel: exact in fp16) -> "selected" int64 [K,3], and the
// scores. nmsImage spreads channel 0 so that the scores' order survives
// fp16.
func nms() *ir.Graph {
	b := ir.NewBuilder("fallback_nms", 17)
	x := b.Input("image", tensor.Float32, ir.D(1), ir.D(3), ir.D(8), ir.D(8))
	f := b.Op("Relu", []*ir.Value{conv(b, x, 11, 3, 8, 3, 1)})
	raw := conv(b, f, 13, 8, 4, 1, 1)
	raw = b.Op("Reshape", []*ir.Value{raw, b.Const("", tensor.FromInt64([]int64{1, 4, 64}, 3))})
	boxes := b.Op("Transpose", []*ir.Value{raw}, ir.IntsAttr("perm", 0, 2, 1))
	pick := b.Const("", tensor.FromFloat32([]float32{1, 0, 0}, 1, 3, 1, 1))
	s := b.Op("Sigmoid", []*ir.Value{b.Op("Conv", []*ir.Value{x, pick}, ir.IntsAttr("kernel_shape", 1, 1))})
	scores := b.Op("Reshape", []*ir.Value{s, b.Const("", tensor.FromInt64([]int64{1, 1, 64}, 3))})
	sel := b.Op("NonMaxSuppression", []*ir.Value{boxes, scores,
		b.Const("", tensor.FromInt64([]int64{10}, 1)),
		b.Const("", tensor.FromFloat32([]float32{0.5}, 1)),
		b.Const("", tensor.FromFloat32([]float32{0.3}, 1))})
	b.Output(sel, "selected")
	b.Output(scores, "scores")
	return b.Graph()
}

// nmsImage is normal random values, but channel 0 (the scores) is a
// shuffle of 64 values evenly spaced in [-3, 3].
func nmsImage(seed uint64, shape []int) *tensor.Tensor {
	x := normal(seed, 1, shape...)
	r := rand.New(rand.NewPCG(seed, 23))
	hw := shape[2] * shape[3]
	for i, j := range r.Perm(hw) {
		x.Float32s()[i] = float32(-3 + 6*float64(j)/float64(hw-1))
	}
	return x
}
