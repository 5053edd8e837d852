package cuda

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestInt8BlockBenchOnGPU answers stage 1 of issue 11's INT8 criterion
// (1.6x kiln's FP16 on ResNet-50 at batch 256): how fast is one bottleneck
// block at its real shapes when every tensor between its convolutions, its
// input, residual and output are in 8 bits? Opt-in: KILN_INT8_BLOCK_BENCH=1
// (it builds dozens of runtime-compiled cuDNN engines: minutes). Blocks
// 256x56x56 -> 64 -> 64 -> 256 and 1024x14x14 -> 256 -> 256 -> 1024 (the
// residual the block's input), batch KILN_INT8_BLOCK_BATCH (default 256),
// NHWC, in these implementations:
//
//   - fp16: each layer the fastest of cuDNN's fused call (every algorithm)
//     and, for the 1x1 layers, cuBLASLt's half products with the bias/ReLU
//     epilogue and the residual as C (the engine's tuned FP16 tactics);
//   - (a) int8, cuDNN graphs: x, w INT8, INT32 accumulation, per-channel
//     scale, bias, ReLU, the last layer adding the INT8 residual z and a
//     post-scale; every y INT8;
//   - (b) int8, cuBLASLt for the two 1x1 layers (CUBLAS_COMPUTE_32I, A, B, C,
//     D int8, per-channel alpha vector, the float32 bias with RELU_BIAS, the
//     residual as C with beta its scale over y's) and the cuDNN INT8 graph
//     for the 3x3;
//   - (b') the same with per-tensor weight scales and one host alpha (the
//     pointer mode cuBLASLt surely takes, should it refuse the vector);
//   - fp8, cuDNN graphs: (a) in FP8 E4M3;
//   - (c) fp8, cuBLASLt FP8 for the first 1x1 (per-tensor scales, E4M3 D
//     with its D scale; with and without fast accumulation), cuDNN FP8
//     graphs for the 3x3 and the last 1x1 (whose FP8 residual cuBLASLt
//     cannot read: C must be 16-bit with an FP8 D).
//
// Each layer's candidates (cuDNN engine configurations, at most
// KILN_GRAPH_MAX_CANDIDATES, default 8, of which KILN_GRAPH_MAX_COMPILED,
// default 8, runtime compiled; cuBLASLt's heuristic results; cuDNN's
// algorithms) are timed (CUDA events, mean of 10 after 2), the fastest
// whose output matches a float64 host reference of the same quantized math
// (one 8-bit step: INT8 within 1, FP8 within its relative half step) on 512
// sampled outputs is kept; then the block (the three layers back to back)
// and each layer alone run 50 times after 5 (CUDA events between runs) and
// the medians are printed, with the block's output against the FP32 block
// on the host (cosine over 256 sampled pixels, all channels). The scales
// are calibrated on 128 other pixels (max |value|, per tensor; weights per
// output channel, per tensor for cuBLASLt FP8). It logs what cuBLASLt's INT8
// heuristic returns for each alpha mode. KILN_INT8_BLOCK_ONLY (comma-
// separated substrings) keeps the matching implementations. Without a GPU
// it skips.
func TestInt8BlockBenchOnGPU(t *testing.T) {
	if os.Getenv("KILN_INT8_BLOCK_BENCH") != "1" {
		t.Skip("set KILN_INT8_BLOCK_BENCH=1 to measure the 8-bit bottleneck blocks (minutes on a GPU)")
	}
	g := openGPU(t)
	bb := newBlockBench(t, g)
	batch := 256
	if v, err := strconv.Atoi(os.Getenv("KILN_INT8_BLOCK_BATCH")); err == nil && v > 0 {
		batch = v
	}
	variants := []blockVariant{
		{"fp16 (cuDNN fused or cuBLASLt, fastest per layer)", DataHalf, [3]string{}},
		{"(a) int8 cuDNN graphs", DataInt8, [3]string{implGraph, implGraph, implGraph}},
		{"(b) int8 cuBLASLt 1x1 + cuDNN graph 3x3", DataInt8, [3]string{implLtInt8, implGraph, implLtInt8}},
		{"(b') int8 cuBLASLt 1x1 per-tensor host alpha + cuDNN graph 3x3", DataInt8, [3]string{implLtInt8Host, implGraph, implLtInt8Host}},
		{"fp8 cuDNN graphs", DataFP8, [3]string{implGraph, implGraph, implGraph}},
		{"(c) fp8 cuBLASLt first 1x1 + cuDNN graphs", DataFP8, [3]string{implLtFP8, implGraph, implGraph}},
	}
	if only := os.Getenv("KILN_INT8_BLOCK_ONLY"); only != "" {
		variants = slices.DeleteFunc(variants, func(v blockVariant) bool {
			if v.t == DataHalf {
				return false // the baseline stays
			}
			for _, s := range strings.Split(only, ",") {
				if s != "" && strings.Contains(v.name, s) {
					return false
				}
			}
			return true
		})
	}
	var table []string
	for _, s := range []blockShape{{batch, 56, 256, 64}, {batch, 14, 1024, 256}} {
		table = append(table, bb.block(s, variants)...)
	}
	t.Logf("cuDNN %d, cuBLASLt %d, %s; bottleneck blocks at batch %d, NHWC, every tensor in the named type; ms are medians of 50 (CUDA events):\n"+
		"| block | implementation | layer 1 (1x1) | layer 2 (3x3) | layer 3 (1x1 + residual) | sum of layers | block | vs fp16 | one-step mismatches | cosine vs FP32 |\n"+
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n%s", bb.d.Version(), bb.lt.Version(), g.fp.GPUName, batch, strings.Join(table, "\n"))
}

// blockVariant is one implementation of the block: the tensors' type and
// each layer's implementation (implGraph, implLtInt8, implLtFP8; empty for
// fp16, where each layer takes the fastest of cuDNN's fused call and
// cuBLASLt).
type blockVariant struct {
	name string
	t    GraphDataType
	impl [3]string
}

// blockCand is one candidate of a layer: use selects it, run queues the
// layer on the bench's stream.
type blockCand struct {
	name     string
	use, run func() error
}

// blockBench holds the libraries, stream, workspace and events of
// TestInt8BlockBenchOnGPU.
type blockBench struct {
	t                    *testing.T
	g                    *gpu
	d                    *CUDNN
	h                    CUDNNHandle
	lt                   *CUBLASLt
	lh                   CUBLASLtHandle
	s                    Stream
	ws                   DevicePtr
	maxWS                int
	maxCand, maxCompiled int
	ev                   []Event
	frees                []DevicePtr
}

func newBlockBench(t *testing.T, g *gpu) *blockBench {
	bb := &blockBench{t: t, g: g, maxWS: 256 << 20, maxCand: 8, maxCompiled: 8}
	if v, err := strconv.Atoi(os.Getenv("KILN_GRAPH_MAX_CANDIDATES")); err == nil && v >= 0 {
		bb.maxCand = v
	}
	if v, err := strconv.Atoi(os.Getenv("KILN_GRAPH_MAX_COMPILED")); err == nil && v >= 0 {
		bb.maxCompiled = v
	}
	var err error
	if bb.d, err = OpenCUDNN(Options{}); err != nil {
		t.Fatal(err)
	}
	if bb.h, err = bb.d.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.d.Destroy(bb.h) })
	if bb.lt, err = OpenCUBLASLt(Options{}); err != nil {
		t.Fatal(err)
	}
	if bb.lh, err = bb.lt.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.lt.Destroy(bb.lh) })
	if bb.s, err = g.d.StreamCreate(1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.d.StreamDestroy(bb.s) })
	if err := bb.d.SetStream(bb.h, bb.s); err != nil {
		t.Fatal(err)
	}
	if bb.ws, err = g.d.MemAlloc(bb.maxWS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.d.MemFree(bb.ws) })
	for range 51 {
		e, err := g.d.EventCreate(0)
		if err != nil {
			t.Fatal(err)
		}
		bb.ev = append(bb.ev, e)
	}
	t.Cleanup(func() {
		for _, e := range bb.ev {
			g.d.EventDestroy(e)
		}
	})
	return bb
}

// put copies b to new device memory, freed by freeAll.
func (bb *blockBench) put(b []byte) DevicePtr {
	p := bb.alloc(len(b))
	if err := bb.g.d.MemcpyHtoD(p, b); err != nil {
		bb.t.Fatal(err)
	}
	return p
}

func (bb *blockBench) alloc(n int) DevicePtr {
	p, err := bb.g.d.MemAlloc(max(n, 16))
	if err != nil {
		bb.t.Fatal(err)
	}
	bb.frees = append(bb.frees, p)
	return p
}

func (bb *blockBench) freeAll() {
	for _, p := range bb.frees {
		bb.g.d.MemFree(p)
	}
	bb.frees = nil
}

// download copies n bytes from p.
func (bb *blockBench) download(p DevicePtr, n int) []byte {
	b := make([]byte, n)
	if err := bb.g.d.MemcpyDtoH(b, p); err != nil {
		bb.t.Fatal(err)
	}
	return b
}

// time10 returns f's mean time over 10 runs after 2, in ms.
func (bb *blockBench) time10(f func() error) (float64, error) {
	for range 2 {
		if err := f(); err != nil {
			return 0, err
		}
	}
	d := bb.g.d
	if err := d.EventRecord(bb.ev[0], bb.s); err != nil {
		return 0, err
	}
	for range 10 {
		if err := f(); err != nil {
			return 0, err
		}
	}
	if err := d.EventRecord(bb.ev[1], bb.s); err != nil {
		return 0, err
	}
	if err := d.EventSynchronize(bb.ev[1]); err != nil {
		return 0, err
	}
	ms, err := d.EventElapsed(bb.ev[0], bb.ev[1])
	return float64(ms) / 10, err
}

// median50 returns the median of 50 back-to-back runs of f after 5, in
// ms (an event between runs).
func (bb *blockBench) median50(f func() error) (float64, error) {
	d := bb.g.d
	for range 5 {
		if err := f(); err != nil {
			return 0, err
		}
	}
	if err := d.EventRecord(bb.ev[0], bb.s); err != nil {
		return 0, err
	}
	for i := range 50 {
		if err := f(); err != nil {
			return 0, err
		}
		if err := d.EventRecord(bb.ev[i+1], bb.s); err != nil {
			return 0, err
		}
	}
	if err := d.EventSynchronize(bb.ev[50]); err != nil {
		return 0, err
	}
	ms := make([]float64, 50)
	for i := range ms {
		v, err := d.EventElapsed(bb.ev[i], bb.ev[i+1])
		if err != nil {
			return 0, err
		}
		ms[i] = float64(v)
	}
	slices.Sort(ms)
	return (ms[24] + ms[25]) / 2, nil
}

// blockHost is the host side of one block shape: the FP32 weights, the
// input (a period of perX values repeated), the scales and the reference
// pixels.
type blockHost struct {
	s       blockShape
	layers  [3]blockLayer
	xf      []float32 // one period of x
	amax    [4]float64
	refPix  []int
	refY    [][]float64 // the FP32 block's output at refPix
	checkAt [3][][2]int // (pixel, channel) of each layer's one-step check
}

func (hb *blockHost) x(pix, c int) float64 { return float64(hb.xf[(pix*hb.s.c+c)%len(hb.xf)]) }

// fp32 returns the FP32 block at pixel pix: t1 at its 3x3 neighbourhood
// (zeros outside the image), t2 and y there.
func (hb *blockHost) fp32(pix int) (t1 [][]float64, t2, y []float64) {
	s, l := hb.s, hb.layers
	hw := s.h * s.h
	n, i, j := pix/hw, pix%hw/s.h, pix%s.h
	t1 = make([][]float64, 9)
	for k := range 9 {
		ii, jj := i+k/3-1, j+k%3-1
		if ii < 0 || jj < 0 || ii >= s.h || jj >= s.h {
			continue
		}
		p := n*hw + ii*s.h + jj
		t1[k] = make([]float64, s.cm)
		for m := range s.cm {
			v := float64(l[0].b[m])
			for c := range s.c {
				v += hb.x(p, c) * float64(l[0].w[m*s.c+c])
			}
			t1[k][m] = max(v, 0)
		}
	}
	t2 = make([]float64, s.cm)
	for m := range s.cm {
		v := float64(l[1].b[m])
		for k := range 9 {
			if t1[k] == nil {
				continue
			}
			w := l[1].w[(m*9+k)*s.cm:]
			for c := range s.cm {
				v += t1[k][c] * float64(w[c])
			}
		}
		t2[m] = max(v, 0)
	}
	y = make([]float64, s.c)
	for m := range s.c {
		v := float64(l[2].b[m]) + hb.x(pix, m)
		for c := range s.cm {
			v += t2[c] * float64(l[2].w[m*s.cm+c])
		}
		y[m] = max(v, 0)
	}
	return t1, t2, y
}

func newBlockHost(s blockShape, seed uint64) *blockHost {
	r := rand.New(rand.NewPCG(seed, 7))
	hb := &blockHost{s: s, layers: newBlockLayers(r, s)}
	per := min(s.n*s.h*s.h*s.c, 1<<20) / s.c * s.c
	gain := make([]float64, s.c)
	for c := range gain {
		gain[c] = 0.25 + 1.5*r.Float64()
	}
	hb.xf = make([]float32, per)
	for i := range hb.xf {
		hb.xf[i] = float32(max(0, r.NormFloat64()) * gain[i%s.c]) // a ReLU's output
		hb.amax[0] = max(hb.amax[0], float64(hb.xf[i]))
	}
	pixels := s.n * s.h * s.h
	for range 128 {
		t1, t2, y := hb.fp32(r.IntN(pixels))
		for _, row := range t1 {
			for _, v := range row {
				hb.amax[1] = max(hb.amax[1], v)
			}
		}
		for _, v := range t2 {
			hb.amax[2] = max(hb.amax[2], v)
		}
		for _, v := range y {
			hb.amax[3] = max(hb.amax[3], v)
		}
	}
	for range 256 {
		p := r.IntN(pixels)
		_, _, y := hb.fp32(p)
		hb.refPix = append(hb.refPix, p)
		hb.refY = append(hb.refY, y)
	}
	for i, l := range hb.layers {
		for range 512 {
			hb.checkAt[i] = append(hb.checkAt[i], [2]int{r.IntN(pixels), r.IntN(l.m)})
		}
	}
	return hb
}

// block measures every variant of shape s and returns the table's rows.
func (bb *blockBench) block(s blockShape, variants []blockVariant) []string {
	t := bb.t
	start := time.Now()
	hb := newBlockHost(s, uint64(s.h))
	t.Logf("%s: host data and FP32 references in %v; max |x| %.3g, |t1| %.3g, |t2| %.3g, |y| %.3g", s, time.Since(start).Round(time.Millisecond),
		hb.amax[0], hb.amax[1], hb.amax[2], hb.amax[3])
	// bytes moved per block: each layer reads its input and weights and
	// writes its output; the last also reads the residual
	elems := int64(s.n) * int64(s.h*s.h)
	act := elems * int64(s.c+s.cm+s.cm+s.cm+s.cm+s.c+s.c) // x, t1 (w, r), t2 (w, r), y, z
	t.Logf("%s: %.0f MB per block in half, %.0f MB in 8 bits (%.3f / %.3f ms at 3 TB/s); %.1f GFLOP (%.3f ms at 800 TFLOP/s half, %.3f at 1600 TOPS 8-bit)",
		s, float64(2*act)/1e6, float64(act)/1e6, float64(2*act)/3e9, float64(act)/3e9,
		float64(2*elems*int64(s.c*s.cm+9*s.cm*s.cm+s.cm*s.c))/1e9,
		float64(2*elems*int64(s.c*s.cm+9*s.cm*s.cm+s.cm*s.c))/800e12*1e3, float64(2*elems*int64(s.c*s.cm+9*s.cm*s.cm+s.cm*s.c))/1600e12*1e3)
	var rows []string
	fp16 := 0.0
	for _, v := range variants {
		row, ms := bb.variant(hb, v)
		if v.t == DataHalf {
			fp16 = ms
		}
		ratio := "-"
		if fp16 > 0 && ms > 0 {
			ratio = fmt.Sprintf("%.2fx", fp16/ms)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", s, v.name, strings.Replace(row, "{ratio}", ratio, 1)))
	}
	return rows
}

// variant builds, checks and times one implementation of hb's block and
// returns its table cells (with {ratio} for the speed-up) and the block's
// median in ms (0 when it did not run).
func (bb *blockBench) variant(hb *blockHost, v blockVariant) (string, float64) {
	t, g, s := bb.t, bb.g, hb.s
	defer bb.freeAll()
	began := time.Now()
	pixels := s.n * s.h * s.h
	half := v.t == DataHalf
	size := v.t.Size()
	sc := hb.scales(v.t)
	xb := hb.encodeX(v.t, sc[0])
	bufs := [4]DevicePtr{bb.put(xb), bb.alloc(pixels * s.cm * size), bb.alloc(pixels * s.cm * size), bb.alloc(pixels * s.c * size)}
	sizes := [4]int{len(xb), pixels * s.cm * size, pixels * s.cm * size, pixels * s.c * size}
	host := [4][]byte{xb}
	var cells [3]string
	var layerMS [3]float64
	var runs [3]func() error
	var mismatches []string
	for i, l := range hb.layers {
		p := l.params(s)
		in, out := bufs[i], bufs[i+1]
		z := DevicePtr(0)
		if l.residual {
			z = bufs[0]
		}
		impl := v.impl[i]
		q := hb.quant(i, v, sc)
		var wbytes []byte
		var cands []blockCand
		switch {
		case half:
			wbytes = f16bytes(l.w)
			w, b := bb.put(wbytes), bb.put(f16bytes(l.b))
			ph := p
			ph.Half = true
			fc, err := bb.d.NewFusedConv(bb.h, ph, s.h, s.h, bb.maxWS, true, l.residual)
			if err != nil {
				t.Logf("%s %s layer %d: cuDNN fused: %v", s, v.name, i+1, err)
			} else {
				defer fc.Destroy()
				for _, a := range fc.Candidates {
					cands = append(cands, blockCand{fmt.Sprintf("cudnn fused algo %d", a.Algo), func() error { return fc.Use(a) },
						func() error { return fc.Forward(bb.h, in, w, z, b, out, bb.ws, bb.maxWS) }})
				}
			}
			if l.kh == 1 {
				mm, err := bb.lt.NewMatmulWith(bb.lh, pixels, l.m, l.c, MatmulOptions{Half: true, TransB: true, Bias: b, ReLU: true, Residual: l.residual}, bb.maxWS)
				if err != nil {
					t.Logf("%s %s layer %d: cuBLASLt half: %v", s, v.name, i+1, err)
				} else {
					defer mm.Destroy()
					for k := range mm.Candidates {
						cands = append(cands, blockCand{"cublaslt fp16 " + mm.CandidateString(k), func() error { return mm.UseCandidate(k) },
							func() error {
								if l.residual {
									return mm.RunC(bb.lh, in, w, z, out, bb.ws, bb.maxWS, bb.s)
								}
								return mm.Run(bb.lh, in, w, out, bb.ws, bb.maxWS, bb.s)
							}})
					}
				}
			}
		case impl == implGraph:
			wbytes = q.w
			w, scale, bias, post := bb.put(q.w), bb.put(f32bytes(q.scale)), bb.put(f32bytes(q.bias)), bb.put(f32bytes(q.post))
			built := time.Now()
			c, err := bb.d.NewGraphConv(bb.h, p, s.h, s.h, blockGraphOptions(i, v.t, bb.maxWS, bb.maxCand, bb.maxCompiled))
			if err != nil {
				t.Logf("%s %s layer %d: cuDNN %s graph NOT BUILT: %v", s, v.name, i+1, v.t, err)
				break
			}
			defer c.Destroy()
			t.Logf("%s %s layer %d: %d %s graph candidates in %v (%s)", s, v.name, i+1, len(c.Candidates), v.t, time.Since(built).Round(time.Millisecond), c.Search)
			for _, e := range c.Candidates {
				cands = append(cands, blockCand{"cudnn graph " + e.ID, func() error { return c.Use(e.ID) },
					func() error { return c.ExecuteQuant(bb.h, in, w, scale, bias, z, post, out, bb.ws) }})
			}
		case impl == implLtInt8:
			wbytes = q.w
			w, alpha, bias := bb.put(q.w), bb.put(f32bytes(q.alpha)), bb.put(f32bytes(q.ltBias))
			// what cuBLASLt 13 accepts: each alpha mode, with and without the epilogue
			for _, o := range []Int8MatmulOptions{{Alpha: AlphaVectorBetaZero, Bias: bias, ReLU: true}, {Alpha: AlphaVectorBetaHost},
				{Alpha: AlphaHost, HostAlpha: 0.01}, {Alpha: AlphaHost, HostAlpha: 0.01, Bias: bias, ReLU: true}} {
				if l.residual && o.Alpha == AlphaVectorBetaZero {
					continue
				}
				o.Residual, o.Beta = l.residual, q.beta
				mm, err := bb.lt.NewMatmulInt8(bb.lh, pixels, l.m, l.c, o, bb.maxWS)
				if err != nil {
					t.Logf("%s layer %d: cuBLASLt INT8 %s, bias %v, ReLU %v: %v", s, i+1, o.Alpha, o.Bias != 0, o.ReLU, err)
					continue
				}
				t.Logf("%s layer %d: cuBLASLt INT8 %s, bias %v, ReLU %v: %d heuristic results (%s first)", s, i+1, o.Alpha, o.Bias != 0, o.ReLU,
					len(mm.Candidates), mm.CandidateString(0))
				mm.Destroy()
			}
			mm, err := bb.lt.NewMatmulInt8(bb.lh, pixels, l.m, l.c, Int8MatmulOptions{Bias: bias, ReLU: true, Residual: l.residual, Beta: q.beta}, bb.maxWS)
			if err != nil {
				t.Logf("%s %s layer %d: cuBLASLt INT8 (alpha vector, bias, ReLU, residual %v): %v", s, v.name, i+1, l.residual, err)
				break
			}
			defer mm.Destroy()
			t.Logf("%s %s layer %d: cuBLASLt INT8 %dx%dx%d: %d heuristic results", s, v.name, i+1, pixels, l.m, l.c, len(mm.Candidates))
			zz := DevicePtr(0)
			if l.residual {
				zz = z
			}
			for k := range mm.Candidates {
				cands = append(cands, blockCand{"cublaslt int8 " + mm.CandidateString(k), func() error { return mm.UseCandidate(k) },
					func() error { return mm.Run(bb.lh, in, w, alpha, zz, out, bb.ws, bb.maxWS, bb.s) }})
			}
		case impl == implLtInt8Host:
			wbytes = q.w
			w, bias := bb.put(q.w), bb.put(f32bytes(q.ltBias))
			mm, err := bb.lt.NewMatmulInt8(bb.lh, pixels, l.m, l.c, Int8MatmulOptions{Alpha: AlphaHost, HostAlpha: q.alpha[0], Bias: bias, ReLU: true,
				Residual: l.residual, Beta: q.beta}, bb.maxWS)
			if err != nil {
				t.Logf("%s %s layer %d: cuBLASLt INT8 (host alpha, bias, ReLU, residual %v): %v", s, v.name, i+1, l.residual, err)
				break
			}
			defer mm.Destroy()
			zz := DevicePtr(0)
			if l.residual {
				zz = z
			}
			for k := range mm.Candidates {
				cands = append(cands, blockCand{"cublaslt int8 host alpha " + mm.CandidateString(k), func() error { return mm.UseCandidate(k) },
					func() error { return mm.Run(bb.lh, in, w, 0, zz, out, bb.ws, bb.maxWS, bb.s) }})
			}
		case impl == implLtFP8:
			if l.residual {
				t.Fatalf("%s: cuBLASLt FP8 with a residual needs a half C: not an 8-bit block", v.name)
			}
			wbytes = q.w
			w, bias := bb.put(q.w), bb.put(f16bytes(q.ltFP8Bias()))
			xs, wsc, ys := bb.put(f32bytes([]float32{q.sIn})), bb.put(f32bytes([]float32{q.swT})), bb.put(f32bytes([]float32{1 / q.sOut}))
			for _, fast := range []bool{false, true} {
				mm, err := bb.lt.NewMatmulFP8(bb.lh, pixels, l.m, l.c, FP8MatmulOptions{XScale: xs, WScale: wsc, Bias: bias, ReLU: true,
					OutFP8: true, YScale: ys, FastAccum: fast}, bb.maxWS)
				if err != nil {
					t.Logf("%s %s layer %d: cuBLASLt FP8 (fast accumulation %v): %v", s, v.name, i+1, fast, err)
					continue
				}
				defer mm.Destroy()
				t.Logf("%s %s layer %d: cuBLASLt FP8 %dx%dx%d, fast accumulation %v: %d heuristic results", s, v.name, i+1, pixels, l.m, l.c, fast, len(mm.Candidates))
				for k := range mm.Candidates {
					name := "cublaslt fp8 " + mm.CandidateString(k)
					if fast {
						name += " fast"
					}
					cands = append(cands, blockCand{name, func() error { return mm.UseCandidate(k) },
						func() error { return mm.Run(bb.lh, in, w, out, bb.ws, bb.maxWS, bb.s) }})
				}
			}
		}
		if len(cands) == 0 {
			t.Errorf("%s %s layer %d: no candidate", s, v.name, i+1)
			return "no candidate for layer " + strconv.Itoa(i+1) + " | | | | | | |", 0
		}
		type timed struct {
			c  blockCand
			ms float64
		}
		var times []timed
		for _, c := range cands {
			if err := c.use(); err != nil {
				t.Logf("%s: %v", c.name, err)
				continue
			}
			ms, err := bb.time10(c.run)
			if err != nil {
				t.Logf("%s %s layer %d %s: %v", s, v.name, i+1, c.name, err)
				if e := g.d.Synchronize(); e != nil {
					t.Fatalf("the context is unusable after %v: %v", err, e)
				}
				continue
			}
			times = append(times, timed{c, ms})
		}
		slices.SortFunc(times, func(a, b timed) int { return cmp.Compare(a.ms, b.ms) })
		// the fastest candidate that matches the one-step reference
		chosen := -1
		var wrong []string
		for k, tm := range times {
			if err := tm.c.use(); err != nil {
				t.Fatal(err)
			}
			if err := tm.c.run(); err != nil {
				t.Fatal(err)
			}
			if err := g.d.StreamSynchronize(bb.s); err != nil {
				t.Fatal(err)
			}
			host[i+1] = bb.download(out, sizes[i+1])
			bad, msgs := hb.check(i, v, q, impl, host, wbytes)
			if bad > 0 {
				wrong = append(wrong, fmt.Sprintf("%s: %d of %d differ (%s)", tm.c.name, bad, len(hb.checkAt[i]), strings.Join(msgs, "; ")))
				continue
			}
			chosen = k
			break
		}
		var all []string
		for _, tm := range times {
			all = append(all, fmt.Sprintf("%s %.3f", tm.c.name, tm.ms))
		}
		t.Logf("%s %s layer %d: %s", s, v.name, i+1, strings.Join(all, ", "))
		if len(wrong) > 0 {
			mismatches = append(mismatches, fmt.Sprintf("layer %d: %d candidates", i+1, len(wrong)))
			t.Errorf("%s %s layer %d: candidates that differ from the one-step reference: %s", s, v.name, i+1, strings.Join(wrong, "; "))
		}
		if chosen < 0 {
			return fmt.Sprintf("layer %d: no candidate matched | | | | | | |", i+1), 0
		}
		c := times[chosen].c
		if err := c.use(); err != nil {
			t.Fatal(err)
		}
		runs[i] = c.run
		ms, err := bb.median50(c.run)
		if err != nil {
			t.Fatal(err)
		}
		cells[i] = fmt.Sprintf("%.3f (%s)", ms, c.name)
		layerMS[i] = ms
	}
	blockMS, err := bb.median50(func() error {
		for _, r := range runs {
			if err := r(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.d.StreamSynchronize(bb.s); err != nil {
		t.Fatal(err)
	}
	// the block's output against the FP32 block
	y := bb.download(bufs[3], sizes[3])
	cos := hb.cosine(y, v.t, sc[3])
	if cos < 0.99 {
		t.Errorf("%s %s: cosine %.6f against the FP32 block", s, v.name, cos)
	}
	sum := layerMS[0] + layerMS[1] + layerMS[2]
	mis := "0"
	if len(mismatches) > 0 {
		mis = strings.Join(mismatches, ", ")
	}
	t.Logf("%s %s: block %.3f ms, layers %.3f + %.3f + %.3f, cosine %.6f (%v)", s, v.name, blockMS, layerMS[0], layerMS[1], layerMS[2], cos,
		time.Since(began).Round(time.Millisecond))
	return fmt.Sprintf("%s | %s | %s | %.3f | **%.3f** | {ratio} | %s | %.6f", cells[0], cells[1], cells[2], sum, blockMS, mis, cos), blockMS
}

// check compares layer i's output codes (host[i+1], downloaded) with the
// float64 reference of the same quantized math computed from its input as
// the GPU holds it (host[i]) and, for the last layer, the residual
// (host[0]), at the layer's sampled outputs; it returns how many differ
// and the first few.
func (hb *blockHost) check(i int, v blockVariant, q layerQuant, impl string, host [4][]byte, w []byte) (int, []string) {
	l := hb.layers[i]
	bad := 0
	var msgs []string
	tol := hb.amax[i+1] * 2e-3
	for _, at := range hb.checkAt[i] {
		pix, m := at[0], at[1]
		want := hb.ref(i, v, q, impl, host, w, pix, m)
		got := quantVal(host[i+1], v.t, pix*l.m+m)
		if !close8(v.t, got, want, tol) {
			if bad < 3 {
				msgs = append(msgs, fmt.Sprintf("[pixel %d, channel %d] = %g, want %g", pix, m, got, want))
			}
			bad++
		}
	}
	return bad, msgs
}

// ref returns the float64 reference of layer i's output (pixel pix,
// channel m) before its rounding: in codes for 8-bit types, in values for
// half, from the input host[i] and residual host[0] (in v's type) and the
// weights w (codes, or half values).
func (hb *blockHost) ref(i int, v blockVariant, q layerQuant, impl string, host [4][]byte, w []byte, pix, m int) float64 {
	s, l := hb.s, hb.layers[i]
	hw := s.h * s.h
	n, ii, jj := pix/hw, pix%hw/s.h, pix%s.h
	acc := 0.0
	pad := l.kh / 2
	for kh := range l.kh {
		for kw := range l.kh {
			ih, iw := ii+kh-pad, jj+kw-pad
			if ih < 0 || iw < 0 || ih >= s.h || iw >= s.h {
				continue
			}
			xo := (n*hw + ih*s.h + iw) * l.c
			wo := ((m*l.kh+kh)*l.kh + kw) * l.c
			for c := range l.c {
				acc += quantVal(host[i], v.t, xo+c) * quantVal(w, v.t, wo+c)
			}
		}
	}
	z := 0.0
	if l.residual {
		z = quantVal(host[0], v.t, pix*s.c+m)
	}
	if v.t != DataHalf {
		return q.refOut(impl, m, acc, z, l.residual)
	}
	want := acc + float64(l.b[m])
	if l.residual {
		want += z
	}
	return max(want, 0)
}

// scales returns the per-tensor scales of x, t1, t2 and y in type t
// (max |value| over the calibration pixels / the type's largest code).
func (hb *blockHost) scales(t GraphDataType) [4]float64 {
	var sc [4]float64
	for i := range sc {
		sc[i] = hb.amax[i] / qmax(t)
	}
	return sc
}

// encodeX returns the block's whole input in type t (half, or codes of
// scale sx), the period repeated.
func (hb *blockHost) encodeX(t GraphDataType, sx float64) []byte {
	s, size := hb.s, t.Size()
	per := make([]byte, len(hb.xf)*size)
	for i, f := range hb.xf {
		if t == DataHalf {
			copy(per[2*i:], f16bytes([]float32{f}))
		} else {
			per[i] = encode8(t, float64(f), sx)
		}
	}
	xb := make([]byte, s.n*s.h*s.h*s.c*size)
	for i := 0; i < len(xb); i += len(per) {
		copy(xb[i:], per)
	}
	return xb
}

// quant quantizes layer i for v with the scales sc (the residual's scale
// that of x).
func (hb *blockHost) quant(i int, v blockVariant, sc [4]float64) layerQuant {
	l := hb.layers[i]
	sZ := 0.0
	if l.residual {
		sZ = sc[0]
	}
	return quantizeLayer(l, v.t, sc[i], sc[i+1], sZ, v.impl[i] == implLtFP8 || v.impl[i] == implLtInt8Host)
}

// cosine returns the cosine between the block's output y (type t, scale
// sy) and the FP32 block at the reference pixels.
func (hb *blockHost) cosine(y []byte, t GraphDataType, sy float64) float64 {
	var dot, ng, nw float64
	for k, pix := range hb.refPix {
		for m := range hb.s.c {
			got := quantVal(y, t, pix*hb.s.c+m)
			if t != DataHalf {
				got *= sy
			}
			want := hb.refY[k][m]
			dot += got * want
			ng += got * got
			nw += want * want
		}
	}
	return dot / math.Sqrt(ng*nw)
}
