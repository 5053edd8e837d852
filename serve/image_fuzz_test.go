package serve

import (
	"bytes"
	"context"
	"errors"
	stdimage "image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// FuzzImagePrep feeds arbitrary bytes to a kiln_image model as a request
// would (check, then Run): an image is preprocessed into the output's
// shape, anything else is ErrInvalid, never a panic.
func FuzzImagePrep(f *testing.F) {
	img := stdimage.NewNRGBA(stdimage.Rect(0, 0, 5, 3))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var pb, jb bytes.Buffer
	png.Encode(&pb, img)
	jpeg.Encode(&jb, img, nil)
	gray := stdimage.NewGray16(stdimage.Rect(0, 0, 2, 2))
	gray.Set(1, 1, color.White)
	var gb bytes.Buffer
	png.Encode(&gb, gray)
	for _, seed := range [][]byte{pb.Bytes(), jb.Bytes(), gb.Bytes(), pb.Bytes()[:20], []byte("\x89PNG\r\n\x1a\n"), {0xff, 0xd8, 0xff}, nil} {
		f.Add(seed)
	}
	cfg, err := repository.ParseConfig(`name: "img" platform: "kiln_image" max_batch_size: 4
input [ { name: "bytes" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "pixels" data_type: TYPE_FP32 dims: [ 3, 4, 6 ] } ]
parameters { key: "mean" value { string_value: "0.5,0.5,0.5" } }`)
	if err != nil {
		f.Fatal(err)
	}
	p, err := newImagePrep(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := map[string]*tensor.Tensor{"bytes": {DType: tensor.String, Shape: []int{1, 1}, Strings: []string{string(b)}}}
		if err := p.check(in); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("check: %v is not ErrInvalid", err)
			}
			return
		}
		out, err := p.Run(context.Background(), in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("run: %v is not ErrInvalid", err)
			}
			return
		}
		if px := out["pixels"]; px == nil || len(px.Shape) != 4 || px.Shape[0] != 1 || px.Shape[1] != 3 || px.Shape[2] != 4 || px.Shape[3] != 6 {
			t.Fatalf("output %v", out)
		}
	})
}
