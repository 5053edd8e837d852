package gpuexec

import "github.com/kilnai/kiln/device/cuda"

// The epilogue after a plain convolution (and the flat elementwise
// kernels) in 16-byte vectors (kernels/nn_epilogue.cu), chosen here where
// their conditions hold, the scalar kernels of nn.cu for the rest. The
// scalar chan_epilogue divides a 64-bit index by hw and M for every
// element and moves one element a thread; after a cuBLASLt product of
// ResNet-50's 64x56x56 -> 256 at batch 256 it took longer than the
// product (device/cuda/NOTES.md).

// epiResidentThreads is the grid of the vector kernels in threads: every
// thread resident at once on an H100 (132 SMs of 2048 threads); each
// thread then loops over the vectors with the grid's stride. On a smaller
// GPU the blocks run in a few waves, on a larger one some SMs idle: both
// still correct.
const epiResidentThreads = 132 * 2048

// vecWidth is the elements in a 16-byte vector of the program's floats.
func (c *compiler) vecWidth() int {
	if c.half {
		return 8
	}
	return 4
}

// aligned16 reports whether every ref given (nil ones aside) starts on a
// 16-byte boundary (the buffers themselves are aligned to Alignment).
func aligned16(rs ...*ref) bool {
	for _, r := range rs {
		if r != nil && r.off%16 != 0 {
			return false
		}
	}
	return true
}

// chanEpilogue is the in-place epilogue y = act(y + bias[c] + z) of a
// convolution's output of n planes of hw elements (hw 1: channels-last,
// NHWC or one pixel, the channel the index modulo m):
//
//   - hw 1, m a multiple of the vector width, y, bias and z 16-byte
//     aligned: chan_epilogue_vec, a grid of resident threads (vecLaunch);
//   - NCHW planes of at least planeMinVectors vectors: chan_epilogue_plane,
//     one block per (n, c) plane, so the channel and its bias are fixed for
//     the block;
//   - else the scalar chan_epilogue (on an H100 it beat the plane kernel
//     on 14x14 and 7x7 planes: 118 against 146 us, 72 against 180).
func (c *compiler) chanEpilogue(yr ref, br, zr *ref, act activation, n, m int, hw int64) launch {
	total := int64(n) * int64(m) * hw
	w := c.vecWidth()
	switch {
	case hw == 1 && m%w == 0 && aligned16(&yr, br, zr):
		return vecLaunch(c.fk("chan_epilogue_vec"), total/int64(w), m/w,
			pArg(yr), optArg(br), optArg(zr), lArg(total), iArg(m), iArg(act.code), fArg(act.p0), fArg(act.p1))
	case c.planeOK(hw):
		planes := int64(n) * int64(m)
		return planeLaunch(c.fk("chan_epilogue_plane"), planes, hw, w,
			pArg(yr), optArg(br), optArg(zr), lArg(planes), lArg(hw), iArg(m), iArg(act.code), fArg(act.p0), fArg(act.p1))
	}
	return elemLaunch(c.fk("chan_epilogue"), total, pArg(yr), optArg(br), optArg(zr), lArg(total),
		lArg(hw), iArg(m), iArg(act.code), fArg(act.p0), fArg(act.p1))
}

// planeMinVectors is the fewest 16-byte vectors a plane must hold for the
// one-block-a-plane kernels (chan_epilogue_plane, binary_plane): measured
// on an H100 at batch 256, planes of 56x56 and 112x112 halves (392 and
// 1568 vectors) ran 2.5-2.9x faster than the scalar kernel, 14x14 and 7x7
// ones (not whole vectors, 196 and 49 halves) 1.2-2.5x slower.
const planeMinVectors = 256

// planeOK reports whether planes of hw elements suit the one-block-a-plane
// kernels: whole vectors, at least planeMinVectors of them.
func (c *compiler) planeOK(hw int64) bool {
	w := int64(c.vecWidth())
	return hw > 1 && hw%w == 0 && hw/w >= planeMinVectors
}

// vecLaunch is a launch of a vector kernel over nv vectors whose thread
// reads a column vector repeating every period vectors (m/w channel
// vectors; 0: none): a grid of at most epiResidentThreads threads, the
// block a multiple of period (or 256, a multiple of it) where period is
// at most 1024, so that the grid's stride is a multiple of the period and
// each thread keeps its column for its whole loop.
func vecLaunch(kernel string, nv int64, period int, args ...arg) launch {
	block := int64(256)
	switch {
	case period <= 0 || 256%period == 0:
	case period < 256:
		block = int64(period * (256 / period))
	case period <= 1024:
		block = int64(period)
	}
	g := max(1, min((nv+block-1)/block, max(1, epiResidentThreads/block)))
	return launch{kernel: kernel, grid: cuda.Dim3{X: uint32(g), Y: 1, Z: 1}, block: cuda.Dim3{X: uint32(block), Y: 1, Z: 1}, args: args}
}

// planeLaunch is a launch of a kernel that gives each of planes planes of
// hw elements one block (grid-stride beyond 2^30 planes): threads about
// the plane's vectors of w (its elements where hw is not a multiple of w),
// a whole number of warps from 32 to 256.
func planeLaunch(kernel string, planes, hw int64, w int, args ...arg) launch {
	per := hw
	if hw%int64(w) == 0 {
		per = hw / int64(w)
	}
	threads := uint32(min(256, max(32, (per+31)/32*32)))
	g := uint32(max(1, min(planes, 1<<30)))
	return launch{kernel: kernel, grid: cuda.Dim3{X: g, Y: 1, Z: 1}, block: cuda.Dim3{X: threads, Y: 1, Z: 1}, args: args}
}

// planeRepeat reports whether a has y's shape and b, its dims aligned
// with y's trailing ones, is constant over y's trailing dims from some
// axis k on (b's dims there are 1; hw, their product, above 1) and before
// k equals y's dims on a run [j, k) and is 1 before j: y's element i then
// reads b[(i / hw) % bm], bm the run's product, in planes = prod(y[:k])
// planes. An NCHW tensor times [N, C, 1, 1] or plus [C, 1, 1] is one.
func planeRepeat(a, b, y []int) (planes, hw, bm int64, ok bool) {
	if !sameDims(a, y) || len(b) > len(y) {
		return 0, 0, 0, false
	}
	pb := make([]int, len(y))
	for i := range pb {
		pb[i] = 1
	}
	copy(pb[len(y)-len(b):], b)
	k := len(y)
	for k > 0 && pb[k-1] == 1 {
		k--
	}
	j := k
	for j > 0 && pb[j-1] == y[j-1] {
		j--
	}
	for _, d := range pb[:j] {
		if d != 1 {
			return 0, 0, 0, false
		}
	}
	hw, bm, planes = prod(y[k:]), prod(y[j:k]), prod(y[:k])
	if k == 0 || hw <= 1 {
		return 0, 0, 0, false // a scalar or a trailing-dims b: flatRepeat's
	}
	return planes, hw, max(bm, 1), true
}
