package nn

import (
	"github.com/kilnai/kiln/device/cpu"
)

// BlockedConv's Winograd tactic: the blocked input reordered to NCHW
// (cpu.FromBlocked), FusedConv's Winograd convolution F(4x4, 3x3)
// (convWino: 36 multiplications for 16 outputs where the blocked direct
// kernel does 144), and its NCHW output reordered back (cpu.ToBlocked, pad
// lanes zero). The blocked direct kernel runs near the machine's peak on
// resnet50's 3x3 layers (184-201 GFLOP/cpu-s), so only fewer
// multiplications make them faster: with the two reorders inside the op,
// the layers stay blocked in the graph and the tactic timer chooses per
// layer (NOTES-blocked.md, "Winograd for blocked 3x3 layers").

// blockedWinoTactic names the tactic; blockedDirectTactic the blocked
// direct kernel (cpu.BlockedConv2D, the default).
const (
	blockedWinoTactic   = "winograd4x4-reorder"
	blockedDirectTactic = "blocked-direct"
)

// blockedWinoMaxFilter is the largest transformed filter (36 x C x M
// floats, 4x the weights) the tactic is offered with. At batch 1 a model
// reads every layer's weights from memory once a run; the tactic timer
// times a layer with its weights cold as well, so the cap only keeps the
// build from transforming (and holding) filters far too large to win:
// resnet50's 512-channel 3x3 layers at 7x7 (38 MB, four tiles a plane).
// Measured with cold weights (BenchmarkBlockedWinoAB): 0.84-0.93 of the
// direct kernel's time on resnet50's layers of 0.6, 2.4 and 9.4 MB.
const blockedWinoMaxFilter = 16 << 20

// blockedWinoOffered reports whether BlockedConv offers the Winograd
// tactic for p: a blocked input (not input_nchw), no residual, a 3x3
// stride-1 dense convolution convWino computes, and a transformed filter
// of at most blockedWinoMaxFilter bytes.
func blockedWinoOffered(p cpu.Conv2DParams, inNCHW, residual bool) bool {
	return !inNCHW && !residual && winoApplies(p) && int64(36)*int64(p.C)*int64(p.M)*4 <= blockedWinoMaxFilter
}

var (
	blockedWinoIn  directPool[float32] // the input, NCHW
	blockedWinoOut directPool[float32] // the output, NCHW
)

// blockedWino computes the blocked y = act(conv(x, w) + bias) of the
// blocked x with f, the transformed weights (p.Act: ActNone, ActRelu or
// ActClip).
func blockedWino(p cpu.Conv2DParams, f *winoFilter, x, bias, y []float32) {
	hw, ohw := p.H*p.W, p.OutH()*p.OutW()
	xs := blockedWinoIn.get(p.N * p.C * hw)
	ys := blockedWinoOut.get(p.N * p.M * ohw)
	cpu.FromBlocked(p.N, p.C, hw, x, *xs)
	convWino(p, *xs, f, bias, *ys, nil, nil)
	cpu.ToBlocked(p.N, p.M, ohw, *ys, y)
	blockedWinoIn.put(xs)
	blockedWinoOut.put(ys)
}
