package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// conv3Shape is one 3x3 convolution of ResNet-50 (c -> cout channels of
// an h x h input, padding 1, the stride).
type conv3Shape struct{ n, h, c, cout, stride int }

// oh is the output's extent.
func (s conv3Shape) oh() int { return Conv3I8OutSize(s.h, s.stride) }

func (s conv3Shape) String() string {
	if s.stride != 1 {
		return fmt.Sprintf("%d -> %d at %dx%d stride %d, batch %d", s.c, s.cout, s.h, s.h, s.stride, s.n)
	}
	return fmt.Sprintf("%d -> %d at %dx%d, batch %d", s.c, s.cout, s.h, s.h, s.n)
}

// conv3Data is one case's host data: x [n, h, h, c] and w [cout, 3, 3, c]
// int8 (uniform over all 256 codes), per-channel alpha (scaled by
// 1/sqrt(9c), so that outputs spread over the 8 bits instead of
// saturating) and bias.
type conv3Data struct {
	s           conv3Shape
	x, w        []byte
	alpha, bias []float32
}

func newConv3Data(r *rand.Rand, s conv3Shape) *conv3Data {
	d := &conv3Data{s: s, x: make([]byte, s.n*s.h*s.h*s.c), w: make([]byte, s.cout*9*s.c)}
	for _, b := range [][]byte{d.x, d.w} {
		for i := 0; i < len(b); i += 8 {
			var v [8]byte
			binary.LittleEndian.PutUint64(v[:], r.Uint64())
			copy(b[i:], v[:])
		}
	}
	k := 9 * s.c
	d.alpha, d.bias = make([]float32, s.cout), make([]float32, s.cout)
	for i := range d.alpha {
		// uniform int8 codes: a product's deviation ~74^2, the sum's ~5460 sqrt(K)
		d.alpha[i] = float32(60 / (5460 * math.Sqrt(float64(k))) * (0.5 + r.Float64()))
		d.bias[i] = float32(r.Float64()*40 - 20)
	}
	return d
}

// check compares the kernel's y [n h h, cout] with the host on rows
// (every channel) and on pairs (pixel, channel): exact but for at most one
// step where the float epilogue rounds differently (the host's
// float32(acc) * alpha + bias by one FMA, then round to even; the kernel's
// I2F, FFMA and the magic-number round). Returns the outputs checked, the
// one-step differences and the distinct output values.
func (d *conv3Data) check(t *testing.T, name string, relu bool, y []byte, rows []int, pairs [][2]int) (checked, ones, distinct int) {
	t.Helper()
	s := d.s
	seen := map[int8]bool{}
	bad := 0
	one := func(p, o int) {
		want := conv3I8Out(conv3I8Acc(d.x, d.w, s.h, s.h, s.c, s.stride, p, o), d.alpha[o], d.bias[o], relu)
		got := int8(y[p*s.cout+o])
		seen[got] = true
		checked++
		switch diff := int(got) - int(want); {
		case diff == 0:
		case diff == 1 || diff == -1:
			ones++
		default:
			if bad < 5 {
				img, pix := p/(s.oh()*s.oh()), p%(s.oh()*s.oh())
				t.Errorf("%s %s: y[img %d, row %d, col %d, ch %d] = %d, want %d", s, name, img, pix/s.oh(), pix%s.oh(), o, got, want)
			}
			bad++
		}
	}
	for _, p := range rows {
		for o := range s.cout {
			one(p, o)
		}
	}
	for _, q := range pairs {
		one(q[0], q[1])
	}
	if bad > 0 {
		t.Errorf("%s %s: %d of %d outputs off by more than one step", s, name, bad, checked)
	}
	// one step only where float32 rounding of a product near a .5 differs: rare
	if ones > checked/1000+2 {
		t.Errorf("%s %s: %d of %d outputs one step off (more than 0.1%%: not rounding)", s, name, ones, checked)
	}
	return checked, ones, len(seen)
}

// TestConv3I8ProbeOnGPU checks and times conv3_i8u2 (conv3i8.go: kiln's
// INT8 3x3 convolution, expand_i8u2 with im2col copies; conv3_i8u2n64 for
// 64 channels) on ResNet-50's stride-1 3x3 shapes (64 at 56x56, 128 at
// 28x28, 256 at 14x14, 512 at 7x7; batch KILN_INT8_BLOCK_BATCH, default
// 256), then on its three stride-2 ones (conv3_i8u2s2: 128 from 56x56, 256
// from 28x28, 512 from 14x14) beside cuDNN's INT8 graph of the same layer (8-bit in and out,
// per-channel scale, bias, ReLU; its fastest candidate) and FP16 (the
// fused legacy call's algorithms and the half graph's engines, the
// fastest). Each kernel's output is first checked against the host: every
// output of a batch of 2 (at 7x7 the 98 rows end in a clipped tile), with
// ReLU and without (hasz's ExpandI8NoReLU, outputs in [-128, 127]), then
// at full batch the first and last 128 rows, each image border row of
// image 1 and 4096 sampled outputs; exact but for one step of the float
// epilogue's rounding. Times are the median of 50 (CUDA events) of the
// fastest candidate by the mean of 10. Library rows come before kiln's in
// each shape, and each row is logged at once, so that a kernel that ends
// the run leaves the rows before it. Opt-in: KILN_INT8_BLOCK_BENCH=1;
// needs compute 9.0 (sm_90a); without a GPU it skips.
func TestConv3I8ProbeOnGPU(t *testing.T) {
	if os.Getenv("KILN_INT8_BLOCK_BENCH") != "1" {
		t.Skip("set KILN_INT8_BLOCK_BENCH=1 to probe kiln's INT8 3x3 convolution")
	}
	g := openGPU(t)
	if g.fp.ComputeMajor != 9 {
		t.Skipf("conv3_i8u2 needs compute 9.0 (wgmma, bulk tensor copies); %s is %d.%d", g.fp.GPUName, g.fp.ComputeMajor, g.fp.ComputeMinor)
	}
	began := time.Now()
	bb := newBlockBench(t, g)
	if os.Getenv("KILN_GRAPH_MAX_COMPILED") == "" {
		bb.maxCompiled = 3 // cuDNN compiles each runtime-compiled engine (0.3-0.7 s): the run stays under 120 s
	}
	batch := 256
	if v, err := strconv.Atoi(os.Getenv("KILN_INT8_BLOCK_BATCH")); err == nil && v > 0 {
		batch = v
	}
	sms := ltDefaultSMs
	if v, err := g.d.Attribute(g.dev, 16); err == nil && v > 0 { // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
		sms = v
	}
	n := openNVRTC(t)
	type kernel struct {
		fn   Function
		smem int
		v    expandI8tVariant
	}
	kernels := map[string]kernel{}
	// conv3_i8u2's three builds, then the k128 ones (expandk128.go: 128-byte
	// K slices, C and Cout multiples of 128; KILN_INT8X_K128=0 leaves them
	// out), timed in a second pass over the shapes
	builds := []expandI8tVariant{conv3I8Variant(64, 1), conv3I8Variant(128, 1), conv3I8Variant(128, 2)}
	var k128s []expandI8tVariant
	if os.Getenv("KILN_INT8X_K128") != "0" {
		for _, two := range []bool{false, true} {
			k128s = append(k128s, conv3K128Variant(1, two), conv3K128Variant(2, two))
		}
	}
	for _, v := range append(builds, k128s...) {
		name, src, smem := v.name, expandI8tSource(v), v.smem()
		// a build that does not compile or load is an error, and its shapes are
		// left out; the others still run
		fns, log, err := loadProbeKernels(t, g, n, name+".cu", src, "sm_90a", name)
		if err != nil {
			t.Errorf("%s: %v (log: %s)", name, err, log)
			continue
		}
		if err := funcSetMaxDynamicShared(g.d, fns[0], smem); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		regs, _ := funcAttribute(g.d, fns[0], 4)
		local, _ := funcAttribute(g.d, fns[0], 3)
		t.Logf("%s: %d registers, %d bytes of local memory, %d bytes of shared memory, %d SMs; %s", name, regs, local, smem, sms, log)
		kernels[name] = kernel{fns[0], smem, v}
	}
	r := rand.New(rand.NewPCG(11, 12))
	// run launches the kernel for d's shape on device x, w, y (alpha and
	// bias at a and b) and returns the launch as a func for the timer
	prepare := func(d *conv3Data, v expandI8tVariant, hasz int32, x, w, y, a, b DevicePtr) (func() error, func(), error) {
		s := d.s
		k := kernels[v.name]
		maps, err := g.d.encodeConv3I8MapsV(v, x, w, 0, y, s.n, s.h, s.h, s.c, s.cout, s.stride)
		if err != nil {
			return nil, nil, err
		}
		var mb []byte
		for _, m := range maps {
			mb = append(mb, m[:]...)
		}
		md := bb.put(mb)
		tiles := Conv3I8Tiles(s.n*s.oh()*s.oh(), s.cout)
		args := NewKernelArgs(10)
		args.SetPtr(0, md)
		args.SetPtr(1, a)
		args.SetPtr(2, b)
		args.SetFloat32(3, 0)
		args.SetInt32(4, hasz)
		args.SetInt32(5, int32(9*s.c))
		args.SetInt32(6, int32(s.cout))
		args.SetInt32(7, int32(tiles))
		args.SetInt32(8, int32(s.oh()))
		args.SetInt32(9, int32(s.oh()))
		grid := Dim3{X: uint32(min(tiles, v.perSM*sms)), Y: 1, Z: 1}
		run := func() error {
			return g.d.Launch(k.fn, grid, Dim3{X: uint32(v.threads()), Y: 1, Z: 1}, uint32(k.smem), bb.s, args)
		}
		return run, args.Free, nil
	}
	// kiln runs d's case once on a y poisoned with 0x80 (-128: no ReLU
	// output; without ReLU 0x7f) and returns y, the launch and its cleanup;
	// relu false sets hasz's ExpandI8NoReLU (outputs clamped to [-128, 127])
	kiln := func(d *conv3Data, v expandI8tVariant, relu bool) ([]byte, func() error, func()) {
		s := d.s
		p := s.n * s.oh() * s.oh()
		x, w, y := bb.put(d.x), bb.put(d.w), bb.alloc(p*s.cout)
		a, b := bb.put(f32bytes(d.alpha)), bb.put(f32bytes(d.bias))
		poison := make([]byte, p*s.cout)
		hasz := int32(0)
		for i := range poison {
			poison[i] = 0x80
		}
		if !relu {
			hasz = ExpandI8NoReLU
			for i := range poison {
				poison[i] = 0x7f
			}
		}
		if err := g.d.MemcpyHtoD(y, poison); err != nil {
			t.Fatal(err)
		}
		run, free, err := prepare(d, v, hasz, x, w, y, a, b)
		if err != nil {
			t.Fatalf("%s maps: %v", s, err)
		}
		if err := run(); err != nil {
			t.Fatalf("%s launch: %v", s, err)
		}
		if err := g.d.StreamSynchronize(bb.s); err != nil {
			t.Fatalf("%s: the kernel failed (the context is lost): %v", s, err)
		}
		return bb.download(y, p*s.cout), run, free
	}
	var rows []string
	row := func(s conv3Shape, impl string, ms float64, cand string, bytes, ops float64) {
		rows = append(rows, fmt.Sprintf("| %s | %s | %.4f | %s | %.0f | %.2f | %.0f |", s, impl, ms, cand, bytes/1e6, bytes/ms/1e9, ops/ms/1e9))
		t.Logf("row: %s", rows[len(rows)-1])
	}
	// fastest times cands by the mean of 10 each and the fastest by the median of 50
	fastest := func(s conv3Shape, impl string, cands []blockCand, bytes, ops float64) float64 {
		best, bestMS := -1, math.Inf(1)
		for i, c := range cands {
			if c.use() != nil {
				continue
			}
			ms, err := bb.time10(c.run)
			if err != nil {
				t.Logf("%s %s %s: %v", s, impl, c.name, err)
				if e := g.d.Synchronize(); e != nil {
					t.Fatalf("the context is unusable after %v: %v", err, e)
				}
				continue
			}
			if ms < bestMS {
				best, bestMS = i, ms
			}
		}
		if best < 0 {
			rows = append(rows, fmt.Sprintf("| %s | %s | not built | | | | |", s, impl))
			return 0
		}
		if err := cands[best].use(); err != nil {
			t.Fatal(err)
		}
		ms, err := bb.median50(cands[best].run)
		if err != nil {
			t.Fatal(err)
		}
		row(s, impl, ms, cands[best].name, bytes, ops)
		return ms
	}
	// kilnRows checks kiln's build v at shape s (a batch of 2, every output,
	// with ReLU and, for conv3_i8u2's builds, without; then the full batch
	// on the first and last 128 rows, image 1's border rows and 4096
	// sampled outputs) and times it; its row ends in us a tile an SM and the
	// tile's 64-byte K slices
	kilnRows := func(s conv3Shape, v expandI8tVariant, bytes8, ops float64) {
		name := v.name
		p, oh := s.n*s.oh()*s.oh(), s.oh()
		if _, ok := kernels[name]; !ok {
			rows = append(rows, fmt.Sprintf("| %s | kiln %s | not built | | | | |", s, name))
			bb.freeAll()
			return
		}
		small := newConv3Data(r, conv3Shape{2, s.h, s.c, s.cout, s.stride})
		all := make([]int, 2*oh*oh)
		for i := range all {
			all[i] = i
		}
		relus := []bool{true, false}
		if v.k128 {
			relus = relus[:1] // the epilogue is conv3_i8u2's: the new mainloop with ReLU only (time)
		}
		for _, relu := range relus {
			ys, _, free := kiln(small, v, relu)
			checked, ones, distinct := small.check(t, name, relu, ys, all, nil)
			free()
			bb.freeAll()
			t.Logf("%s %s, batch 2, ReLU %v: %d outputs checked, %d one step off, %d distinct values", s, name, relu, checked, ones, distinct)
			if distinct < 64 {
				t.Errorf("%s %s: only %d distinct outputs (saturated or zero: the check says little)", s, name, distinct)
			}
		}
		full := newConv3Data(r, s)
		yf, run, free := kiln(full, v, true)
		var check []int
		for q := range min(128, p) { // the first and the last 128 rows
			check = append(check, q, p-1-q)
		}
		hw := oh * oh
		if s.n > 1 {
			for q := range oh { // image 1's first and last rows (the padding above and below)
				check = append(check, hw+q, 2*hw-oh+q)
			}
		}
		var pairs [][2]int
		for range 4096 {
			pairs = append(pairs, [2]int{r.IntN(p), r.IntN(s.cout)})
		}
		checked, ones, distinct := full.check(t, name, true, yf, check, pairs)
		t.Logf("%s %s, batch %d: %d outputs checked, %d one step off, %d distinct values", s, name, s.n, checked, ones, distinct)
		tiles := Conv3I8Tiles(p, s.cout)
		grid := min(tiles, v.perSM*sms)
		nslices, ntiles := v.stages()
		ms := fastest(s, "kiln "+name, []blockCand{{fmt.Sprintf("%s (persistent, %d blocks, %d tiles of 128x%d, im2col TMA, %d-byte K slices, %d+%d stages, %d wgmma groups in flight)",
			name, grid, tiles, v.bn(), v.bk(), nslices, ntiles, max(v.wgDepth, 1)), func() error { return nil }, run}}, bytes8, ops)
		if ms > 0 {
			us := ms * 1e3 / (float64(tiles) / float64(sms))
			rows[len(rows)-1] += fmt.Sprintf(" %.2f us a tile an SM, %d 64-byte K slices a tile |", us, 9*s.c/64)
		}
		free()
		bb.freeAll()
	}
	// the stride-1 shapes, then the stride-2 ones (the s2 build, after: a
	// trap there leaves the stride-1 rows)
	shapes := []conv3Shape{{batch, 56, 64, 64, 1}, {batch, 28, 128, 128, 1}, {batch, 14, 256, 256, 1}, {batch, 7, 512, 512, 1},
		{batch, 56, 128, 128, 2}, {batch, 28, 256, 256, 2}, {batch, 14, 512, 512, 2}}
	for _, s := range shapes {
		p, oh := s.n*s.oh()*s.oh(), s.oh()
		bytes8 := float64(s.n*s.h*s.h*s.c + p*s.cout + 9*s.c*s.cout)
		ops := 2 * float64(p) * float64(s.cout) * float64(9*s.c)
		cp := ConvParams{N: s.n, C: s.c, H: s.h, W: s.h, M: s.cout, KH: 3, KW: 3, PadH: 1, PadW: 1, StrideH: s.stride, StrideW: s.stride, DilH: 1, DilW: 1,
			Group: 1, NHWC: true}

		// past 90 s the libraries' rows are left out (kiln's still run): the
		// whole test stays under two minutes
		libs := time.Since(began) < 90*time.Second
		if !libs {
			t.Logf("%s: the libraries' rows left out (%v in)", s, time.Since(began).Round(time.Second))
		}

		libRows := func() {
			// cuDNN's INT8 graph: 8-bit x and y, per-channel scale, bias, ReLU
			x8, w8, y8 := bb.put(quantBytes(r, DataInt8, s.n*s.h*s.h*s.c)), bb.put(quantBytes(r, DataInt8, 9*s.c*s.cout)), bb.alloc(p*s.cout)
			sc, bi := make([]float32, s.cout), make([]float32, s.cout)
			for i := range sc {
				sc[i], bi[i] = 0.001, 0.1
			}
			scale, bias := bb.put(f32bytes(sc)), bb.put(f32bytes(bi))
			if c, err := bb.d.NewGraphConv(bb.h, cp, oh, oh, GraphConvOptions{Bias: true, ReLU: true, MaxWorkspace: bb.maxWS, MaxCandidates: bb.maxCand,
				MaxRuntimeCompiled: bb.maxCompiled, Quant: GraphQuant{In: DataInt8, Out: DataInt8, Scale: true}}); err != nil {
				t.Logf("%s: cuDNN INT8 graph NOT BUILT: %v", s, err)
				rows = append(rows, fmt.Sprintf("| %s | cuDNN INT8 graph | not built | | | | |", s))
			} else {
				var cands []blockCand
				for _, e := range c.Candidates {
					cands = append(cands, blockCand{"cudnn graph " + e.ID, func() error { return c.Use(e.ID) },
						func() error { return c.ExecuteQuant(bb.h, x8, w8, scale, bias, 0, scale, y8, bb.ws) }})
				}
				fastest(s, "cuDNN INT8 graph (int8 x, y)", cands, bytes8, ops)
				c.Destroy()
			}

			// FP16: the fused legacy call's algorithms and the half graph's engines
			xh, wh, yh, bh := bb.put(quantBytes(r, DataHalf, s.n*s.h*s.h*s.c)), bb.put(quantBytes(r, DataHalf, 9*s.c*s.cout)), bb.alloc(2*p*s.cout), bb.put(quantBytes(r, DataHalf, s.cout))
			ph := cp
			ph.Half = true
			var cands []blockCand
			var frees []func()
			if fc, err := bb.d.NewFusedConv(bb.h, ph, oh, oh, bb.maxWS, true, false); err != nil {
				t.Logf("%s: cuDNN fused half: %v", s, err)
			} else {
				frees = append(frees, fc.Destroy)
				for _, a := range fc.Candidates {
					cands = append(cands, blockCand{fmt.Sprintf("cudnn fused algo %d", a.Algo), func() error { return fc.Use(a) },
						func() error { return fc.Forward(bb.h, xh, wh, 0, bh, yh, bb.ws, bb.maxWS) }})
				}
			}
			if c, err := bb.d.NewGraphConv(bb.h, ph, oh, oh, GraphConvOptions{Bias: true, ReLU: true, MaxWorkspace: bb.maxWS, MaxCandidates: bb.maxCand,
				MaxRuntimeCompiled: bb.maxCompiled}); err != nil {
				t.Logf("%s: cuDNN half graph: %v", s, err)
			} else {
				frees = append(frees, c.Destroy)
				for _, e := range c.Candidates {
					cands = append(cands, blockCand{"cudnn graph " + e.ID, func() error { return c.Use(e.ID) },
						func() error { return c.Execute(bb.h, xh, wh, bh, 0, yh, bb.ws) }})
				}
			}
			fastest(s, "FP16 (fused call or graph)", cands, 2*bytes8, ops)
			for _, f := range frees {
				f()
			}
		}
		if libs {
			libRows()
		}
		bb.freeAll()

		kilnRows(s, conv3I8Variant(s.cout, s.stride), bytes8, ops)
	}
	// the k128 builds, after every shape's other rows (a trap in one leaves
	// them), on the shapes they take (C and Cout multiples of 128)
	for _, s := range shapes {
		for _, v := range k128s {
			if v.stride2 == (s.stride == 2) && conv3K128Fits(s.n, s.h, s.h, s.c, s.cout, s.stride, 1) {
				p := s.n * s.oh() * s.oh()
				kilnRows(s, v, float64(s.n*s.h*s.h*s.c+p*s.cout+9*s.c*s.cout), 2*float64(p)*float64(s.cout)*float64(9*s.c))
			}
		}
	}
	t.Logf("ResNet-50's 3x3 convolutions on %s (%v); ms the median of 50 of the fastest candidate; MB moved: x, y and w (int8; FP16 twice); kiln's rows end in us a tile an SM:\n| layer | implementation | ms | fastest candidate | MB | TB/s | TOPS |\n| --- | --- | --- | --- | --- | --- | --- |\n%s",
		g.fp.GPUName, time.Since(began).Round(time.Second), strings.Join(rows, "\n"))
}
