package api_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// Classify two images with the bundled TinyCNN model served by
// `kiln serve` on localhost:8001.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := api.Dial(ctx, "localhost:8001")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	out, err := c.Infer(ctx, "tinycnn", map[string]*tensor.Tensor{"image": examples.TinyCNNInput(2)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out["probabilities"].Shape)
}
