package cuda

// conv3_i8u2: kiln's own INT8 3x3 convolution (padding 1, stride 1 or 2) on
// Hopper, an implicit GEMM that is expand_i8u2 (expandi8.go) with x loaded
// by im2col copies (NOTES "conv3_i8u2"):
//
//	y[p, n] = sat(round(relu(alpha[n] sum_{r,s,c} x[img, S oh+r-1, S ow+s-1, c] w[n, r, s, c] + bias[n])))
//
// over NHWC int8 x [N, H, W, C] and y [N, OH, OW, Cout] (OH = (H-1)/S + 1,
// stride S; P = N OH OW rows of Cout), weights reordered to [Cout, 3, 3,
// C] (K = 9 C, the K index (r*3 + s) C + c), alpha and bias float32
// [Cout]. Each 64-byte K slice is one tap (r, s) and 64 channels: one
// im2col copy of 128 consecutive output pixels (the filter base (S ow - 1,
// S oh - 1), the traversal stride S, the tap as the copy's offsets, zeros
// outside the image), landing in shared memory in the layout of
// expand_i8u2's x slice (128 rows of 64 bytes, the 64-byte swizzle). The
// weights are the 2-D map [Cout, 9C] and y the 2-D map [P, Cout] of the
// 1x1; the last tile's rows past P (P not a multiple of 128) read zeros and
// the store clips them.
//
//	conv3_i8u2(const TMap* maps, const float* alpha, const float* bias, float beta, int hasz, int K, int N, int tiles, int OH, int OW)
//
// K = 9 C, N = Cout, tiles = Conv3I8Tiles, OH and OW the output's extent;
// hasz's bits as expand_i8u2's (a residual z [P, Cout] is possible but
// ResNet's 3x3s have none: 0, or ExpandI8NoReLU). Not yet run on a GPU.

// conv3I8Variant is the build for cout output channels and the stride:
// expand_i8u2's (two blocks an SM, rings of 3 slices and 3 tiles, the
// conversion-free epilogue with bigK: K = 9 C >= 576 always takes the
// I2F-accumulator path) with the im2col producer, conv3_i8u2; with tiles
// of 128 rows x 64 channels (wgmma m64n64k32) where cout is not a multiple
// of 128 (ResNet-50's layer1, 64 -> 64 at 56x56), conv3_i8u2n64; with the
// traversal stride 2 for stride 2, suffix s2.
func conv3I8Variant(cout, stride int) expandI8tVariant {
	v := expandI8tVariant{name: "conv3_i8u2", swizzled: true, perSM: 2, fastCvt: true, bigK: true, conv3: true}
	if cout%128 != 0 {
		v.name, v.n64 = v.name+"n64", true
	}
	if stride == 2 {
		v.name, v.stride2 = v.name+"s2", true
	}
	return v
}

// Conv3I8Build returns the kernel for cout output channels and the stride
// (Conv3I8Fits): its name, its CUDA C++ (one kernel a module, sm_90a only)
// and a block's dynamic shared memory (over 48 KB: the function's attribute
// must allow it). A block is ExpandI8Threads threads, ExpandI8BlocksPerSM
// blocks an SM, as expand_i8u2's; the grid at most that many per SM
// (persistent).
func Conv3I8Build(cout, stride int) (name, src string, smem int) {
	v := conv3I8Variant(cout, stride)
	return v.name, expandI8tSource(v), v.smem()
}

// Conv3I8OutSize is the output extent of an input extent h for a 3x3
// filter with padding 1 and the stride.
func Conv3I8OutSize(h, stride int) int { return (h-1)/stride + 1 }

// Conv3I8Fits reports whether Conv3I8Kernel computes the convolution of x
// [n, h, w, c] into cout channels with a 3x3 filter of the given stride and
// padding: stride 1 or 2, padding 1, c a multiple of 64 (whole 64-byte slices
// of a tap), cout of 64 (tiles of 128 channels where cout is a multiple of
// 128, else of 64: conv3_i8u2n64); the output rows P = n oh ow any
// count (the last tile clipped), within int32 with the tile count.
func Conv3I8Fits(n, h, w, c, cout, stride, pad int) bool {
	if n <= 0 || h <= 0 || w <= 0 || c <= 0 || cout <= 0 || stride < 1 || stride > 2 || pad != 1 || c%64 != 0 || cout%64 != 0 {
		return false
	}
	p := n * Conv3I8OutSize(h, stride) * Conv3I8OutSize(w, stride)
	return n*h < 1<<31 && p < 1<<31 && 9*c < 1<<31 && h*w*c < 1<<40 && Conv3I8Tiles(p, cout) < 1<<31
}

// Conv3I8Tiles is the tile count of a [p, cout] output (the kernel's
// tiles argument): 128-row blocks, the last one clipped, times the channel
// blocks (cout / 128, or cout / 64 for conv3_i8u2n64).
func Conv3I8Tiles(p, cout int) int { return (p + 127) / 128 * (cout / conv3I8Variant(cout, 1).bn()) }

// Conv3I8MapSpecs describes the kernel's maps for x [n, h, w, c], w [cout,
// 3, 3, c], z and y [n oh ow, cout] int8 (oh, ow: Conv3I8OutSize): x's
// im2col map (Dims {c, w, h, n}, the bounding box's corners -1 and -1 for
// padding 1, the traversal stride the convolution's, 128 pixels of 64
// channels a copy, the 64-byte swizzle) and the tiled maps of w, z and y
// (expand_i8u2's with K = 9 c, or with 64-channel tiles for
// conv3_i8u2n64; z 0 means no residual, its map then points at y). Device
// memory holds them in the order x, w, z, y.
func Conv3I8MapSpecs(x, wt, z, y DevicePtr, n, h, w, c, cout, stride int) (TensorMapIm2col, []TensorMapTiled) {
	return conv3I8MapSpecsV(conv3I8Variant(cout, stride), x, wt, z, y, n, h, w, c, cout, stride)
}

// conv3I8MapSpecsV is Conv3I8MapSpecs for the conv3 variant v: its K slice
// (v.bk() channels a pixel: 64 in the 64-byte swizzle, 128 in the 128-byte
// one for the k128 builds) in x's im2col map and w's tiled one.
func conv3I8MapSpecsV(v expandI8tVariant, x, wt, z, y DevicePtr, n, h, w, c, cout, stride int) (TensorMapIm2col, []TensorMapTiled) {
	swz := Swizzle64B
	if v.k128 {
		swz = Swizzle128B
	}
	xm := TensorMapIm2col{Addr: x, Dims: []uint64{uint64(c), uint64(w), uint64(h), uint64(n)},
		Strides: []uint64{uint64(c), uint64(w * c), uint64(h * w * c)}, Lower: []int32{-1, -1}, Upper: []int32{-1, -1},
		ChannelsPerPixel: uint32(v.bk()), PixelsPerColumn: 128, Swizzle: swz, L2Promotion: 2}
	if stride != 1 {
		xm.ElementStrides = []uint32{1, uint32(stride), uint32(stride), 1}
	}
	p := n * Conv3I8OutSize(h, stride) * Conv3I8OutSize(w, stride)
	tiled := expandI8tMapSpecs(x, wt, z, y, p, 9*c, cout, v)
	return xm, tiled[1:]
}

// EncodeConv3I8Maps encodes Conv3I8MapSpecs' four maps, x's first: the
// 512 bytes the kernel reads from device memory (64-byte aligned).
func (d *Driver) EncodeConv3I8Maps(x, wt, z, y DevicePtr, n, h, w, c, cout, stride int) ([]TensorMap, error) {
	return d.encodeConv3I8MapsV(conv3I8Variant(cout, stride), x, wt, z, y, n, h, w, c, cout, stride)
}

// encodeConv3I8MapsV is EncodeConv3I8Maps for the conv3 variant v.
func (d *Driver) encodeConv3I8MapsV(v expandI8tVariant, x, wt, z, y DevicePtr, n, h, w, c, cout, stride int) ([]TensorMap, error) {
	xs, rest := conv3I8MapSpecsV(v, x, wt, z, y, n, h, w, c, cout, stride)
	xm, err := d.EncodeTensorMapIm2col(xs)
	if err != nil {
		return nil, err
	}
	maps := []TensorMap{xm}
	for _, t := range rest {
		m, err := d.EncodeTensorMapTiled(t)
		if err != nil {
			return nil, err
		}
		maps = append(maps, m)
	}
	return maps, nil
}

// Conv3I8ReorderWeights returns the int8 weights w, [cout][c][3][3] (the
// ONNX/PyTorch order), as the kernel reads them: [cout][3][3][c].
func Conv3I8ReorderWeights(w []int8, cout, c int) []int8 {
	if cout <= 0 || c <= 0 || len(w) != cout*c*9 {
		return nil
	}
	out := make([]int8, len(w))
	for o := range cout {
		for ci := range c {
			for t := range 9 {
				out[(o*9+t)*c+ci] = w[(o*c+ci)*9+t]
			}
		}
	}
	return out
}

// Conv3I8ModuleSource is the CUDA C++ of the executor's module for cout
// output channels and the stride: Conv3I8Build's kernel and DequantI8Kernel
// beside it (the executor widens the output with it where the value stays
// half), for sm_90a only.
func Conv3I8ModuleSource(cout, stride int) string {
	return expandI8tSource(conv3I8Variant(cout, stride)) + dequantI8Source
}
