package gpuexec

import "github.com/kilnai/kiln/ir"

// residualGEMM lets a matrix product add the residual of the Add that a
// LayerNormalization computes (c.lnAdd): in half precision, for BERT's
// output projections (x + proj(attention), x + ffn(x)), the product writes
// the sum, so that the normalization reads one matrix instead of two.
// cuBLASLt adds the residual through its C matrix (beta = 1) with the bias
// epilogue, where the GEMM, bound by its arithmetic at large batches, reads
// it for nearly nothing; otherwise row_epilogue_res_vec adds it with the
// bias. Tests turn it off to time the engine without.
var residualGEMM = true

// residualInto plans the residual of add (a residual Add folded into a
// LayerNormalization) into the product computing one of its inputs: that
// input must be the product's output [M,N] read by add alone (not a graph
// output), with a constant bias and no activation (cuBLASLt adds C before
// its epilogue's activation), its rows a multiple of 8 halves, and the
// other input computed before the product. It returns the index of the
// product's input of add, or -1 when neither qualifies.
func (c *compiler) residualInto(add *ir.Node) int {
	if !residualGEMM || !c.half || c.keep || len(add.Inputs) != 2 {
		return -1
	}
	for i, x := range add.Inputs {
		other := add.Inputs[1-i]
		if x == nil || other == nil || x == other || c.outs[x] || len(c.uses[x]) != 1 {
			continue
		}
		si := c.producerStep(x)
		if si < 0 {
			continue
		}
		s := &c.p.steps[si]
		gc := s.gemm
		if gc == nil || gc.resid != nil || gc.act.code != actNone || gc.bias == nil || gc.bias.buf != bufWeights || gc.n%8 != 0 {
			continue
		}
		if id, ok := c.storeOf[other]; ok && c.acc.madeAt(id) >= si {
			continue // computed after the product
		}
		r, err := c.ref(other)
		if err != nil || r.buf == bufArena && r.off%16 != 0 || r.buf == bufWeights && r.off%16 != 0 {
			continue
		}
		total := int64(gc.m) * int64(gc.n)
		gc.resid = &r
		gc.post = elemLaunch("row_epilogue_res_vec_f16", total/8, pArg(gc.y), optArg(gc.bias), pArg(r), lArg(total), iArg(gc.n), iArg(actNone), fArg(0), fArg(0))
		// kiln's tiled kernel adds the bias itself: the residual after it
		s.launches = append(s.launches, elemLaunch("row_epilogue_res_vec_f16", total/8, pArg(gc.y), nilArg(), pArg(r), lArg(total), iArg(gc.n), iArg(actNone), fArg(0), fArg(0)))
		c.p.kernels["row_epilogue_res_vec_f16"] = true
		return i
	}
	return -1
}

// producerStep is the index of the step that computed v, or -1.
func (c *compiler) producerStep(v *ir.Value) int {
	for i := len(c.p.steps) - 1; i >= 0; i-- {
		for _, o := range c.p.steps[i].node.Outputs {
			if o == v {
				return i
			}
		}
	}
	return -1
}
