package image

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// runErr prepares n and runs it on in, returning the Run error.
func runErr(t *testing.T, n *ir.Node, opset int64, in ...*tensor.Tensor) error {
	t.Helper()
	k, err := ops.Prepare(n, opset)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Run(&ops.Env{}, in)
	return err
}

func TestNonMaxSuppression(t *testing.T) {
	// box 1 overlaps box 0 with IoU 0.9/1.1; box 2 is apart
	boxes := tensor.FromFloat32([]float32{
		0, 0, 1, 1,
		0, 0.1, 1, 1.1,
		0, 2, 1, 3,
	}, 1, 3, 4)
	flipped := tensor.FromFloat32([]float32{
		1, 1, 0, 0,
		0, 1.1, 1, 0.1,
		1, 3, 0, 2,
	}, 1, 3, 4)
	// the same boxes as [x_center, y_center, width, height]
	centers := tensor.FromFloat32([]float32{
		0.5, 0.5, 1, 1,
		0.6, 0.5, 1, 1,
		2.5, 0.5, 1, 1,
	}, 1, 3, 4)
	scores := tensor.FromFloat32([]float32{0.75, 0.9, 0.6}, 1, 1, 3)
	th := func(v float32) *tensor.Tensor { return tensor.FromFloat32([]float32{v}, 1) }
	for _, tc := range []struct {
		name   string
		center bool
		in     []*tensor.Tensor
		want   []int64
	}{
		{"suppress", false, []*tensor.Tensor{boxes, scores, i64(3), th(0.5), th(0)}, []int64{0, 0, 1, 0, 0, 2}},
		{"flipped", false, []*tensor.Tensor{flipped, scores, i64(3), th(0.5), th(0)}, []int64{0, 0, 1, 0, 0, 2}},
		{"center", true, []*tensor.Tensor{centers, scores, i64(3), th(0.5), th(0)}, []int64{0, 0, 1, 0, 0, 2}},
		{"high iou threshold keeps all", false, []*tensor.Tensor{boxes, scores, i64(3), th(0.9), th(0)}, []int64{0, 0, 1, 0, 0, 0, 0, 0, 2}},
		{"limit", false, []*tensor.Tensor{boxes, scores, i64(1), th(0.5), th(0)}, []int64{0, 0, 1}},
		{"score threshold", false, []*tensor.Tensor{boxes, scores, i64(3), th(0.5), th(0.7)}, []int64{0, 0, 1}},
		{"no max output", false, []*tensor.Tensor{boxes, scores}, nil},
		// without an iou_threshold any overlap suppresses
		{"no thresholds", false, []*tensor.Tensor{boxes, scores, tensor.FromInt64([]int64{5})}, []int64{0, 0, 1, 0, 0, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var attrs []*ir.Attr
			if tc.center {
				attrs = append(attrs, opstest.Int("center_point_box", 1))
			}
			n := opstest.Node("NonMaxSuppression", len(tc.in), 1, attrs...)
			got := opstest.Run(t, n, 11, tc.in...)[0]
			if fmt.Sprint(got.Int64s()) != fmt.Sprint(tc.want) && !(len(tc.want) == 0 && got.Len() == 0) {
				t.Errorf("got %v, want %v", got.Int64s(), tc.want)
			}
			if got.Rank() != 2 || got.Shape[1] != 3 {
				t.Errorf("shape %v", got.Shape)
			}
		})
	}
	// two batches, two classes: ordered by batch, then class, then score
	b2 := tensor.New(tensor.Float32, 2, 3, 4)
	copy(b2.Float32s(), boxes.Float32s())
	copy(b2.Float32s()[12:], boxes.Float32s())
	s2 := tensor.FromFloat32([]float32{0.75, 0.9, 0.6, 0.1, 0.2, 0.3, 0.75, 0.9, 0.6, 0.1, 0.2, 0.3}, 2, 2, 3)
	got := opstest.Run(t, opstest.Node("NonMaxSuppression", 5, 1), 11, b2, s2, i64(1), th(0.5), th(0))[0]
	if want := "[0 0 1 0 1 2 1 0 1 1 1 2]"; fmt.Sprint(got.Int64s()) != want {
		t.Errorf("batches and classes: %v, want %s", got.Int64s(), want)
	}
	for _, in := range [][]*tensor.Tensor{
		{tensor.New(tensor.Float32, 1, 3, 3), scores},
		{boxes, tensor.New(tensor.Float32, 1, 1, 4)},
		{boxes, scores, i64(1, 2)},
		{boxes, scores, f32(1)},
		{boxes, nil},
	} {
		if err := runErr(t, opstest.Node("NonMaxSuppression", len(in), 1), 11, in...); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("err = %v, want ErrBadInput", err)
		}
	}
	if _, err := ops.Prepare(opstest.Node("NonMaxSuppression", 2, 1, opstest.Int("center_point_box", 2)), 11); !errors.Is(err, ops.ErrBadAttr) {
		t.Errorf("center_point_box 2: %v", err)
	}
}

func TestRoiAlign(t *testing.T) {
	// X[y][x] = 4y + x: bilinear sampling of a linear map is exact, so an
	// average is the map at the mean sample position.
	x := tensor.New(tensor.Float32, 1, 1, 4, 4)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(i)
	}
	rois := tensor.FromFloat32([]float32{0, 0, 3, 3}, 1, 4)
	bi := i64(0)
	for _, tc := range []struct {
		name  string
		attrs []*ir.Attr
		want  []float32
		shape []int
	}{
		// samples at 0.75 and 2.25 on both axes: mean 1.5
		{"output_half_pixel", []*ir.Attr{opstest.Int("sampling_ratio", 2), opstest.String("coordinate_transformation_mode", "output_half_pixel")},
			[]float32{7.5}, []int{1, 1, 1, 1}},
		// shifted by -0.5: samples at 0.25 and 1.75, mean 1
		{"half_pixel", []*ir.Attr{opstest.Int("sampling_ratio", 2)}, []float32{5}, []int{1, 1, 1, 1}},
		// 2x2 bins of size 1.5, one sample at each bin's centre
		{"bins", []*ir.Attr{opstest.Int("sampling_ratio", 1), opstest.Int("output_height", 2), opstest.Int("output_width", 2),
			opstest.String("coordinate_transformation_mode", "output_half_pixel")},
			[]float32{3.75, 5.25, 9.75, 11.25}, []int{1, 1, 2, 2}},
		// adaptive sampling: ceil(1.5) = 2 samples per bin axis
		{"adaptive", []*ir.Attr{opstest.Int("output_height", 2), opstest.Int("output_width", 2),
			opstest.String("coordinate_transformation_mode", "output_half_pixel")},
			[]float32{3.75, 5.25, 9.75, 11.25}, []int{1, 1, 2, 2}},
		// max mode takes the largest weighted corner of each sample (as the
		// reference does): at (0.75, 0.75) that is 0.5625 * X[1][1] = 2.8125
		{"max", []*ir.Attr{opstest.Int("sampling_ratio", 1), opstest.Int("output_height", 2), opstest.Int("output_width", 2),
			opstest.String("mode", "max"), opstest.String("coordinate_transformation_mode", "output_half_pixel")},
			nil, []int{1, 1, 2, 2}},
		// spatial_scale halves the roi
		{"spatial_scale", []*ir.Attr{opstest.Int("sampling_ratio", 2), opstest.Float("spatial_scale", 0.5),
			opstest.String("coordinate_transformation_mode", "output_half_pixel")}, nil, []int{1, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := opstest.Run(t, opstest.Node("RoiAlign", 3, 1, tc.attrs...), 16, x, rois, bi)[0]
			if fmt.Sprint(got.Shape) != fmt.Sprint(tc.shape) {
				t.Fatalf("shape %v, want %v", got.Shape, tc.shape)
			}
			switch tc.name {
			case "max":
				if v := got.Float32s()[0]; v != 2.8125 {
					t.Errorf("max: %g, want 2.8125", v)
				}
			case "spatial_scale":
				// roi [0, 1.5] forced to at least 1: samples 0.375, 1.125
				if v, want := got.Float32s()[0], float32(0.75*4+0.75); v != want {
					t.Errorf("got %g, want %g", v, want)
				}
			default:
				opstest.AllClose(t, got, tensor.FromFloat32(tc.want, tc.shape...), 1e-6, 1e-6)
			}
		})
	}
	// opset 10 defaults to output_half_pixel
	got := opstest.Run(t, opstest.Node("RoiAlign", 3, 1, opstest.Int("sampling_ratio", 2)), 10, x, rois, bi)[0]
	opstest.AllClose(t, got, tensor.FromFloat32([]float32{7.5}, 1, 1, 1, 1), 1e-6, 1e-6)
	// inference keeps symbolic dims
	k, _ := ops.Prepare(opstest.Node("RoiAlign", 3, 1, opstest.Int("output_height", 7), opstest.Int("output_width", 7)), 16)
	types, err := k.Infer([]*ir.Value{
		{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("n"), ir.D(256), ir.S("h"), ir.S("w")}}},
		{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("rois"), ir.D(4)}}},
		{Type: ir.Type{DType: tensor.Int64, Shape: ir.Shape{ir.S("rois")}}},
	})
	if err != nil || types[0].String() != "float32[rois,256,7,7]" {
		t.Errorf("infer: %v %v", types, err)
	}
	for _, in := range [][]*tensor.Tensor{
		{x, rois, i64(1)},
		{x, rois, i64(0, 0)},
		{x, tensor.FromFloat32([]float32{0, 0, 1}, 1, 3), bi},
		{tensor.New(tensor.Float32, 1, 4, 4), rois, bi},
		{x, rois, nil},
	} {
		if err := runErr(t, opstest.Node("RoiAlign", 3, 1), 16, in...); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("err = %v, want ErrBadInput", err)
		}
	}
	for _, a := range []*ir.Attr{opstest.String("mode", "min"), opstest.Int("output_height", 0),
		opstest.Int("sampling_ratio", -1), opstest.String("coordinate_transformation_mode", "corner")} {
		if _, err := ops.Prepare(opstest.Node("RoiAlign", 3, 1, a), 16); !errors.Is(err, ops.ErrBadAttr) {
			t.Errorf("%s: err = %v, want ErrBadAttr", a.Name, err)
		}
	}
}

func TestGridSample(t *testing.T) {
	x := tensor.FromFloat32([]float32{10, 11, 12, 13, 14, 15}, 1, 1, 2, 3)
	grid := func(v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, 1, 1, len(v)/2, 2) }
	for _, tc := range []struct {
		name  string
		attrs []*ir.Attr
		grid  *tensor.Tensor
		want  []float32
	}{
		// align_corners: (-1,-1) is pixel (0,0), (1,1) is (2,1), (0,0) is
		// x=1, y=0.5: (11+14)/2
		{"align_corners", []*ir.Attr{opstest.Int("align_corners", 1)}, grid(-1, -1, 1, 1, 0, 0), []float32{10, 15, 12.5}},
		// not aligned: (-1,-1) is (-0.5,-0.5): a quarter of X[0][0], the
		// rest reads zeros
		{"zeros", nil, grid(-1, -1, 0, 0), []float32{2.5, 12.5}},
		{"border", []*ir.Attr{opstest.String("padding_mode", "border")}, grid(-1, -1, 0, 0, 5, 5), []float32{10, 12.5, 15}},
		// x = ((-2+1)*3-1)/2 = -2 reflects about -0.5 to 1; y = -1.5 to 0.5
		{"reflection", []*ir.Attr{opstest.String("padding_mode", "reflection")}, grid(-1, -1, -2, -2), []float32{10, 12.5}},
		// nearest: x = 1.15 -> 1, y = 0.6 -> 1
		{"nearest", []*ir.Attr{opstest.String("mode", "nearest")}, grid(0.1, 0.1, 3, 3), []float32{14, 0}},
		// bicubic reproduces constants and, at pixel centres, the pixels
		{"bicubic", []*ir.Attr{opstest.String("mode", "bicubic"), opstest.Int("align_corners", 1), opstest.String("padding_mode", "border")},
			grid(-1, -1, 0, 1, 1, 1), []float32{10, 14, 15}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := opstest.Run(t, opstest.Node("GridSample", 2, 1, tc.attrs...), 16, x, tc.grid)[0]
			opstest.AllClose(t, got, tensor.FromFloat32(tc.want, 1, 1, 1, len(tc.want)), 1e-6, 1e-5)
		})
	}
	// bicubic between pixels: Keys weights at t = 0.5 along x on row 0
	// (border padding): -0.09375*10 + 0.59375*(10+11) - 0.09375*12
	got := opstest.Run(t, opstest.Node("GridSample", 2, 1, opstest.String("mode", "bicubic"),
		opstest.Int("align_corners", 1), opstest.String("padding_mode", "border")), 16, x, grid(-0.5, -1))[0]
	if v, want := float64(got.Float32s()[0]), -0.09375*10+0.59375*21-0.09375*12; v-want > 1e-5 || want-v > 1e-5 {
		t.Errorf("bicubic: %g, want %g", v, want)
	}
	// opset 20: 3-D input, mode names linear/cubic
	x3 := tensor.New(tensor.Float32, 1, 1, 2, 2, 2)
	for i := range x3.Float32s() {
		x3.Float32s()[i] = float32(i)
	}
	g3 := tensor.FromFloat32([]float32{1, 1, 1, 0, 0, 0, -1, -1, 1}, 1, 1, 1, 3, 3)
	got = opstest.Run(t, opstest.Node("GridSample", 2, 1, opstest.String("mode", "linear"), opstest.Int("align_corners", 1)), 20, x3, g3)[0]
	// grid (x, y, z): (1,1,1) is X[1][1][1] = 7; the centre averages to
	// 3.5; (-1,-1,1) is z=1, y=0, x=0: X[1][0][0] = 4
	opstest.AllClose(t, got, tensor.FromFloat32([]float32{7, 3.5, 4}, 1, 1, 1, 1, 3), 0, 1e-6)
	// inference
	k, _ := ops.Prepare(opstest.Node("GridSample", 2, 1), 16)
	types, err := k.Infer([]*ir.Value{
		{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("n"), ir.D(3), ir.S("h"), ir.S("w")}}},
		{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("n"), ir.D(5), ir.S("gw"), ir.D(2)}}},
	})
	if err != nil || types[0].String() != "float32[n,3,5,gw]" {
		t.Errorf("infer: %v %v", types, err)
	}
	for _, in := range [][]*tensor.Tensor{
		{x, tensor.FromFloat32([]float32{0, 0, 0}, 1, 1, 1, 3)},
		{x, tensor.FromFloat32([]float32{0, 0, 0, 0}, 2, 1, 1, 2)},
		{x, tensor.FromFloat32([]float32{0, 0}, 1, 2)},
		{x, i64(0, 0)},
		{x, nil},
	} {
		if err := runErr(t, opstest.Node("GridSample", 2, 1), 16, in...); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("err = %v, want ErrBadInput", err)
		}
	}
	for _, a := range []*ir.Attr{opstest.String("mode", "area"), opstest.String("padding_mode", "wrap")} {
		if _, err := ops.Prepare(opstest.Node("GridSample", 2, 1, a), 16); !errors.Is(err, ops.ErrBadAttr) {
			t.Errorf("%s: err = %v, want ErrBadAttr", a.Name, err)
		}
	}
}

func TestReflect(t *testing.T) {
	for _, tc := range []struct{ x, lo, hi, want float64 }{
		{-2, -0.5, 2.5, 1}, {3, -0.5, 2.5, 2}, {7, -0.5, 2.5, -0.5 + 1.5}, {-5, 0, 2, 1}, {1, 0, 2, 1}, {3, 0, 0, 0},
	} {
		if got := reflect(tc.x, tc.lo, tc.hi); got != tc.want {
			t.Errorf("reflect(%g, %g, %g) = %g, want %g", tc.x, tc.lo, tc.hi, got, tc.want)
		}
	}
}
