package kiln_test

import (
	"context"
	"fmt"
	"log"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
)

// Example loads the bundled example classifier, runs it on one image and
// reads the output.
func Example() {
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	img, err := kiln.NewTensor(kiln.Float32, 1, 3, 32, 32)
	if err != nil {
		log.Fatal(err)
	}
	for i := range img.Float32s() {
		img.Float32s()[i] = 0.5
	}
	out, err := m.Run(context.Background(), map[string]*kiln.Tensor{"image": img})
	if err != nil {
		log.Fatal(err)
	}
	p := out["probabilities"]
	var sum float32
	for _, v := range p.Float32s() {
		sum += v
	}
	fmt.Printf("%v %v sum=%.3f\n", p.DType, p.Shape, sum)
	// Output: float32 [1 10] sum=1.000
}

// ExampleModel_Inputs lists a model's inputs and outputs with their
// symbolic dimensions.
func ExampleModel_Inputs() {
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	for _, in := range m.Inputs() {
		fmt.Println("input", in.Name, in.DType, in.Dims)
	}
	for _, out := range m.Outputs() {
		fmt.Println("output", out.Name, out.DType, out.Dims)
	}
	// Output:
	// input image float32 [batch 3 32 32]
	// output probabilities float32 [batch 10]
}
