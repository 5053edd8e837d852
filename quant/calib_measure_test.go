package quant

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/tensor"
)

// augment returns x ([n, c, h, w]) flipped or not, shifted by up to 4
// pixels, with a random gain, offset and a little noise.
func augment(r *rand.Rand, x *tensor.Tensor) *tensor.Tensor {
	y := tensor.New(tensor.Float32, x.Shape...)
	src, dst := x.Float32s(), y.Float32s()
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	flip := r.Intn(2) == 1
	dy, dx := r.Intn(9)-4, r.Intn(9)-4
	gain := 0.8 + 0.4*r.Float64()
	bias := 0.2 * r.NormFloat64()
	for b := 0; b < n; b++ {
		for ch := 0; ch < c; ch++ {
			for i := 0; i < h; i++ {
				for j := 0; j < w; j++ {
					si, sj := min(max(i+dy, 0), h-1), j+dx
					if flip {
						sj = w - 1 - j + dx
					}
					sj = min(max(sj, 0), w-1)
					v := src[((b*c+ch)*h+si)*w+sj]
					dst[((b*c+ch)*h+i)*w+j] = float32(float64(v)*gain+bias) + float32(0.02*r.NormFloat64())
				}
			}
		}
	}
	return y
}

// TestCalibrationSetsMeasure is the measurement behind MinHistogramSamples,
// run by hand: KILN_CALIB_MEASURE=DIR (a folder with model.onnx and
// test_data_set_0, such as ../shared/models/mobilenet_v2 or
// examples/tinycnn) calibrates with each method on 16 batches holding 1,
// 2, 4, 8 and 16 distinct random samples, the test sample 16 times, and
// the test sample with 15 augmented copies (flips, shifts, gain, noise),
// each method as it is (Calibrate's fallback to minmax below
// MinHistogramSamples off),
// and prints 1-cosine and top-1 agreement against FP32 on the set itself,
// on 64 held-out random samples and on 8 held-out augmented ones. It
// asserts nothing: it prints numbers for a person to read.
func TestCalibrationSetsMeasure(t *testing.T) {
	dir := os.Getenv("KILN_CALIB_MEASURE")
	if dir == "" {
		t.Skip("set KILN_CALIB_MEASURE=DIR to measure calibration sets on the model in DIR")
	}
	// the methods themselves, without the fallback to minmax on small sets
	histogramMin = 0
	defer func() { histogramMin = MinHistogramSamples }()
	ctx := context.Background()
	ref, err := engine.New(loadOptimized(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	real, err := LoadBatches(dir, ref.Inputs())
	if err != nil {
		t.Fatal(err)
	}
	name := ref.Inputs()[0].Name
	x0 := real[0][name]
	shapes := map[string][]int{name: x0.Shape}
	rnd, _ := RandomBatches(ref.Inputs(), shapes, 16, 7)
	held, _ := RandomBatches(ref.Inputs(), shapes, 64, 99)
	r := rand.New(rand.NewSource(3))
	var aug, augHeld []map[string]*tensor.Tensor
	aug = append(aug, real[0])
	for len(aug) < 16 {
		aug = append(aug, map[string]*tensor.Tensor{name: augment(r, x0)})
	}
	for len(augHeld) < 8 {
		augHeld = append(augHeld, map[string]*tensor.Tensor{name: augment(r, x0)})
	}
	rep := func(k int) []map[string]*tensor.Tensor {
		var out []map[string]*tensor.Tensor
		for i := 0; i < 16; i++ {
			out = append(out, rnd[i%k])
		}
		return out
	}
	sets := []struct {
		name string
		b    []map[string]*tensor.Tensor
	}{
		{"rand1x16", rep(1)}, {"rand2x8", rep(2)}, {"rand4x4", rep(4)}, {"rand8x2", rep(8)}, {"rand16", rnd},
		{"real1x16", func() (o []map[string]*tensor.Tensor) {
			for range 16 {
				o = append(o, real[0])
			}
			return
		}()},
		{"aug16", aug},
	}
	for _, s := range sets {
		for _, m := range []Method{Entropy, Percentile, MinMax} {
			tab, err := Calibrate(ctx, ref, s.b, m, CalibOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g := loadOptimized(t, dir)
			qr, err := QuantizeINT8(g, tab, INT8Options{})
			if err != nil {
				t.Fatal(err)
			}
			nq, nf := qr.Count()
			qe, err := engine.New(g)
			if err != nil {
				t.Fatal(err)
			}
			line := fmt.Sprintf("%-9s %-10s", s.name, m)
			for _, ev := range []struct {
				n string
				b []map[string]*tensor.Tensor
			}{{"self", s.b[:1]}, {"rand", held}, {"aug", augHeld}} {
				acc, err := Compare(ctx, ref, qe, ev.b)
				if err != nil {
					t.Fatal(err)
				}
				line += fmt.Sprintf("  %s 1-cos %.2e top1 %.3f", ev.n, 1-acc.MinCosine(), acc.Outputs[0].Top1)
			}
			t.Logf("%s  (%d int8 layers, %d fp32; calibrated with %s)", line, nq, nf, tab.Method)
		}
	}
}
