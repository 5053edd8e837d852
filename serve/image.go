package serve

import (
	"bytes"
	"context"
	"fmt"
	stdimage "image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// Parameters of a kiln_image model (config.pbtxt parameters, string
// values).
const (
	// ParamImageLayout is "NCHW" (the default) or "NHWC".
	ParamImageLayout = "layout"
	// ParamImageColor is "RGB" (the default) or "BGR".
	ParamImageColor = "color_order"
	// ParamImageScale divides each 8-bit pixel value first ("255", the
	// default, gives values in [0,1]).
	ParamImageScale = "scale"
	// ParamImageMean and ParamImageStd are three comma-separated values,
	// per channel in the color order: out = (pixel/scale - mean) / std.
	ParamImageMean = "mean"
	ParamImageStd  = "std"
)

// MaxImagePixels bounds the size of an image a kiln_image model decodes
// (width times height, read from its header before decoding): 4096x4096.
const MaxImagePixels = 16 << 20

// imagePrep is a kiln_image model: one BYTES input of encoded images (JPEG
// or PNG), one per batch item, and one FP32 output, each image decoded,
// resized (bilinear) to the output's height and width, scaled and
// normalized per channel.
type imagePrep struct {
	input, output string
	h, w          int
	nhwc, bgr     bool
	scale         float32
	mean, std     [3]float32
	batched       bool
}

// newImagePrep reads a kiln_image model's config: its input (TYPE_STRING,
// dims [1]), its output (TYPE_FP32, dims [3,H,W], or [H,W,3] with layout
// NHWC) and its parameters. Errors name the field.
func newImagePrep(cfg *repository.Config) (*imagePrep, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: model %s (kiln_image): %s", repository.ErrConfig, cfg.Name, fmt.Sprintf(format, args...))
	}
	if len(cfg.Inputs) != 1 || len(cfg.Outputs) != 1 {
		return nil, bad("input, output: want one input (encoded images) and one output")
	}
	in, out := cfg.Inputs[0], cfg.Outputs[0]
	if in.DataType != tensor.String {
		return nil, bad("input %q: data_type %s, want TYPE_STRING (encoded JPEG or PNG bytes)", in.Name, repository.TritonType(in.DataType))
	}
	if len(in.Dims) != 1 || in.Dims[0] != 1 {
		return nil, bad("input %q: dims %v, want [ 1 ] (one image per batch item)", in.Name, in.Dims)
	}
	if out.DataType != tensor.Float32 {
		return nil, bad("output %q: data_type %s, want TYPE_FP32", out.Name, repository.TritonType(out.DataType))
	}
	p := &imagePrep{input: in.Name, output: out.Name, scale: 255, std: [3]float32{1, 1, 1}, batched: cfg.MaxBatchSize > 0}
	params := cfg.Parameters
	switch l := strings.ToUpper(params[ParamImageLayout]); l {
	case "", "NCHW":
	case "NHWC":
		p.nhwc = true
	default:
		return nil, bad("parameters %s: %q (want NCHW or NHWC)", ParamImageLayout, params[ParamImageLayout])
	}
	switch c := strings.ToUpper(params[ParamImageColor]); c {
	case "", "RGB":
	case "BGR":
		p.bgr = true
	default:
		return nil, bad("parameters %s: %q (want RGB or BGR)", ParamImageColor, params[ParamImageColor])
	}
	d := out.Dims
	if len(d) != 3 || p.nhwc && d[2] != 3 || !p.nhwc && d[0] != 3 {
		want := "[ 3, H, W ]"
		if p.nhwc {
			want = "[ H, W, 3 ]"
		}
		return nil, bad("output %q: dims %v, want %s", out.Name, d, want)
	}
	if p.nhwc {
		p.h, p.w = int(d[0]), int(d[1])
	} else {
		p.h, p.w = int(d[1]), int(d[2])
	}
	if p.h <= 0 || p.w <= 0 || p.h > 16384 || p.w > 16384 {
		return nil, bad("output %q: dims %v: height and width must be fixed sizes 1..16384", out.Name, d)
	}
	if s, ok := params[ParamImageScale]; ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 32)
		if err != nil || v <= 0 {
			return nil, bad("parameters %s: %q (want a number above 0)", ParamImageScale, s)
		}
		p.scale = float32(v)
	}
	for _, f := range []struct {
		key string
		dst *[3]float32
	}{{ParamImageMean, &p.mean}, {ParamImageStd, &p.std}} {
		s, ok := params[f.key]
		if !ok {
			continue
		}
		parts := strings.Split(s, ",")
		if len(parts) != 3 {
			return nil, bad("parameters %s: %q (want three comma-separated numbers)", f.key, s)
		}
		for i, part := range parts {
			v, err := strconv.ParseFloat(strings.TrimSpace(part), 32)
			if err != nil || f.key == ParamImageStd && v == 0 {
				return nil, bad("parameters %s: %q (want three comma-separated numbers, std not 0)", f.key, s)
			}
			f.dst[i] = float32(v)
		}
	}
	return p, nil
}

// check refuses, before the request is queued, images that are not JPEG
// or PNG or are too large (their header is read, not the pixels), so that
// a bad image fails alone rather than the batch it would join.
func (p *imagePrep) check(inputs map[string]*tensor.Tensor) error {
	t := inputs[p.input]
	if t == nil {
		return nil
	}
	for i, b := range t.Strings {
		if _, err := imageConfig([]byte(b)); err != nil {
			return fmt.Errorf("%w: input %q: image %d: %w", ErrInvalid, p.input, i, err)
		}
	}
	return nil
}

// imageConfig reads an encoded image's header: JPEG or PNG only, at most
// MaxImagePixels pixels.
func imageConfig(b []byte) (stdimage.Config, error) {
	var (
		c   stdimage.Config
		err error
	)
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		c, err = png.DecodeConfig(bytes.NewReader(b))
	case bytes.HasPrefix(b, []byte{0xff, 0xd8}):
		c, err = jpeg.DecodeConfig(bytes.NewReader(b))
	default:
		return c, fmt.Errorf("not a JPEG or PNG image (%d bytes)", len(b))
	}
	if err != nil {
		return c, fmt.Errorf("bad image: %w", err)
	}
	if c.Width <= 0 || c.Height <= 0 || c.Width*c.Height > MaxImagePixels {
		return c, fmt.Errorf("image of %dx%d pixels (at most %d pixels)", c.Width, c.Height, MaxImagePixels)
	}
	return c, nil
}

// decodeImage decodes a JPEG or PNG image.
func decodeImage(b []byte) (stdimage.Image, error) {
	if _, err := imageConfig(b); err != nil {
		return nil, err
	}
	var (
		img stdimage.Image
		err error
	)
	if b[0] == 0x89 {
		img, err = png.Decode(bytes.NewReader(b))
	} else {
		img, err = jpeg.Decode(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("bad image: %w", err)
	}
	return img, nil
}

// Run decodes and preprocesses each image of the input: output [N,3,H,W]
// (batched) or [3,H,W].
func (p *imagePrep) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	t := inputs[p.input]
	if t == nil || t.DType != tensor.String {
		return nil, fmt.Errorf("%w: input %q is missing or not BYTES", ErrInvalid, p.input)
	}
	n := len(t.Strings)
	plane := 3 * p.h * p.w
	chw := []int{3, p.h, p.w}
	if p.nhwc {
		chw = []int{p.h, p.w, 3}
	}
	shape := chw
	if p.batched {
		shape = append([]int{n}, chw...)
	} else if n != 1 {
		return nil, fmt.Errorf("%w: input %q has %d images, the model (max_batch_size 0) takes one", ErrInvalid, p.input, n)
	}
	out := tensor.New(tensor.Float32, shape...)
	dst := out.Float32s()
	for i, b := range t.Strings {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		img, err := decodeImage([]byte(b))
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: image %d: %w", ErrInvalid, p.input, i, err)
		}
		p.fill(dst[i*plane:(i+1)*plane], img)
	}
	return map[string]*tensor.Tensor{p.output: out}, nil
}

// fill resizes img to h x w (bilinear, pixel centers aligned) and writes
// its normalized channels into dst.
func (p *imagePrep) fill(dst []float32, img stdimage.Image) {
	src := rgbPixels(img)
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	fx, fy := float32(sw)/float32(p.w), float32(sh)/float32(p.h)
	var ch [3]int // source channel of each output channel
	if p.bgr {
		ch = [3]int{2, 1, 0}
	} else {
		ch = [3]int{0, 1, 2}
	}
	var mul, add [3]float32
	for c := range 3 {
		mul[c] = 1 / (p.scale * p.std[c])
		add[c] = -p.mean[c] / p.std[c]
	}
	for y := range p.h {
		sy := (float32(y)+0.5)*fy - 0.5
		y0, wy := split(sy, sh)
		y1 := min(y0+1, sh-1)
		for x := range p.w {
			sx := (float32(x)+0.5)*fx - 0.5
			x0, wx := split(sx, sw)
			x1 := min(x0+1, sw-1)
			for c := range 3 {
				sc := ch[c]
				v00, v01 := float32(src[(y0*sw+x0)*3+sc]), float32(src[(y0*sw+x1)*3+sc])
				v10, v11 := float32(src[(y1*sw+x0)*3+sc]), float32(src[(y1*sw+x1)*3+sc])
				top := v00 + (v01-v00)*wx
				bot := v10 + (v11-v10)*wx
				v := (top+(bot-top)*wy)*mul[c] + add[c]
				if p.nhwc {
					dst[(y*p.w+x)*3+c] = v
				} else {
					dst[(c*p.h+y)*p.w+x] = v
				}
			}
		}
	}
}

// split returns the whole source index at or below s (clamped to
// 0..n-1) and the weight of the next one.
func split(s float32, n int) (int, float32) {
	if s <= 0 {
		return 0, 0
	}
	i := int(s)
	if i >= n-1 {
		return n - 1, 0
	}
	return i, s - float32(i)
}

// rgbPixels returns img's pixels as 8-bit R, G, B values (alpha dropped),
// row by row, from the bounds' origin.
func rgbPixels(img stdimage.Image) []uint8 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]uint8, w*h*3)
	switch m := img.(type) {
	case *stdimage.YCbCr:
		for y := range h {
			for x := range w {
				yi := m.YOffset(b.Min.X+x, b.Min.Y+y)
				ci := m.COffset(b.Min.X+x, b.Min.Y+y)
				r, g, bl := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				o := (y*w + x) * 3
				out[o], out[o+1], out[o+2] = r, g, bl
			}
		}
	case *stdimage.NRGBA:
		for y := range h {
			row := m.Pix[y*m.Stride:]
			for x := range w {
				o := (y*w + x) * 3
				out[o], out[o+1], out[o+2] = row[x*4], row[x*4+1], row[x*4+2]
			}
		}
	case *stdimage.Gray:
		for y := range h {
			row := m.Pix[y*m.Stride:]
			for x := range w {
				o := (y*w + x) * 3
				v := row[x]
				out[o], out[o+1], out[o+2] = v, v, v
			}
		}
	default:
		for y := range h {
			for x := range w {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				o := (y*w + x) * 3
				out[o], out[o+1], out[o+2] = c.R, c.G, c.B
			}
		}
	}
	return out
}
