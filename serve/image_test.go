package serve_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// imageModelConfig is a kiln_image config with an output of dims and the
// parameters given ("key=value").
func imageModelConfig(maxBatch int, dims string, params ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: \"img\"\nplatform: \"kiln_image\"\nmax_batch_size: %d\n", maxBatch)
	b.WriteString("input [ { name: \"bytes\" data_type: TYPE_STRING dims: [ 1 ] } ]\n")
	fmt.Fprintf(&b, "output [ { name: \"pixels\" data_type: TYPE_FP32 dims: [ %s ] } ]\n", dims)
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		fmt.Fprintf(&b, "parameters { key: %q value { string_value: %q } }\n", k, v)
	}
	return b.String()
}

func loadImageModel(t *testing.T, cfg string) (*serve.Server, error) {
	t.Helper()
	repo := t.TempDir()
	os.MkdirAll(filepath.Join(repo, "img", "1"), 0o755)
	os.WriteFile(filepath.Join(repo, "img", "config.pbtxt"), []byte(cfg), 0o644)
	s := serve.New(serve.Options{Repository: repo})
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, s.Load("img")
}

// TestImageModelConfigErrors: a kiln_image config it cannot run does not
// load, and the error names the field.
func TestImageModelConfigErrors(t *testing.T) {
	tests := []struct {
		name, config, want string
	}{
		{"input type", strings.Replace(imageModelConfig(8, "3, 8, 8"), "TYPE_STRING", "TYPE_FP32", 1), `input "bytes": data_type TYPE_FP32, want TYPE_STRING`},
		{"input dims", strings.Replace(imageModelConfig(8, "3, 8, 8"), "dims: [ 1 ]", "dims: [ 2 ]", 1), `input "bytes": dims [2], want [ 1 ]`},
		{"output type", strings.Replace(imageModelConfig(8, "3, 8, 8"), "TYPE_FP32", "TYPE_FP16", 1), `output "pixels": data_type TYPE_FP16, want TYPE_FP32`},
		{"output rank", imageModelConfig(8, "3, 8"), `output "pixels": dims [3 8], want [ 3, H, W ]`},
		{"channels last in NCHW", imageModelConfig(8, "8, 8, 3"), `output "pixels": dims [8 8 3], want [ 3, H, W ]`},
		{"channels first in NHWC", imageModelConfig(8, "3, 8, 8", "layout=NHWC"), `want [ H, W, 3 ]`},
		{"variable size", imageModelConfig(8, "3, -1, 8"), `height and width must be fixed sizes`},
		{"layout", imageModelConfig(8, "3, 8, 8", "layout=CHW"), `parameters layout: "CHW" (want NCHW or NHWC)`},
		{"color order", imageModelConfig(8, "3, 8, 8", "color_order=RGBA"), `parameters color_order: "RGBA" (want RGB or BGR)`},
		{"mean of two", imageModelConfig(8, "3, 8, 8", "mean=0.5,0.5"), `parameters mean: "0.5,0.5"`},
		{"std of zero", imageModelConfig(8, "3, 8, 8", "std=1,0,1"), `parameters std: "1,0,1"`},
		{"scale", imageModelConfig(8, "3, 8, 8", "scale=-1"), `parameters scale: "-1"`},
		{"no output", "name: \"img\"\nplatform: \"kiln_image\"\ninput [ { name: \"bytes\" data_type: TYPE_STRING dims: [ 1 ] } ]\n", `output: kiln_image models declare their outputs`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadImageModel(t, tc.config)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// pattern is a w x h image whose pixels differ (R by x, G by y, B by both).
func pattern(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(40 * x), uint8(30 * y), uint8(10*x + 20*y), 255})
		}
	}
	return img
}

func encodeImage(t *testing.T, img image.Image, format string) []byte {
	var b bytes.Buffer
	var err error
	if format == "jpeg" {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 100})
	} else {
		err = png.Encode(&b, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// boxMean is the oracle of a downscale by a whole factor f (bilinear with
// pixel centers aligned, for f 1 or 2): each output pixel is the mean of
// an f x f block; channel c of output pixel (x, y).
func boxMean(img image.Image, f, x, y, c int) float64 {
	var sum float64
	for dy := range f {
		for dx := range f {
			p := color.NRGBAModel.Convert(img.At(f*x+dx, f*y+dy)).(color.NRGBA)
			sum += float64([]uint8{p.R, p.G, p.B}[c])
		}
	}
	return sum / float64(f*f)
}

// TestImageModel runs kiln_image models on PNG (RGBA, gray, paletted) and
// JPEG images, batched and not: the output is each image resized, scaled
// and normalized in the layout and color order asked; bad bytes are
// ErrInvalid naming the input.
func TestImageModel(t *testing.T) {
	src := pattern(8, 8)
	gray := image.NewGray(src.Bounds())
	pal := image.NewPaletted(src.Bounds(), palette.WebSafe)
	for y := range 8 {
		for x := range 8 {
			gray.Set(x, y, src.At(x, y))
			pal.Set(x, y, src.At(x, y))
		}
	}
	tests := []struct {
		name     string
		maxBatch int
		dims     string
		params   []string
		images   []image.Image
		format   string
		f        int // downscale factor
		bgr      bool
		nhwc     bool
		mean     [3]float64
		std      [3]float64
		tol      float64
	}{
		{"same size", 8, "3, 8, 8", nil, []image.Image{src}, "png", 1, false, false, [3]float64{}, [3]float64{1, 1, 1}, 1e-6},
		{"half size", 8, "3, 4, 4", nil, []image.Image{src}, "png", 2, false, false, [3]float64{}, [3]float64{1, 1, 1}, 1e-6},
		{"normalized", 8, "3, 4, 4", []string{"mean=0.485,0.456,0.406", "std=0.229,0.224,0.225"}, []image.Image{src}, "png", 2, false, false,
			[3]float64{0.485, 0.456, 0.406}, [3]float64{0.229, 0.224, 0.225}, 1e-5},
		{"BGR", 8, "3, 8, 8", []string{"color_order=BGR"}, []image.Image{src}, "png", 1, true, false, [3]float64{}, [3]float64{1, 1, 1}, 1e-6},
		{"NHWC", 8, "8, 8, 3", []string{"layout=NHWC"}, []image.Image{src}, "png", 1, false, true, [3]float64{}, [3]float64{1, 1, 1}, 1e-6},
		{"batch of gray and paletted", 8, "3, 4, 4", nil, []image.Image{gray, pal}, "png", 2, false, false, [3]float64{}, [3]float64{1, 1, 1}, 1e-6},
		{"JPEG", 8, "3, 8, 8", nil, []image.Image{src}, "jpeg", 1, false, false, [3]float64{}, [3]float64{1, 1, 1}, 3.0 / 255},
		{"not batched", 0, "3, 4, 4", nil, []image.Image{src}, "png", 2, false, false, [3]float64{}, [3]float64{1, 1, 1}, 1e-6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := loadImageModel(t, imageModelConfig(tc.maxBatch, tc.dims, tc.params...))
			if err != nil {
				t.Fatal(err)
			}
			n := len(tc.images)
			in := &tensor.Tensor{DType: tensor.String, Shape: []int{n, 1}}
			if tc.maxBatch == 0 {
				in.Shape = []int{1}
			}
			var decoded []image.Image
			for _, img := range tc.images {
				b := encodeImage(t, img, tc.format)
				in.Strings = append(in.Strings, string(b))
				d, _, err := image.Decode(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				decoded = append(decoded, d)
			}
			resp, err := s.Infer(context.Background(), &serve.InferRequest{Model: "img", Inputs: map[string]*tensor.Tensor{"bytes": in}})
			if err != nil {
				t.Fatal(err)
			}
			out := resp.Outputs[0].Tensor
			h, w := 8/tc.f, 8/tc.f
			wantShape := []int{3, h, w}
			if tc.nhwc {
				wantShape = []int{h, w, 3}
			}
			if tc.maxBatch > 0 {
				wantShape = append([]int{n}, wantShape...)
			}
			if fmt.Sprint(out.Shape) != fmt.Sprint(wantShape) {
				t.Fatalf("shape %v, want %v", out.Shape, wantShape)
			}
			got := out.Float32s()
			bad := 0
			for i, img := range decoded {
				for y := range h {
					for x := range w {
						for c := range 3 {
							sc := c
							if tc.bgr {
								sc = 2 - c
							}
							want := (boxMean(img, tc.f, x, y, sc)/255 - tc.mean[c]) / tc.std[c]
							at := i*3*h*w + (c*h+y)*w + x
							if tc.nhwc {
								at = i*3*h*w + (y*w+x)*3 + c
							}
							if d := float64(got[at]) - want; (d > tc.tol || d < -tc.tol) && bad < 5 {
								bad++
								t.Errorf("image %d pixel (%d,%d) channel %d: %v, want %v", i, x, y, c, got[at], want)
							}
						}
					}
				}
			}
		})
	}

	t.Run("bad bytes", func(t *testing.T) {
		s, err := loadImageModel(t, imageModelConfig(8, "3, 4, 4"))
		if err != nil {
			t.Fatal(err)
		}
		good := string(encodeImage(t, src, "png"))
		for _, c := range []struct{ name, data, want string }{
			{"text", "hello", `input "bytes": image 1: not a JPEG or PNG image`},
			{"truncated PNG", good[:len(good)/2], `input "bytes": image 1: bad image`},
			{"empty", "", `input "bytes": image 1: not a JPEG or PNG image (0 bytes)`},
			{"GIF", "GIF89a\x01\x00\x01\x00", `not a JPEG or PNG image`},
		} {
			t.Run(c.name, func(t *testing.T) {
				in := &tensor.Tensor{DType: tensor.String, Shape: []int{2, 1}, Strings: []string{good, c.data}}
				_, err := s.Infer(context.Background(), &serve.InferRequest{Model: "img", Inputs: map[string]*tensor.Tensor{"bytes": in}})
				if !errors.Is(err, serve.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("got %v, want ErrInvalid with %q", err, c.want)
				}
			})
		}
	})
}
