package cuda

import "testing"

// TestFusedConvFake plans fused convolutions (NCHW and NHWC, float32 and
// half, ReLU or identity, with and without a residual) on the fake cuDNN,
// which checks the positions of cudnnConvolutionBiasActivationForward's 18
// arguments, the activation descriptor (its double coefficient included)
// and that z is y when there is no residual; every candidate runs.
func TestFusedConvFake(t *testing.T) {
	dir := fakeLibraries(t)
	d, err := OpenCUDNN(Options{LibDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Destroy(h)
	for _, tt := range []struct {
		name              string
		half, nhwc        bool
		relu, residual    bool
		candidates, first int
	}{
		{"fp32 nchw relu", false, false, true, false, 2, 1},
		{"fp16 nhwc relu residual", true, true, true, true, 3, 6},
		{"fp16 nhwc identity", true, true, false, false, 3, 6},
		{"fp32 nhwc identity residual", false, true, false, true, 2, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := ConvParams{N: 2, C: 8, H: 8, W: 8, M: 16, KH: 3, KW: 3, PadH: 1, PadW: 1, StrideH: 1, StrideW: 1,
				DilH: 1, DilW: 1, Group: 1, Half: tt.half, NHWC: tt.nhwc}
			c, err := d.NewFusedConv(h, p, 8, 8, 1<<20, tt.relu, tt.residual)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Destroy()
			if len(c.Candidates) != tt.candidates || c.Algo != tt.first {
				t.Fatalf("candidates %v, algo %d; want %d candidates, algo %d first", c.Candidates, c.Algo, tt.candidates, tt.first)
			}
			for _, a := range c.Candidates {
				if err := c.Use(a); err != nil {
					t.Fatal(err)
				}
				const x, w, z, bias, y, ws = 1, 2, 3, 4, 5, 6
				if err := c.Forward(h, x, w, z, bias, y, ws, a.Workspace); err != nil {
					t.Fatalf("algo %d: %v", a.Algo, err)
				}
			}
		})
	}
	t.Run("failure", func(t *testing.T) {
		t.Setenv("KILN_FAKE_CUDNN_FAIL", "1")
		c, err := d.NewFusedConv(h, ConvParams{N: 1, C: 1, H: 4, W: 4, M: 1, KH: 1, KW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}, 4, 4, 1<<20, true, false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Destroy()
		if err := c.Forward(h, 1, 2, 0, 4, 5, 0, c.Workspace); err == nil {
			t.Fatal("no error from a failing cudnnConvolutionBiasActivationForward")
		}
	})
}
