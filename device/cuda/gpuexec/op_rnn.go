package gpuexec

import (
	"fmt"
	"math"
	"strings"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// rnnKernels are RNN, GRU and LSTM: forward, reverse and bidirectional,
// both layouts, sequence_lens, initial states, LSTM's peepholes and
// input_forget, GRU's linear_before_reset, clip, and every activation of
// ONNX's list (Relu, Tanh, Sigmoid, Softsign, Softplus, and, with their
// activation_alpha and activation_beta, Affine, LeakyRelu,
// ThresholdedRelu, ScaledTanh, HardSigmoid and Elu; those six are
// unchecked until a GPU run checks them: rnnParamActsUnchecked).
// kernels/op_rnn.cu: the input projections of all time steps in one
// launch (a tiled product: X [S*B, I] by each direction's W^T, the biases
// added), then one launch per step (GRU: two), the recurrent product of
// the states by R fused with the gates: a warp per direction, hidden unit
// and tile of 8 batch items, each row of R read once a tile (lane q
// computing item q's gates); the states and the gates in float32 in both
// precisions.
var rnnKernels = []kernelDef{
	{op: "RNN", inputs: 3, outputs: -1, noFirst: true, types: float32Only, f32: []int{1, 2, 3, 5}, check: rnnCheck, emit: (*compiler).rnn},
	{op: "GRU", inputs: 3, outputs: -1, noFirst: true, types: float32Only, f32: []int{1, 2, 3, 5}, check: rnnCheck, emit: (*compiler).rnn},
	{op: "LSTM", inputs: 3, outputs: -1, noFirst: true, types: float32Only, f32: []int{1, 2, 3, 5, 6, 7}, check: rnnCheck, emit: (*compiler).rnn},
}

// rnnActIDs are the activations the kernels compute (kiln_rnn_act).
// The last six take alpha and beta (rnnActParams).
var rnnActIDs = map[string]int64{"sigmoid": 0, "tanh": 1, "relu": 2, "softsign": 3, "softplus": 4,
	"affine": 5, "leakyrelu": 6, "thresholdedrelu": 7, "scaledtanh": 8, "hardsigmoid": 9, "elu": 10}

// rnnActParams are, for the activations that take them, whether they
// read alpha and beta and ONNX's defaults of each (as ops/nn's RNN).
var rnnActParams = map[string]struct {
	alpha, beta bool
	a, b        float32
}{
	"affine":          {true, true, 1, 0},
	"leakyrelu":       {true, false, 0.01, 0},
	"thresholdedrelu": {true, false, 1, 0},
	"scaledtanh":      {true, true, 1, 1},
	"hardsigmoid":     {true, true, 0.2, 0.5},
	"elu":             {true, false, 1, 0},
}

// rnnAttrs are a recurrent node's attributes, parsed once.
type rnnAttrs struct {
	gates, dirs, layout int
	hidden              int64
	reverse             bool
	clip                float32
	// acts is nine values per direction: the ids of its three activations
	// (rnnActIDs; unused ones tanh), then the float32 bits of their alphas
	// and of their betas (kiln_rnn_actk).
	acts             []int64
	paramActs        bool // some activation takes alpha or beta
	lbr, inputForget bool
}

func parseRNN(n *ir.Node, opset int64) (rnnAttrs, error) {
	a, err := ops.ParseRNNAttrs(n, opset) // the CPU's rules (ops/nn)
	if err != nil {
		return rnnAttrs{}, fmt.Errorf("%w: %v", ErrGraph, err)
	}
	r := rnnAttrs{dirs: a.Directions, hidden: a.HiddenSize, reverse: a.Reverse, layout: int(a.Layout), clip: a.Clip,
		lbr: a.LinearBeforeReset, inputForget: a.InputForget}
	def := ops.RNNActivations(n.OpType)
	r.gates = map[int]int{1: 1, 2: 3, 3: 4}[len(def)]
	names := a.Activations
	// alphas and betas go, in order, to the activations that take them
	// (the second direction's after the first's), ONNX's default when
	// they run out
	alphas, betas := a.ActivationAlpha, a.ActivationBeta
	for d := range r.dirs {
		var ids, al, be [3]int64
		for k := range 3 {
			id, pa, pb := int64(1), float32(0), float32(0)
			if k < len(def) {
				nm := strings.ToLower(names[d*len(def)+k])
				v, ok := rnnActIDs[nm]
				if !ok {
					return r, fmt.Errorf("%w: %s activation %s (CUDA kernels: Sigmoid, Tanh, Relu, Softsign, Softplus, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu)", ErrUnsupported, n.OpType, names[d*len(def)+k])
				}
				id = v
				if p, ok := rnnActParams[nm]; ok {
					r.paramActs = true
					pa, pb = p.a, p.b
					if p.alpha && len(alphas) > 0 {
						pa, alphas = alphas[0], alphas[1:]
					}
					if p.beta && len(betas) > 0 {
						pb, betas = betas[0], betas[1:]
					}
				}
			}
			ids[k], al[k], be[k] = id, int64(math.Float32bits(pa)), int64(math.Float32bits(pb))
		}
		r.acts = append(append(append(r.acts, ids[:]...), al[:]...), be[:]...)
	}
	return r, nil
}

// rnnParamActsUnchecked marks the activations with alpha and beta
// (Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu) as
// not yet run on a GPU against the CPU engine: partitioning leaves such
// nodes to the CPU unless KILN_CUDA_UNVERIFIED=1 (verified.go). Clear it
// once TestRNNOnGPU has passed on a GPU.
var rnnParamActsUnchecked = false // TestRNNOnGPU passed on an H100 (2026-12-06, commit b8e0960)

// rnnTiledProj makes the input projections the tiled product
// (rnn_proj_tiled) rather than a warp per element (rnn_proj); tests turn
// it off to time and check the two against each other.
var rnnTiledProj = true

// rnnBatchTile makes the steps the batch-tiled kernels (rnn_step_bt,
// gru_gates_bt, gru_step_bt: a warp per direction, hidden unit and 8
// batch items, each row of R read once for the 8) rather than a warp per
// direction, batch item and unit, from rnnBatchTileFrom batch items; tests
// turn it off to time and check the two against each other.
var rnnBatchTile = true

// rnnBatchTileFrom is the smallest batch that takes the batch-tiled step
// kernels: on an H100 (one run, CRNN-sized BiLSTM) they were slower than
// the plain ones at batch 1 and 8 (0.44 vs 0.30-0.34 ms at 1) and faster at
// 32 (1.8-2.2 vs 2.9 ms).
const rnnBatchTileFrom = 16

func rnnCheck(n *ir.Node) error {
	// the opset decides only layout, which emit reads again
	r, err := parseRNN(n, 14)
	if err != nil {
		return err
	}
	if r.paramActs {
		if err := verifiedOnGPU(n, kernelDef{unchecked: rnnParamActsUnchecked}); err != nil {
			return fmt.Errorf("%w (activations with alpha and beta)", err)
		}
	}
	if err := typeIn(n, 4, tensor.Int32, tensor.Int64); err != nil {
		return err
	}
	return nil
}

func (c *compiler) rnn(s *step) error {
	n := s.node
	r, err := parseRNN(n, c.g.Opset())
	if err != nil {
		return err
	}
	xd, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	rd, err := c.dims(n.Inputs[2])
	if err != nil {
		return err
	}
	if len(xd) != 3 || len(rd) != 3 {
		return fmt.Errorf("%w: %s of X %v and R %v", ErrGraph, n.OpType, xd, rd)
	}
	S, B, I := int64(xd[0]), int64(xd[1]), xd[2]
	if r.layout == 1 {
		S, B = B, S
	}
	H := rd[2]
	GH := r.gates * H
	if rd[0] != r.dirs || rd[1] != GH || (r.hidden > 0 && int64(H) != r.hidden) {
		return fmt.Errorf("%w: %s R %v for %d direction(s), hidden size %d", ErrGraph, n.OpType, rd, r.dirs, H)
	}
	if wd, err := c.dims(n.Inputs[1]); err != nil || len(wd) != 3 || wd[0] != r.dirs || wd[1] != GH || wd[2] != I {
		return fmt.Errorf("%w: %s W %v, want [%d %d %d]", ErrGraph, n.OpType, wd, r.dirs, GH, I)
	}
	if S == 0 {
		return fmt.Errorf("%w: %s of an empty sequence", ErrUnsupported, n.OpType)
	}
	refOf := func(i int) (*ref, error) {
		v := input(n, i)
		if v == nil {
			return nil, nil
		}
		rf, err := c.ref(v)
		return &rf, err
	}
	var in [8]*ref
	for i := range in {
		if i >= 7 && n.OpType != "LSTM" || i == 6 && n.OpType != "LSTM" {
			continue
		}
		if in[i], err = refOf(i); err != nil {
			return err
		}
	}
	lens64 := 0
	if v := input(n, 4); v != nil && dtypeOf(v) == tensor.Int64 {
		lens64 = 1
	}
	var outs [3]*ref
	for i := range outs {
		if o := output(n, i); o != nil && c.used(o) && (i < 2 || n.OpType == "LSTM") {
			rf, _, err := c.out(n, i)
			if err != nil {
				return err
			}
			outs[i] = &rf
		}
	}
	lstm, gru := n.OpType == "LSTM", n.OpType == "GRU"
	sfx := "f32"
	if c.half {
		sfx = "f16"
	}
	state := int64(r.dirs) * B * int64(H)
	xw := c.scratch(4 * int64(r.dirs) * S * B * int64(GH))
	h := [2]ref{c.scratch(4 * state), c.scratch(4 * state)}
	var cs [2]*ref
	if lstm {
		c0, c1 := c.scratch(4*state), c.scratch(4*state)
		cs = [2]*ref{&c0, &c1}
	}
	acts := c.meta(r.acts)
	rev, lbr, layout := b2i(r.reverse), b2i(r.lbr), r.layout
	ny := int64(0)
	if outs[0] != nil {
		ny = S * int64(r.dirs) * B * int64(H)
	}
	projArgs := []arg{pArg(xw), pArg(*in[0]), pArg(*in[1]), optArg(in[3]),
		lArg(S), lArg(B), iArg(I), iArg(GH), iArg(r.dirs), iArg(H), iArg(lbr), iArg(layout)}
	proj := elemLaunch("rnn_proj_"+sfx, 32*int64(r.dirs)*S*B*int64(GH), projArgs...)
	if rows := (S*B + 31) / 32; rnnTiledProj && rows <= 65535 && I > 0 {
		// a tile of 32 rows by 32 gates a block (kernels/op_rnn.cu)
		proj = launch{kernel: "rnn_proj_tiled_" + sfx, grid: cuda.Dim3{X: uint32((GH + 31) / 32), Y: uint32(rows), Z: uint32(r.dirs)},
			block: cuda.Dim3{X: 32, Y: 8, Z: 1}, args: projArgs}
	}
	s.launches = append(s.launches, proj,
		elemLaunch("rnn_init_"+sfx, max(state, ny), pArg(h[0]), optArg(cs[0]), optArg(in[5]), optArg(in[6]), optArg(outs[0]), lArg(ny),
			iArg(r.dirs), lArg(B), iArg(H), iArg(layout)))
	var zb, rh ref
	if gru {
		zb, rh = c.scratch(4*state), c.scratch(4*state)
	}
	// the step kernels: a warp per unit and batch item, or per unit and
	// tile of 8 batch items (rnnBatchTile, from rnnBatchTileFrom items)
	bt, warps := "", state
	if rnnBatchTile && B >= rnnBatchTileFrom {
		bt, warps = "bt_", int64(r.dirs)*int64(H)*((B+7)/8)
	}
	for st := range S {
		hp, hn := h[st%2], h[(st+1)%2]
		switch {
		case gru:
			s.launches = append(s.launches,
				elemLaunch("gru_gates_"+bt+sfx, 32*warps, pArg(zb), pArg(rh), pArg(hp), pArg(xw), pArg(*in[2]), lArg(st), lArg(S), lArg(B), iArg(H),
					iArg(r.dirs), iArg(rev), pArg(acts), fArg(r.clip), iArg(lbr)),
				elemLaunch("gru_step_"+bt+sfx, 32*warps, optArg(outs[0]), pArg(hn), pArg(hp), pArg(zb), pArg(rh), pArg(xw), pArg(*in[2]), optArg(in[3]),
					optArg(in[4]), iArg(lens64), lArg(st), lArg(S), lArg(B), iArg(H), iArg(r.dirs), iArg(rev), pArg(acts), fArg(r.clip), iArg(lbr), iArg(layout)))
		default:
			kind, cp, cn := 0, (*ref)(nil), (*ref)(nil)
			if lstm {
				kind, cp, cn = 2, cs[st%2], cs[(st+1)%2]
			}
			s.launches = append(s.launches,
				elemLaunch("rnn_step_"+bt+sfx, 32*warps, optArg(outs[0]), pArg(hn), optArg(cn), pArg(hp), optArg(cp), pArg(xw), pArg(*in[2]), optArg(in[7]),
					optArg(in[4]), iArg(lens64), lArg(st), lArg(S), lArg(B), iArg(H), iArg(r.dirs), iArg(rev), iArg(kind), pArg(acts), fArg(r.clip),
					iArg(b2i(r.inputForget)), iArg(layout)))
		}
	}
	if outs[1] != nil || outs[2] != nil {
		var cl *ref
		if lstm {
			cl = cs[S%2]
		}
		s.launches = append(s.launches, elemLaunch("rnn_final_"+sfx, state, optArg(outs[1]), optArg(outs[2]), pArg(h[S%2]), optArg(cl),
			iArg(r.dirs), lArg(B), iArg(H), iArg(layout)))
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
