package gpuexec

import (
	"fmt"
	"math"
	"os"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ops"
)

// attRows is ATT_ROWS of kernels/nn.cu: the query rows of one block of
// attention_rows.
const attRows = 16

// attentionFA makes half-precision attention on tensor cores run
// attention_fa (kernels/nn_attention.cu: ldmatrix operands, the mask staged
// per block, 1 to 4 warps a block) instead of attention_mma (nn.cu). Tests
// turn it off to compare the two.
var attentionFA = true

// attentionKeys128 makes attention_mma_fa stage 128 keys at once for head
// sizes up to 64 (attention_mma_fa128: one wait for BERT's 128 keys where
// attention_mma_fa waits twice). Measured at c8c50c6 (NOTES.md, BERT-base
// FP16, seq 128): 0.545 against 0.556 ms at batch 1, 1.706 against 1.710
// at batch 32, outputs within the FP16 rule; tests turn it off to compare.
// Used from 128 query rows on (self-attention: as many keys), where the
// wait it saves is for a full chunk of 64 keys.
var attentionKeys128 = true

// attentionQStaged makes half attention with heads of 32 or 64 from 128
// query rows on run attention_mma_fq (kernels/nn_attention.cu) instead of
// attention_mma_fa128: Q copied into shared memory with 16-byte cp.async
// together with K and read by ldmatrix (attention_mma_fa loads it as 32
// scalar 2-byte loads a thread for heads of 64), V waited for only before
// the first P*V product, the output stored 16 bytes at a time through
// shared memory, at most 128 registers (four blocks an SM). Off: on an H100
// (device/cuda/NOTES.md, 2026-12-06) its outputs equal attention_mma_fa's
// bit for bit, but BERT-base took 1.643 against 1.642 ms at batch 32 and
// 0.493 against 0.477 at batch 1. $KILN_ATTENTION_FQ=1 or =0 sets it for
// a process.
var attentionQStaged = envSwitch("KILN_ATTENTION_FQ", false)

// attentionWide makes half attention with heads of 32 or 64, from 128
// query rows on and where there are at least fwMinBlocks blocks of 128
// rows, run attention_mma_fw: 32 query rows a warp (two m16 tiles sharing
// each K and V fragment), 128 a block (at sequence 128 one block a head:
// K and V staged once a head, not once per 64 rows), keys in pieces of 32,
// 3 blocks an SM (BERT-base's 384 heads at batch 32 in one wave of 132
// SMs). On an H100 (device/cuda/NOTES.md, 2026-12-06) BERT-base FP16 at
// batch 32 took 1.558 ms with it, 1.642 without (attention 0.315 -> 0.249
// ms in the eager profile), its outputs within 0.001 of attention_mma_fa's
// and at cosine 0.9999986 with the CPU's. $KILN_ATTENTION_FW=0 (or =1)
// sets it for a process. Where it applies it takes precedence over
// attentionQStaged.
var attentionWide = envSwitch("KILN_ATTENTION_FW", true)

// fwPipelined makes attention_mma_fw's launches run attention_mma_fw2, the
// same kernel with K and V each copied in two commit groups of 64 keys (a
// block computes on the first half while the second arrives). Opt-in
// until a GPU run times it ($KILN_ATTENTION_FW2=1).
var fwPipelined = envSwitch("KILN_ATTENTION_FW2", false)

// fwMinBlocks is the fewest blocks of 128 query rows (batch x heads x
// ceil(S/128)) for attention_mma_fw: below, attention_mma_fq or _fa,
// whose smaller blocks spread a small batch over more multiprocessors
// (two per SM of an H100 here).
var fwMinBlocks int64 = 264

// envSwitch is def unless the variable name is "1" (true) or "0" (false).
func envSwitch(name string, def bool) bool {
	switch os.Getenv(name) {
	case "1":
		return true
	case "0":
		return false
	}
	return def
}

// faFill is the number of blocks below which attention_fa uses fewer warps
// (query rows) per block, so that a small batch still spreads over the
// GPU's multiprocessors (132 on an H100: two blocks each). Tests change it
// to time other splits (BERT-base at batch 1: 48 blocks of two warps by
// default, 0.488 against 0.503 ms for 96 blocks of one warp with
// faFill = 264 on an H100, device/cuda/NOTES.md).
var faFill int64 = 48

// mmaLaunch is the launch of the tensor-core attention for head size D, S
// query rows and B (batch x heads) matrices; args as attention_mma_t takes
// them.
func mmaLaunch(D, S int, B int64, args []arg) launch {
	if !attentionFA {
		return launch{kernel: fmt.Sprintf("attention_mma_d%d_f16", D), grid: cuda.Dim3{X: uint32((S + 63) / 64), Y: uint32(B), Z: 1},
			block: cuda.Dim3{X: 128, Y: 1, Z: 1}, args: args}
	}
	if rows := int64((S + 127) / 128); attentionWide && (D == 32 || D == 64) && S >= 128 && B*rows >= fwMinBlocks {
		name := "attention_mma_fw_d%d_f16"
		if fwPipelined {
			name = "attention_mma_fw2_d%d_f16"
		}
		return launch{kernel: fmt.Sprintf(name, D), grid: cuda.Dim3{X: uint32(rows), Y: uint32(B), Z: 1},
			block: cuda.Dim3{X: 128, Y: 1, Z: 1}, args: args}
	}
	warps := 4
	for warps > 1 && B*int64((S+16*warps-1)/(16*warps)) < faFill {
		warps /= 2
	}
	rows := 16 * warps
	name := "attention_mma_fa_d%d_f16"
	switch {
	case attentionQStaged && (D == 32 || D == 64) && S >= 2*64:
		name = "attention_mma_fq_d%d_f16"
	case attentionKeys128 && D <= 64 && S >= 2*64:
		name = "attention_mma_fa128_d%d_f16"
	}
	return launch{kernel: fmt.Sprintf(name, D), grid: cuda.Dim3{X: uint32((S + rows - 1) / rows), Y: uint32(B), Z: 1},
		block: cuda.Dim3{X: uint32(32 * warps), Y: 1, Z: 1}, args: args}
}

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
	a, err := ops.ParseFusedAttentionAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	scale := a.Scale
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
