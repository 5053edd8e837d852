package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resnet50Convs are the 53 convolutions of ResNet-50 (torchvision, stride
// on the 3x3) at 224x224: input channels and size, output channels,
// kernel, stride, padding, and how many layers have that shape.
var resnet50Convs = []struct{ c, h, m, k, s, p, count int }{
	{3, 224, 64, 7, 2, 3, 1},
	{64, 56, 64, 1, 1, 0, 1}, {256, 56, 64, 1, 1, 0, 2}, {64, 56, 64, 3, 1, 1, 3}, {64, 56, 256, 1, 1, 0, 4},
	{256, 56, 128, 1, 1, 0, 1}, {128, 56, 128, 3, 2, 1, 1}, {256, 56, 512, 1, 2, 0, 1},
	{512, 28, 128, 1, 1, 0, 3}, {128, 28, 128, 3, 1, 1, 3}, {128, 28, 512, 1, 1, 0, 4},
	{512, 28, 256, 1, 1, 0, 1}, {256, 28, 256, 3, 2, 1, 1}, {512, 28, 1024, 1, 2, 0, 1},
	{1024, 14, 256, 1, 1, 0, 5}, {256, 14, 256, 3, 1, 1, 5}, {256, 14, 1024, 1, 1, 0, 6},
	{1024, 14, 512, 1, 1, 0, 1}, {512, 14, 512, 3, 2, 1, 1}, {1024, 14, 2048, 1, 2, 0, 1},
	{2048, 7, 512, 1, 1, 0, 2}, {512, 7, 512, 3, 1, 1, 2}, {512, 7, 2048, 1, 1, 0, 3},
}

// TestConvLayoutsOnGPU measures what the layout of half-precision
// convolutions costs on the GPU, the question behind issue 11: each of
// ResNet-50's convolution shapes at batch KILN_LAYOUT_BATCH (default
// 256) planned by cuDNN in NCHW (kiln's layout today), in NHWC, and in NHWC
// with the bias and ReLU fused into the call; every candidate algorithm
// within a 1 GiB workspace is timed (CUDA events, 10 runs after 2) and the
// fastest kept. It logs a table and the sum over the 53 layers, and first
// checks on a small convolution that the three give the same result as a
// float64 reference on the host. Then the same shapes in NHWC half as cuDNN
// graphs (NewGraphConv): "graph plain", and "graph fused" with bias and
// ReLU, and the residual add on the expanding 1x1 layers that end a
// bottleneck block; every candidate engine configuration is timed the same
// way and the fastest's ID logged, with a line per graph as it is done
// (KILN_GRAPH_COLUMNS=0 leaves these out, KILN_LAYOUT_LEGACY=0 the legacy
// ones; KILN_GRAPH_MAX_CANDIDATES, KILN_GRAPH_MAX_COMPILED and
// KILN_GRAPH_BUDGET_S bound the search). Without a GPU it skips.
func TestConvLayoutsOnGPU(t *testing.T) {
	g := openGPU(t)
	d, err := OpenCUDNN(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Destroy(h)
	s, err := g.d.StreamCreate(1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.StreamDestroy(s)
	if err := d.SetStream(h, s); err != nil {
		t.Fatal(err)
	}
	checkLayouts(t, g, d, h)
	if t.Failed() {
		return
	}
	batch := 256
	if v, err := strconv.Atoi(os.Getenv("KILN_LAYOUT_BATCH")); err == nil && v > 0 {
		batch = v
	}
	const maxWS = 1 << 30
	ws, err := g.d.MemAlloc(maxWS)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.MemFree(ws)
	// one buffer of random halves, large enough for any tensor here
	maxElems := 0
	for _, l := range resnet50Convs {
		oh := (l.h+2*l.p-l.k)/l.s + 1
		maxElems = max(maxElems, batch*l.c*l.h*l.h, batch*l.m*oh*oh, l.m*l.c*l.k*l.k)
	}
	r := rand.New(rand.NewPCG(7, 8))
	block := f16bytes(randoms(r, 1<<19))
	host := make([]byte, 2*maxElems)
	for i := 0; i < len(host); i += len(block) {
		copy(host[i:], block)
	}
	bufs := make([]DevicePtr, 4) // x, w, y, z (bias reads w)
	for i := range bufs {
		bufs[i] = g.upload(t, host)
	}
	start, _ := g.d.EventCreate(0)
	end, _ := g.d.EventCreate(0)
	defer g.d.EventDestroy(start)
	defer g.d.EventDestroy(end)
	// time runs run 2 warm-ups and 10 timed calls of f, returning ms each
	time10 := func(f func() error) (float64, error) {
		for range 2 {
			if err := f(); err != nil {
				return 0, err
			}
		}
		if err := g.d.EventRecord(start, s); err != nil {
			return 0, err
		}
		for range 10 {
			if err := f(); err != nil {
				return 0, err
			}
		}
		if err := g.d.EventRecord(end, s); err != nil {
			return 0, err
		}
		if err := g.d.EventSynchronize(end); err != nil {
			return 0, err
		}
		ms, err := g.d.EventElapsed(start, end)
		return float64(ms) / 10, err
	}
	type best struct {
		ms   float64
		algo int
	}
	var lines []string
	totals := map[string]float64{}
	variants := []string{"nchw", "nhwc", "nhwc+bias+relu"}
	if os.Getenv("KILN_LAYOUT_LEGACY") == "0" {
		variants = nil
	}
	// the graph API's columns (KILN_GRAPH_COLUMNS=0 leaves them out): at
	// most KILN_GRAPH_MAX_CANDIDATES (default 16) engine configurations
	// per graph, of which KILN_GRAPH_MAX_COMPILED (default 6) compiled at
	// run time, and none once KILN_GRAPH_BUDGET_S (default 420) seconds
	// have gone to them
	graphs := os.Getenv("KILN_GRAPH_COLUMNS") != "0"
	maxCand, maxCompiled, budget := 16, 6, 420*time.Second
	if v, err := strconv.Atoi(os.Getenv("KILN_GRAPH_MAX_CANDIDATES")); err == nil && v >= 0 {
		maxCand = v
	}
	if v, err := strconv.Atoi(os.Getenv("KILN_GRAPH_MAX_COMPILED")); err == nil && v >= 0 {
		maxCompiled = v
	}
	if v, err := strconv.Atoi(os.Getenv("KILN_GRAPH_BUDGET_S")); err == nil && v > 0 {
		budget = time.Duration(v) * time.Second
	}
	type graphBest struct {
		ms         float64
		id         string
		candidates int
		build      time.Duration
	}
	var graphLines []string
	var graphTime time.Duration
	graphSkipped := 0
	for _, l := range resnet50Convs {
		oh := (l.h+2*l.p-l.k)/l.s + 1
		p := ConvParams{N: batch, C: l.c, H: l.h, W: l.h, M: l.m, KH: l.k, KW: l.k, PadH: l.p, PadW: l.p,
			StrideH: l.s, StrideW: l.s, DilH: 1, DilW: 1, Group: 1, Half: true}
		res := map[string]best{}
		gres := map[string]graphBest{}
		// the expanding 1x1 convolutions end a bottleneck block: their
		// output is added to the block's input before the ReLU
		residual := l.k == 1 && l.m == 4*l.c
		for _, v := range []string{"graph plain", "graph fused"} {
			if !graphs {
				break
			}
			if graphTime > budget {
				graphSkipped++
				continue
			}
			began := time.Now()
			pg := p
			pg.NHWC = true
			o := GraphConvOptions{MaxWorkspace: maxWS, MaxCandidates: maxCand, MaxRuntimeCompiled: maxCompiled}
			if v == "graph fused" {
				o.Bias, o.ReLU, o.Residual = true, true, residual
			}
			c, err := d.NewGraphConv(h, pg, oh, oh, o)
			if err != nil {
				t.Errorf("%v %s: %v", l, v, err)
				graphTime += time.Since(began)
				continue
			}
			b := graphBest{ms: math.Inf(1), candidates: len(c.Candidates)}
			var all []string
			for _, e := range c.Candidates {
				b.build += e.Build
				if err := c.Use(e.ID); err != nil {
					t.Fatal(err)
				}
				ms, err := time10(func() error { return c.Execute(h, bufs[0], bufs[1], bufs[1], bufs[3], bufs[2], ws) })
				if err != nil {
					t.Logf("%v %s %s: %v", l, v, e.ID, err)
					if e := g.d.Synchronize(); e != nil {
						t.Fatalf("the context is unusable after %v: %v", err, e)
					}
					continue
				}
				all = append(all, fmt.Sprintf("%s %.3f", e.ID, ms))
				if ms < b.ms {
					b.ms, b.id = ms, e.ID
				}
			}
			t.Logf("%dx%dx%d -> %d, %dx%d/%d, %s: %d candidates (%s), plans built in %v: %s", l.c, l.h, l.h, l.m, l.k, l.k, l.s, v,
				len(c.Candidates), c.Search, b.build.Round(time.Millisecond), strings.Join(all, ", "))
			c.Destroy()
			gres[v] = b
			totals[v] += b.ms * float64(l.count)
			graphTime += time.Since(began)
		}
		if graphs {
			fused := "bias+ReLU"
			if residual {
				fused = "bias+z+ReLU"
			}
			graphLines = append(graphLines, fmt.Sprintf("| %dx%dx%d -> %d, %dx%d/%d | %d | %.3f | %s | %d | %.3f | %s | %s | %d |",
				l.c, l.h, l.h, l.m, l.k, l.k, l.s, l.count, gres["graph plain"].ms, gres["graph plain"].id, gres["graph plain"].candidates,
				gres["graph fused"].ms, fused, gres["graph fused"].id, gres["graph fused"].candidates))
		}
		for _, v := range variants {
			p.NHWC = v != "nchw"
			var conv *CUDNNConv
			var fc *CUDNNFusedConv
			if v == "nhwc+bias+relu" {
				fc, err = d.NewFusedConv(h, p, oh, oh, maxWS, true, false)
				if fc != nil {
					conv = fc.CUDNNConv
				}
			} else {
				conv, err = d.NewConv(h, p, oh, oh, maxWS)
			}
			if err != nil {
				t.Errorf("%v %s: %v", l, v, err)
				continue
			}
			b := best{ms: math.Inf(1), algo: -1}
			for _, a := range conv.Candidates {
				if err := conv.Use(a); err != nil {
					t.Errorf("%v %s algo %d: %v", l, v, a.Algo, err)
					continue
				}
				ms, err := time10(func() error {
					if fc != nil {
						return fc.Forward(h, bufs[0], bufs[1], 0, bufs[1], bufs[2], ws, a.Workspace)
					}
					return conv.Forward(h, bufs[0], bufs[1], bufs[2], ws, a.Workspace)
				})
				if err != nil {
					t.Logf("%v %s algo %d (math %d): %v", l, v, a.Algo, a.Math, err)
					if e := g.d.Synchronize(); e != nil {
						t.Fatalf("the context is unusable after %v: %v", err, e)
					}
					continue
				}
				if ms < b.ms {
					b = best{ms, a.Algo}
				}
			}
			if fc != nil {
				fc.Destroy()
			} else {
				conv.Destroy()
			}
			res[v] = b
			totals[v] += b.ms * float64(l.count)
		}
		lines = append(lines, fmt.Sprintf("| %dx%dx%d -> %d, %dx%d/%d | %d | %.3f (algo %d) | %.3f (algo %d) | %.3f (algo %d) |",
			l.c, l.h, l.h, l.m, l.k, l.k, l.s, l.count, res["nchw"].ms, res["nchw"].algo, res["nhwc"].ms, res["nhwc"].algo,
			res["nhwc+bias+relu"].ms, res["nhwc+bias+relu"].algo))
	}
	if len(variants) > 0 {
		t.Logf("ResNet-50 convolutions, half, batch %d, fastest cuDNN algorithm per layer (ms):\n| layer | count | NCHW | NHWC | NHWC + bias + ReLU fused |\n| --- | --- | --- | --- | --- |\n%s\n| all 53 layers | | %.2f | %.2f | %.2f |",
			batch, strings.Join(lines, "\n"), totals["nchw"], totals["nhwc"], totals["nhwc+bias+relu"])
	}
	if graphs {
		note := ""
		if graphSkipped > 0 {
			note = fmt.Sprintf(" (%d graphs skipped over the %v budget: the totals are partial)", graphSkipped, budget)
		}
		t.Logf("ResNet-50 convolutions, half NHWC, batch %d, cuDNN graph API, fastest of at most %d engine configurations per graph (ms); %v building and timing graphs%s:\n| layer | count | graph plain | engine | candidates | graph fused | epilogue | engine | candidates |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n%s\n| all 53 layers | | %.2f | | | %.2f | | | |",
			batch, maxCand, graphTime.Round(time.Second), note, strings.Join(graphLines, "\n"), totals["graph plain"], totals["graph fused"])
	}
}

// checkLayouts runs one small half convolution in NCHW, NHWC and NHWC
// fused with bias, residual and ReLU, and compares each with a float64
// reference computed on the host from the same half-rounded inputs.
func checkLayouts(t *testing.T, g *gpu, d *CUDNN, h CUDNNHandle) {
	const n, c, hw, m, k = 2, 16, 9, 8, 3
	r := rand.New(rand.NewPCG(1, 2))
	half := func(v []float32) []float32 { return decode(f16bytes(v), true) }
	x := half(randoms(r, n*c*hw*hw)) // NCHW
	w := half(randoms(r, m*c*k*k))   // MCKK
	bias := half(randoms(r, m))
	z := half(randoms(r, n*m*hw*hw)) // NCHW
	ref := make([]float64, n*m*hw*hw)
	for b := range n {
		for o := range m {
			for y := range hw {
				for xx := range hw {
					var acc float64
					for ci := range c {
						for ky := range k {
							for kx := range k {
								iy, ix := y+ky-1, xx+kx-1
								if iy < 0 || ix < 0 || iy >= hw || ix >= hw {
									continue
								}
								acc += float64(x[((b*c+ci)*hw+iy)*hw+ix]) * float64(w[((o*c+ci)*k+ky)*k+kx])
							}
						}
					}
					ref[((b*m+o)*hw+y)*hw+xx] = acc
				}
			}
		}
	}
	// nhwc reorders an [A,B,H,W] tensor as [A,H,W,B].
	nhwc := func(v []float32, a, bb int) []float32 {
		out := make([]float32, len(v))
		for i := range a {
			for j := range bb {
				for p := range hw * hw {
					out[(i*hw*hw+p)*bb+j] = v[(i*bb+j)*hw*hw+p]
				}
			}
		}
		return out
	}
	wNHWC := make([]float32, len(w)) // [M,KH,KW,C]
	for o := range m {
		for ci := range c {
			for p := range k * k {
				wNHWC[(o*k*k+p)*c+ci] = w[(o*c+ci)*k*k+p]
			}
		}
	}
	p := ConvParams{N: n, C: c, H: hw, W: hw, M: m, KH: k, KW: k, PadH: 1, PadW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1, Half: true}
	for _, v := range []string{"nchw", "nhwc", "nhwc fused"} {
		p.NHWC = v != "nchw"
		xs, ws, zs := x, w, z
		if p.NHWC {
			xs, ws, zs = nhwc(x, n, c), wNHWC, nhwc(z, n, m)
		}
		dx, dw, dz, db := g.upload(t, f16bytes(xs)), g.upload(t, f16bytes(ws)), g.upload(t, f16bytes(zs)), g.upload(t, f16bytes(bias))
		dy := g.upload(t, make([]byte, 2*n*m*hw*hw))
		var err error
		if v == "nhwc fused" {
			var fc *CUDNNFusedConv
			if fc, err = d.NewFusedConv(h, p, hw, hw, 1<<26, true, true); err == nil {
				ws := g.upload(t, make([]byte, max(fc.Workspace, 1)))
				err = fc.Forward(h, dx, dw, dz, db, dy, ws, fc.Workspace)
				fc.Destroy()
			}
		} else {
			var conv *CUDNNConv
			if conv, err = d.NewConv(h, p, hw, hw, 1<<26); err == nil {
				ws := g.upload(t, make([]byte, max(conv.Workspace, 1)))
				err = conv.Forward(h, dx, dw, dy, ws, conv.Workspace)
				conv.Destroy()
			}
		}
		if err == nil {
			err = g.d.Synchronize()
		}
		if err != nil {
			t.Errorf("%s: %v", v, err)
			continue
		}
		out := make([]byte, 2*n*m*hw*hw)
		if err := g.d.MemcpyDtoH(out, dy); err != nil {
			t.Fatal(err)
		}
		got := decode(out, true)
		bad := 0
		for b := range n {
			for o := range m {
				for q := range hw * hw {
					want := ref[(b*m+o)*hw*hw+q]
					if v == "nhwc fused" {
						want = math.Max(0, want+float64(bias[o])+float64(z[(b*m+o)*hw*hw+q]))
					}
					at := (b*m+o)*hw*hw + q
					if p.NHWC {
						at = (b*hw*hw+q)*m + o
					}
					if diff := math.Abs(float64(got[at]) - want); diff > 0.05+0.01*math.Abs(want) {
						if bad < 3 {
							t.Errorf("%s: output n%d m%d pixel %d = %g, want %g", v, b, o, q, got[at], want)
						}
						bad++
					}
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d outputs differ", v, bad, len(got))
		} else {
			t.Logf("%s: matches the float64 reference (half tolerances)", v)
		}
	}
}

// graphRef computes y = act(conv(x, w) + bias + z) in float64 in p's
// layout (NHWC: x [N,H,W,C], w [M,KH,KW,C]; NCHW: x [N,C,H,W], w
// [M,C,KH,KW]; one group), z of y's layout.
func graphRef(p ConvParams, oh, ow int, x, w, bias, z []float32, o GraphConvOptions) []float64 {
	xAt := func(n, c, h, ww int) float64 {
		if p.NHWC {
			return float64(x[((n*p.H+h)*p.W+ww)*p.C+c])
		}
		return float64(x[((n*p.C+c)*p.H+h)*p.W+ww])
	}
	wAt := func(m, c, kh, kw int) float64 {
		if p.NHWC {
			return float64(w[((m*p.KH+kh)*p.KW+kw)*p.C+c])
		}
		return float64(w[((m*p.C+c)*p.KH+kh)*p.KW+kw])
	}
	yAt := func(n, m, h, ww int) int {
		if p.NHWC {
			return ((n*oh+h)*ow+ww)*p.M + m
		}
		return ((n*p.M+m)*oh+h)*ow + ww
	}
	y := make([]float64, p.N*p.M*oh*ow)
	for n := range p.N {
		for m := range p.M {
			for i := range oh {
				for j := range ow {
					var acc float64
					for kh := range p.KH {
						for kw := range p.KW {
							ih, iw := i*p.StrideH-p.PadH+kh*p.DilH, j*p.StrideW-p.PadW+kw*p.DilW
							if ih < 0 || iw < 0 || ih >= p.H || iw >= p.W {
								continue
							}
							for c := range p.C {
								acc += xAt(n, c, ih, iw) * wAt(m, c, kh, kw)
							}
						}
					}
					at := yAt(n, m, i, j)
					if o.Bias {
						acc += float64(bias[m])
					}
					if o.Residual {
						acc += float64(z[at])
					}
					if o.ReLU {
						acc = math.Max(acc, 0)
					}
					y[at] = acc
				}
			}
		}
	}
	return y
}

// TestGraphConvOnGPU checks cuDNN graph convolutions against a float64
// reference on small shapes (C and M multiples of 8; 1x1 and 3x3,
// strided, with and without bias, residual and ReLU; half NHWC, and plain
// float32 NCHW): every candidate the heuristics give within 256 MiB of
// workspace (the first KILN_GRAPH_MAX_CANDIDATES, default 12) runs and
// matches, and so does each one rebuilt from its ID. Without a GPU it
// skips.
func TestGraphConvOnGPU(t *testing.T) {
	g := openGPU(t)
	d, err := OpenCUDNN(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Destroy(h)
	t.Logf("cuDNN %d (%s)", d.Version(), d.Path())
	maxCand := 12 // KILN_GRAPH_MAX_CANDIDATES (0: all)
	if v, err := strconv.Atoi(os.Getenv("KILN_GRAPH_MAX_CANDIDATES")); err == nil && v >= 0 {
		maxCand = v
	}
	base := ConvParams{N: 2, C: 16, H: 9, W: 9, M: 32, KH: 3, KW: 3, PadH: 1, PadW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
		Group: 1, Half: true, NHWC: true}
	with := func(f func(p *ConvParams)) ConvParams { p := base; f(&p); return p }
	pointwise := func(p *ConvParams) { p.KH, p.KW, p.PadH, p.PadW = 1, 1, 0, 0 }
	for _, tt := range []struct {
		name string
		p    ConvParams
		o    GraphConvOptions
	}{
		{"3x3 plain", base, GraphConvOptions{}},
		{"3x3 bias relu", base, GraphConvOptions{Bias: true, ReLU: true}},
		{"3x3 bias residual relu", base, GraphConvOptions{Bias: true, Residual: true, ReLU: true}},
		{"3x3/2 bias residual relu", with(func(p *ConvParams) { p.StrideH, p.StrideW = 2, 2 }), GraphConvOptions{Bias: true, Residual: true, ReLU: true}},
		{"1x1 bias residual relu", with(func(p *ConvParams) { pointwise(p); p.C, p.M = 32, 64 }), GraphConvOptions{Bias: true, Residual: true, ReLU: true}},
		{"1x1/2 bias", with(func(p *ConvParams) { pointwise(p); p.StrideH, p.StrideW = 2, 2; p.M = 64 }), GraphConvOptions{Bias: true}},
		{"1x1 residual only", with(func(p *ConvParams) { pointwise(p); p.C, p.M = 24, 40 }), GraphConvOptions{Residual: true}},
		{"3x3 float32 nchw plain", with(func(p *ConvParams) { p.Half, p.NHWC = false, false }), GraphConvOptions{}},
		{"3x3 float32 nchw bias relu", with(func(p *ConvParams) { p.Half, p.NHWC = false, false }), GraphConvOptions{Bias: true, ReLU: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g.bind(t)
			p := tt.p
			oh := (p.H+2*p.PadH-p.KH)/p.StrideH + 1
			ow := (p.W+2*p.PadW-p.KW)/p.StrideW + 1
			o := tt.o
			o.MaxWorkspace, o.MaxCandidates = 256<<20, maxCand
			start := time.Now()
			c, err := d.NewGraphConv(h, p, oh, ow, o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Destroy()
			t.Logf("%d candidates in %v (%s)", len(c.Candidates), time.Since(start).Round(time.Millisecond), c.Search)
			r := rand.New(rand.NewPCG(3, uint64(len(tt.name))))
			small := func(n int) []float32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = r.Float32()*2 - 1
				}
				if p.Half {
					v = decode(f16bytes(v), true) // the values the GPU sees
				}
				return v
			}
			enc := func(v []float32) []byte {
				if p.Half {
					return f16bytes(v)
				}
				return f32bytes(v)
			}
			ny := p.N * p.M * oh * ow
			x, w, bias, z := small(p.N*p.C*p.H*p.W), small(p.M*p.C*p.KH*p.KW), small(p.M), small(ny)
			want := graphRef(p, oh, ow, x, w, bias, z, tt.o)
			dx, dw, db, dz := g.upload(t, enc(x)), g.upload(t, enc(w)), g.upload(t, enc(bias)), g.upload(t, enc(z))
			size := 4
			if p.Half {
				size = 2
			}
			dy := g.upload(t, make([]byte, size*ny))
			maxWS := 1
			for _, e := range c.Candidates {
				maxWS = max(maxWS, e.Workspace)
			}
			ws := g.upload(t, make([]byte, maxWS))
			zeros := make([]byte, size*ny)
			check := func(label string, run func() error) {
				t.Helper()
				if err := g.d.MemcpyHtoD(dy, zeros); err != nil {
					t.Fatal(err)
				}
				err := run()
				if err == nil {
					err = g.d.Synchronize()
				}
				if err != nil {
					t.Errorf("%s: %v", label, err)
					return
				}
				out := make([]byte, size*ny)
				if err := g.d.MemcpyDtoH(out, dy); err != nil {
					t.Fatal(err)
				}
				got := decode(out, p.Half)
				bad, worst := 0, 0.0
				for i, v := range want {
					diff := math.Abs(float64(got[i]) - v)
					tol := 0.02 + 0.01*math.Abs(v)
					if !p.Half {
						tol = 1e-3 + 1e-4*math.Abs(v) // Winograd and FFT engines round more than a direct sum
					}
					if diff > tol {
						if bad < 3 {
							t.Errorf("%s: output %d = %g, want %g", label, i, got[i], v)
						}
						bad++
					}
					worst = max(worst, diff)
				}
				if bad > 0 {
					t.Errorf("%s: %d of %d outputs differ (largest difference %.3g)", label, bad, ny, worst)
				}
			}
			for _, e := range c.Candidates {
				t.Logf("  %-24s heuristic %-8s workspace %9d tensor core %-5v runtime compiled %-5v plan built in %v",
					e.ID, e.Heuristic, e.Workspace, e.TensorCore, e.RuntimeCompiled, e.Build.Round(time.Microsecond))
				if err := c.Use(e.ID); err != nil {
					t.Fatal(err)
				}
				check(e.ID, func() error { return c.Execute(h, dx, dw, db, dz, dy, ws) })
				rc, err := d.NewGraphConvFromID(h, p, oh, ow, o, e.ID)
				if err != nil {
					t.Errorf("rebuilding %s from its ID: %v", e.ID, err)
					continue
				}
				got := rc.Engine()
				if got.ID != e.ID || got.Workspace != e.Workspace {
					t.Errorf("rebuilt %s: ID %s, workspace %d (was %d)", e.ID, got.ID, got.Workspace, e.Workspace)
				}
				if e.RuntimeCompiled {
					// does cuDNN keep the compiled kernel within the process?
					t.Logf("  %s rebuilt from its ID: plan built in %v (first build %v)", e.ID, got.Build.Round(time.Microsecond), e.Build.Round(time.Microsecond))
				}
				check(e.ID+" rebuilt", func() error { return rc.Execute(h, dx, dw, db, dz, dy, ws) })
				rc.Destroy()
			}
		})
	}
}

// TestGraphConvCaptureOnGPU checks that a graph convolution's Execute can
// be captured into a CUDA graph (as the executor runs a segment) and
// replayed: for each of the first 6 candidates of a fused convolution
// (bias, residual, ReLU), the replay's output matches the float64
// reference, and a capture that fails is reported with the engine's ID.
// Without a GPU it skips.
func TestGraphConvCaptureOnGPU(t *testing.T) {
	g := openGPU(t)
	d, err := OpenCUDNN(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Destroy(h)
	s, err := g.d.StreamCreate(1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.d.StreamDestroy(s)
	if err := d.SetStream(h, s); err != nil {
		t.Fatal(err)
	}
	p := ConvParams{N: 2, C: 16, H: 10, W: 10, M: 24, KH: 3, KW: 3, PadH: 1, PadW: 1, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1,
		Group: 1, Half: true, NHWC: true}
	o := GraphConvOptions{Bias: true, Residual: true, ReLU: true, MaxWorkspace: 256 << 20, MaxCandidates: 6}
	c, err := d.NewGraphConv(h, p, 10, 10, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	r := rand.New(rand.NewPCG(5, 6))
	small := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = r.Float32()*2 - 1
		}
		return decode(f16bytes(v), true)
	}
	ny := p.N * p.M * 10 * 10
	x, w, bias, z := small(p.N*p.C*p.H*p.W), small(p.M*p.C*9), small(p.M), small(ny)
	want := graphRef(p, 10, 10, x, w, bias, z, o)
	dx, dw, db, dz := g.upload(t, f16bytes(x)), g.upload(t, f16bytes(w)), g.upload(t, f16bytes(bias)), g.upload(t, f16bytes(z))
	dy := g.upload(t, make([]byte, 2*ny))
	maxWS := 1
	for _, e := range c.Candidates {
		maxWS = max(maxWS, e.Workspace)
	}
	ws := g.upload(t, make([]byte, maxWS))
	zeros := make([]byte, 2*ny)
	captured := 0
	for _, e := range c.Candidates {
		if err := c.Use(e.ID); err != nil {
			t.Fatal(err)
		}
		// one eager run first: the variant pack is built outside the capture
		if err := c.Execute(h, dx, dw, db, dz, dy, ws); err != nil {
			t.Errorf("%s: %v", e.ID, err)
			continue
		}
		if err := g.d.StreamSynchronize(s); err != nil {
			t.Fatal(err)
		}
		if err := g.d.MemcpyHtoD(dy, zeros); err != nil {
			t.Fatal(err)
		}
		if err := g.d.BeginCapture(s, CaptureModeThreadLocal); err != nil {
			t.Fatal(err)
		}
		runErr := c.Execute(h, dx, dw, db, dz, dy, ws)
		graph, err := g.d.EndCapture(s)
		if runErr != nil || err != nil {
			t.Logf("%s (runtime compiled %v): not capturable: execute %v, end capture %v", e.ID, e.RuntimeCompiled, runErr, err)
			if err == nil {
				g.d.GraphDestroy(graph)
			}
			continue
		}
		exec, err := g.d.GraphInstantiate(graph)
		if err != nil {
			g.d.GraphDestroy(graph)
			t.Errorf("%s: instantiating the captured graph: %v", e.ID, err)
			continue
		}
		for range 2 {
			err = g.d.GraphLaunch(exec, s)
		}
		if err == nil {
			err = g.d.StreamSynchronize(s)
		}
		g.d.GraphExecDestroy(exec)
		g.d.GraphDestroy(graph)
		if err != nil {
			t.Fatalf("%s: replaying the captured graph: %v", e.ID, err)
		}
		out := make([]byte, 2*ny)
		if err := g.d.MemcpyDtoH(out, dy); err != nil {
			t.Fatal(err)
		}
		got, bad := decode(out, true), 0
		for i, v := range want {
			if math.Abs(float64(got[i])-v) > 0.02+0.01*math.Abs(v) {
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d outputs of the replayed graph differ from the reference", e.ID, bad, ny)
			continue
		}
		captured++
		t.Logf("%s (runtime compiled %v): captured and replayed, matches", e.ID, e.RuntimeCompiled)
	}
	if captured == 0 {
		t.Errorf("none of %d candidates could be captured into a CUDA graph", len(c.Candidates))
	}
}
