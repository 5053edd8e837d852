package gpuexec_test

import (
	"context"
	"fmt"
	"log"

	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/tensor"
)

// Example runs a model on GPU 0 for inputs of one shape. (It needs a GPU
// and the model file, so it is compiled but not run by go test.)
func Example() {
	x := tensor.New(tensor.Float32, 1, 3, 224, 224)
	inputs := map[string]*tensor.Tensor{"input": x}

	g, done, err := gpuexec.FileGraphs("model.onnx", 2)(map[string][]int{"input": x.Shape})
	if err != nil {
		log.Fatal(err)
	}
	e, err := gpuexec.NewEngine(g, gpuexec.Options{Ordinal: 0})
	done() // the weights are on the GPU: the file may go
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	c, err := e.NewContext() // one per goroutine
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	out, err := c.Run(context.Background(), inputs)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out["output"].Shape)
}

// ExampleShapes serves inputs whose batch varies: one engine (and CUDA
// graph) per shape, built on first use.
func ExampleShapes() {
	s := gpuexec.NewShapes(gpuexec.FileGraphs("model.onnx", 2), gpuexec.Options{}, 8)
	defer s.Close()
	for _, batch := range []int{1, 8, 1} {
		out, err := s.Run(context.Background(), map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, batch, 3, 224, 224)})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(out["output"].Shape)
	}
}
