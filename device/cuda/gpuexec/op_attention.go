package gpuexec

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ops"
)

// attRows is ATT_ROWS of kernels/nn.cu: the query rows of one block of
// attention_rows.
const attRows = 16

// maxAttentionKeys bounds the keys of one attention row (they are held in
// 48 KB of shared memory).
const maxAttentionKeys = 11 * 1024

func (c *compiler) attention(s *step) error {
	n := s.node
	if c.mmaOK(n) {
		return c.attentionMMA(s)
	}
	if err := float32In(n, 0, 1, 2, 3); err != nil {
		return err
	}
	scale := ops.AttrsOf(n).Float("scale", 1)
	var d [3][]int
	var r [3]ref
	for i := range d {
		var err error
		if d[i], err = c.dims(n.Inputs[i]); err != nil {
			return err
		}
		if len(d[i]) < 2 {
			return fmt.Errorf("%w: Attention input %d of shape %v", ErrUnsupported, i, d[i])
		}
		if r[i], err = c.ref(n.Inputs[i]); err != nil {
			return err
		}
	}
	rk := len(d[0])
	batch := d[0][:rk-2]
	S, D := d[0][rk-2], d[0][rk-1]
	if len(d[1]) != rk || len(d[2]) != rk || !sameDims(d[1][:rk-2], batch) || !sameDims(d[2][:rk-2], batch) || d[1][rk-2] != D || d[2][rk-2] != d[1][rk-1] {
		return fmt.Errorf("%w: Attention of q %v, k %v, v %v (batch dims must be equal)", ErrUnsupported, d[0], d[1], d[2])
	}
	T, Dv := d[1][rk-1], d[2][rk-1]
	if T > maxAttentionKeys {
		return fmt.Errorf("%w: Attention over %d keys (at most %d)", ErrUnsupported, T, maxAttentionKeys)
	}
	B := prod(batch)
	if B > 65535 || S > math.MaxInt32 {
		return fmt.Errorf("%w: Attention batch %d", ErrUnsupported, B)
	}
	var mr *ref
	meta := []int64{int64(len(batch)), 0, 0}
	if m := input(n, 3); m != nil {
		md, err := c.dims(m)
		if err != nil {
			return err
		}
		scores := append(append([]int{}, batch...), S, T)
		if len(md) > len(scores) {
			return fmt.Errorf("%w: Attention mask %v for scores %v", ErrUnsupported, md, scores)
		}
		for i := range md {
			if x, y := md[len(md)-1-i], scores[len(scores)-1-i]; x != 1 && x != y {
				return fmt.Errorf("%w: Attention mask %v enlarges the scores %v", ErrUnsupported, md, scores)
			}
		}
		st := ops.BroadcastStrides(md, scores)
		meta[1], meta[2] = int64(st[len(st)-2]), int64(st[len(st)-1])
		for _, v := range batch {
			meta = append(meta, int64(v))
		}
		for _, v := range st[:len(batch)] {
			meta = append(meta, int64(v))
		}
		rr, err := c.ref(m)
		if err != nil {
			return err
		}
		mr = &rr
	}
	yr, _, err := c.out(n, 0)
	if err != nil {
		return err
	}
	args := []arg{pArg(yr), pArg(r[0]), pArg(r[1]), pArg(r[2]), optArg(mr), pArg(c.meta(meta)),
		iArg(S), iArg(T), iArg(D), iArg(Dv), fArg(scale)}
	if rowsShmem := 4 * attRows * (D + T); rowsShmem <= 47*1024 && S > 1 {
		// attRows query rows per block: K and V read once per block
		s.launches = []launch{{kernel: c.fk("attention_rows"), grid: cuda.Dim3{X: uint32((S + attRows - 1) / attRows), Y: uint32(B), Z: 1},
			block: cuda.Dim3{X: 128, Y: 1, Z: 1}, shmem: uint32(rowsShmem), args: args}}
		return nil
	}
	s.launches = []launch{{kernel: c.fk("attention"), grid: cuda.Dim3{X: uint32(S), Y: uint32(B), Z: 1}, block: cuda.Dim3{X: 128, Y: 1, Z: 1},
		shmem: uint32(4 * T), args: args}}
	return nil
}

// attentionKernels are kiln's fused attention.
var attentionKernels = []kernelDef{
	{domain: "kiln", op: "Attention", inputs: 3, emit: (*compiler).attention},
}
