package quant

import (
	"fmt"
	"os"
	"path/filepath"
)

// The INT8 rewrite of a small CNN with every value calibrated to amax 4,
// the second convolution kept in FP32 by an override.
func ExampleQuantizeINT8() {
	g, err := buildConvNet()
	if err != nil {
		fmt.Println(err)
		return
	}
	layers, err := ParseLayerPrecisions("res:fp32")
	if err != nil {
		fmt.Println(err)
		return
	}
	rep, err := QuantizeINT8(g, fullTable(g), INT8Options{Layers: layers})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(rep)
	// Output:
	// INT8: 3 layers in int8, 3 in fp32
	// layer  op           prec  reason
	// first  FusedConv    fp32  first layer: reads graph input "x" with 3 channels
	// mid    FusedConv    int8  input scale 0.0315
	// res    FusedConv    fp32  override: fp32
	// dw     FusedConv    int8  input scale 0.0315
	// fc     FusedMatMul  int8  input scale 0.0315
	// head   Gemm         fp32  produces graph output "y"
}

// A calibration cache as WriteTable writes it.
func ExampleWriteTable() {
	dir, err := os.MkdirTemp("", "calib")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.calib")
	t := &Table{Method: Entropy, Graph: "sha256:3b1f", Entries: map[string]float32{"input": 4.25, "/conv1/Relu_output_0": 1.5}}
	if err := WriteTable(path, t); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(path)
	fmt.Print(string(b))
	// Output:
	// kiln-calibration 1
	// method entropy
	// graph sha256:3b1f
	// entries 2
	// 3fc00000 "/conv1/Relu_output_0"  # amax 1.5, scale 0.011811024
	// 40880000 "input"  # amax 4.25, scale 0.033464566
}
