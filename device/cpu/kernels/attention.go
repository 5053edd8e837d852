package kernels

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// kiln's fused attention (ops/nn/attention.go and fused.go define the ops,
// their inference and reference kernels): kiln::MultiHeadAttention over a
// packed [B, S, 3*H*D] projection, and kiln::Attention of plain
// [B, H, ., .] heads (K already transposed, a mask that does not enlarge
// the scores), both by attnJob: per (batch, head) and block of query rows,
// the scores of one block in a cache-sized tile, two GEMMs and the masked
// softmax between them, work items taken by the cores from a counter.
// kiln::Attention of other shapes is the reference's (a GEMM, the softmax
// rows, a GEMM).
var attentionKernels = []Def{
	{Name: "cpu.MultiHeadAttention", Domain: "kiln", Type: "MultiHeadAttention", Types: []tensor.DType{tensor.Float32},
		Prepare: prepareMHA},
	{Name: "cpu.Attention", Domain: "kiln", Type: "Attention", Types: []tensor.DType{tensor.Float32},
		Prepare: prepareAttention},
}

func prepareMHA(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseMultiHeadAttentionAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	return &mhaKernel{Kernel: ref, heads: int(a.NumHeads), scale: a.Scale, scaleSet: a.ScaleSet}, nil
}

// mhaKernel is the fast Run of kiln::MultiHeadAttention; Infer, and inputs
// it does not take (the errors), are the reference's.
type mhaKernel struct {
	ops.Kernel
	heads    int
	scale    float32
	scaleSet bool // the node gives scale (else 1/sqrt(D))
}

func (k *mhaKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) < 1 || in[0] == nil {
		return k.Kernel.Run(env, in)
	}
	x := in[0]
	var mask *tensor.Tensor
	if len(in) > 1 {
		mask = in[1]
	}
	if x.DType != tensor.Float32 || (mask != nil && mask.DType != tensor.Float32) || x.Rank() != 3 {
		return k.Kernel.Run(env, in)
	}
	b, s, c := x.Shape[0], x.Shape[1], x.Shape[2]
	h := k.heads
	if c == 0 || c%(3*h) != 0 {
		return k.Kernel.Run(env, in)
	}
	full := [4]int{b, h, s, s}
	if mask != nil && !ops.BroadcastsTo(mask.Shape, full[:]) {
		return k.Kernel.Run(env, in)
	}
	hd := c / 3
	d := hd / h
	a := newAttnJob()
	defer a.free()
	a.b, a.h, a.sq, a.sk, a.d, a.dv, a.scale = b, h, s, s, d, d, k.scale
	if !k.scaleSet {
		a.scale = float32(1 / math.Sqrt(float64(d)))
	}
	if mask != nil {
		if mv := mask.Float32s(); !allZero(mv) {
			// (a mask of zeros, every key attended, as BERT's additive
			// mask is without padding, adds nothing: the softmax then
			// scales inside its exponential pass instead of a pass of
			// its own)
			ops.BroadcastStridesInto(a.mstrBuf[:], mask.Shape, full[:])
			a.mask, a.mstr = mv, a.mstrBuf[:]
		}
	}
	y, err := ops.NewOutput(env, tensor.Float32, []int{b, s, hd})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	xv := x.Float32s()
	a.q = attnView{data: xv, ld: c, bStride: s * c, hStride: d}
	a.k = attnView{data: xv[hd:], ld: c, bStride: s * c, hStride: d}
	a.v = attnView{data: xv[2*hd:], ld: c, bStride: s * c, hStride: d}
	a.y = attnView{data: y.Float32s(), ld: hd, bStride: s * hd, hStride: d}
	a.run()
	return env.One(y), nil
}

func prepareAttention(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFusedAttentionAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	return &attentionKernel{Kernel: ref, scale: a.Scale}, nil
}

// attentionKernel is the fast Run of kiln::Attention of plain [B, H, ., .]
// heads; other shapes, and Infer, are the reference's.
type attentionKernel struct {
	ops.Kernel
	scale float32
}

func (k *attentionKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) < 3 || in[0] == nil || in[1] == nil || in[2] == nil {
		return k.Kernel.Run(env, in)
	}
	q, kt, v := in[0], in[1], in[2]
	var mask *tensor.Tensor
	if len(in) > 3 {
		mask = in[3]
	}
	for _, t := range []*tensor.Tensor{q, kt, v, mask} {
		if t != nil && t.DType != tensor.Float32 {
			return k.Kernel.Run(env, in)
		}
	}
	// Q [B,H,S,D], K [B,H,D,T], V [B,H,T,E], no batch broadcasting, D > 0,
	// and a mask, if any, that does not enlarge the scores [B,H,S,T]
	if q.Rank() != 4 || kt.Rank() != 4 || v.Rank() != 4 {
		return k.Kernel.Run(env, in)
	}
	b, h, s, d := q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3]
	t, e := kt.Shape[3], v.Shape[3]
	scores := []int{b, h, s, t}
	if d == 0 || !slices.Equal(kt.Shape[:3], []int{b, h, d}) || !slices.Equal(v.Shape[:3], []int{b, h, t}) ||
		(mask != nil && !ops.BroadcastsTo(mask.Shape, scores)) {
		return k.Kernel.Run(env, in)
	}
	y, err := ops.NewOutput(env, tensor.Float32, []int{b, h, s, e})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	a := &attnJob{b: b, h: h, sq: s, sk: t, d: d, dv: e, scale: k.scale, kT: true,
		q: attnView{data: q.Float32s(), ld: d, bStride: h * s * d, hStride: s * d},
		k: attnView{data: kt.Float32s(), ld: t, bStride: h * d * t, hStride: d * t},
		v: attnView{data: v.Float32s(), ld: e, bStride: h * t * e, hStride: t * e},
		y: attnView{data: y.Float32s(), ld: e, bStride: h * s * e, hStride: s * e},
	}
	if mask != nil {
		a.mask, a.mstr = mask.Float32s(), ops.BroadcastStrides(mask.Shape, scores)
	}
	a.run() // per head and block of query rows
	return []*tensor.Tensor{y}, nil
}

// attnScratch holds the workers' scratch (a head's keys and values, one
// block's scores).
var attnScratch floatBufs

// allZero reports whether every element of v is zero (either sign).
func allZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

// attnView locates the [rows, D] matrix of one (batch, head) in a float32
// buffer: it starts at b*bStride + h*hStride and its rows are ld apart.
type attnView struct {
	data             []float32
	ld               int
	bStride, hStride int
}

// at returns the matrix of batch b and head h, from its first element on.
func (v attnView) at(b, h int) []float32 { return v.data[b*v.bStride+h*v.hStride:] }

// attnJob is one scaled dot-product attention over b x h heads: queries q
// [sq, d], keys k [sk, d] (or, when kT, already transposed: [d, sk]),
// values v [sk, dv], output y [sq, dv] per head, and an optional mask read
// through broadcast strides mstr over [b, h, sq, sk].
type attnJob struct {
	b, h, sq, sk, d int
	dv              int
	scale           float32
	q, k, v, y      attnView
	kT              bool
	mask            []float32
	mstr            []int

	// The run's state: mstrBuf holds mstr for a 4-D mask (newAttnJob's
	// jobs), next is the work counter, fn the range function handed to
	// the worker pool (made once per pooled job).
	mstrBuf           [4]int
	next              atomic.Int64
	items, nblk, rows int
	fn                func(lo, hi int)
}

// attnJobs recycles the jobs of kiln::MultiHeadAttention, so that a call
// allocates nothing.
var attnJobs = sync.Pool{New: func() any {
	a := &attnJob{}
	a.fn = a.work
	return a
}}

// newAttnJob returns a zeroed job from attnJobs; free returns it.
func newAttnJob() *attnJob {
	a := attnJobs.Get().(*attnJob)
	a.reset()
	return a
}

func (a *attnJob) free() {
	a.reset() // drop the tensors
	attnJobs.Put(a)
}

// reset zeroes a, keeping its range function.
func (a *attnJob) reset() {
	fn := a.fn
	a.b, a.h, a.sq, a.sk, a.d, a.dv, a.scale = 0, 0, 0, 0, 0, 0, 0
	a.q, a.k, a.v, a.y = attnView{}, attnView{}, attnView{}, attnView{}
	a.kT, a.mask, a.mstr, a.mstrBuf = false, nil, nil, [4]int{}
	a.next.Store(0)
	a.items, a.nblk, a.rows = 0, 0, 0
	a.fn = fn
}

// work runs hi-lo of run's goroutines' share: each takes items from the
// counter until none is left.
func (a *attnJob) work(lo, hi int) {
	for range hi - lo {
		a.worker(&a.next, a.items, a.nblk, a.rows)
	}
}

// attnTile is the most scores, in floats, a block of query rows keeps: 16
// KiB, half of a small L1 data cache.
const attnTile = 4096

// attnRowAlign is the row count blocks are rounded to: the AVX-512 GEMM
// kernel's 14-row register block, so that blocks have no ragged tile.
const attnRowAlign = 14

// blockRows returns the query rows of one block for sk keys.
func blockRows(sk int) int {
	r := attnTile / max(sk, 1) / attnRowAlign * attnRowAlign
	return max(r, attnRowAlign)
}

// run computes every head: work items of one block of query rows of one
// (batch, head), in that order, taken from a shared counter by up to
// cpu.Threads() goroutines (a goroutine that another process delays takes
// fewer). A goroutine transposes a head's keys (unless kT) when its item
// is the first of that head it takes, then computes the block's scores with
// one GEMM, the masked softmax in place, and the output with a second GEMM,
// scaling its rows by the softmax denominators at the end. The
// goroutine's scratch (the head's keys and values, one block's scores) is
// about 2*S*D + 28*S floats: 80 KiB at sequence 128 and head size 64.
func (a *attnJob) run() {
	if a.b == 0 || a.h == 0 || a.sq == 0 || a.dv == 0 {
		return
	}
	if a.sk == 0 { // softmax over nothing: the unfused graph gives NaN
		a.fill(float32(math.NaN()))
		return
	}
	a.rows = blockRows(a.sk)
	a.nblk = (a.sq + a.rows - 1) / a.rows
	a.items = a.b * a.h * a.nblk
	a.next.Store(0)
	if a.fn == nil { // a job not from attnJobs
		a.fn = a.work
	}
	cpu.ParallelFor(min(a.items, cpu.Threads()), 1, a.fn)
}

// worker computes items from the counter next until none is left.
func (a *attnJob) worker(next *atomic.Int64, items, nblk, rows int) {
	ktLen := 0
	if !a.kT {
		ktLen = a.d * a.sk
	}
	hd := a.dv * a.sk // the head's values, copied
	bp := attnScratch.get(ktLen + hd + rows*a.sk + rows)
	defer attnScratch.put(bp)
	buf := *bp
	kt, vc := buf[:ktLen], buf[ktLen:ktLen+hd]
	sc, inv := buf[ktLen+hd:ktLen+hd+rows*a.sk], buf[ktLen+hd+rows*a.sk:]
	have := -1 // the (batch, head) pair whose keys and values kt and vc hold
	for {
		it := int(next.Add(1)) - 1
		if it >= items {
			return
		}
		pair, blk := it/nblk, it%nblk
		bi, hh := pair/a.h, pair%a.h
		ktm, ldk := kt, a.sk
		if a.kT {
			ktm, ldk = a.k.at(bi, hh), a.k.ld
		}
		if pair != have {
			// The keys transposed and the values contiguous: both are
			// then read in place by the GEMM (a B matrix with rows far
			// apart would be packed again for every block).
			if !a.kT {
				transposeRows(kt, a.k.at(bi, hh), a.k.ld, a.sk, a.d)
			}
			v := a.v.at(bi, hh)
			for j := range a.sk {
				copy(vc[j*a.dv:(j+1)*a.dv], v[j*a.v.ld:])
			}
			have = pair
		}
		i0 := blk * rows
		r := min(rows, a.sq-i0)
		q := a.q.at(bi, hh)[i0*a.q.ld:]
		cpu.SgemmSerial(cpu.Blocking{}, r, a.sk, a.d, q, a.q.ld, ktm, ldk, sc, a.sk)
		a.softmax(sc[:r*a.sk], inv[:r], bi, hh, i0)
		y := a.y.at(bi, hh)[i0*a.y.ld:]
		cpu.SgemmSerial(cpu.Blocking{}, r, a.dv, a.sk, sc, a.sk, vc, a.dv, y, a.y.ld)
		for i := range r {
			row := y[i*a.y.ld : i*a.y.ld+a.dv]
			fastmath.ScaleAdd(row, row, inv[i], nil)
		}
	}
}

// transposeRows writes the [rows, d] matrix src (row stride ld) into dst as
// [d, rows], eight source rows at a time so that each write is a run of
// eight floats.
func transposeRows(dst, src []float32, ld, rows, d int) {
	j := 0
	for ; j+8 <= rows; j += 8 {
		r0, r1 := src[j*ld:j*ld+d], src[(j+1)*ld:(j+1)*ld+d]
		r2, r3 := src[(j+2)*ld:(j+2)*ld+d], src[(j+3)*ld:(j+3)*ld+d]
		r4, r5 := src[(j+4)*ld:(j+4)*ld+d], src[(j+5)*ld:(j+5)*ld+d]
		r6, r7 := src[(j+6)*ld:(j+6)*ld+d], src[(j+7)*ld:(j+7)*ld+d]
		for c := range d {
			o := dst[c*rows+j : c*rows+j+8 : c*rows+j+8]
			o[0], o[1], o[2], o[3] = r0[c], r1[c], r2[c], r3[c]
			o[4], o[5], o[6], o[7] = r4[c], r5[c], r6[c], r7[c]
		}
	}
	for ; j < rows; j++ {
		row := src[j*ld : j*ld+d]
		for c, v := range row {
			dst[c*rows+j] = v
		}
	}
}

// softmax replaces each row of the scores sc (rows of sk, for query rows i0
// on of head (b, h)) by the numerators exp(x*scale + mask - max) of its
// softmax and stores 1/denominator in inv.
func (a *attnJob) softmax(sc, inv []float32, b, h, i0 int) {
	n := a.sk
	for i := range inv {
		x := sc[i*n : (i+1)*n]
		var sum float64
		if a.mask != nil {
			ms := a.mstr
			base := b*ms[0] + h*ms[1] + (i0+i)*ms[2]
			if ms[3] == 1 {
				fastmath.ScaleAdd(x, x, a.scale, a.mask[base:base+n])
			} else {
				for j := range x {
					x[j] = x[j]*a.scale + a.mask[base+j*ms[3]]
				}
			}
			sum = fastmath.ExpShifted(x, x, 1, fastmath.Max(x))
		} else if a.scale >= 0 {
			// max(x*scale) is max(x)*scale for a scale of at least 0.
			sum = fastmath.ExpShifted(x, x, a.scale, fastmath.Max(x)*a.scale)
		} else {
			fastmath.ScaleAdd(x, x, a.scale, nil)
			sum = fastmath.ExpShifted(x, x, 1, fastmath.Max(x))
		}
		inv[i] = float32(1 / sum)
	}
}

// fill sets every output element to v.
func (a *attnJob) fill(v float32) {
	for bi := range a.b {
		for hi := range a.h {
			y := a.y.at(bi, hi)
			for i := range a.sq {
				row := y[i*a.y.ld : i*a.y.ld+a.dv]
				for j := range row {
					row[j] = v
				}
			}
		}
	}
}
