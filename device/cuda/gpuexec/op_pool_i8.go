package gpuexec

import (
	"fmt"
	"os"
)

// MaxPool writing INT8 (issue 11): the 8-bit chains (int8chain.go) through
// a MaxPool whose input is half and whose readers all read its output as
// their input in INT8 at one scale: ResNet's stem (kept in float by the
// INT8 rule: it reads the image) writes half, its MaxPool 3x3/2 feeds
// layer1.0's conv1 and downsample, which each quantized that output
// themselves (quantize_nhwc_i8 into the workspace, twice). Here the MaxPool
// runs maxpool_nhwc8_f16_i8 (device/cuda/kernels/op_quant_pool.cu): the
// max of the half window quantized at the readers' scale, written as 8
// bits; the readers are marked in8 and skip their quantizing pass. The
// quantization is monotonic, so the bytes are the ones the readers made
// before: the network computes the same values with half the pool's
// output traffic and two passes fewer (device/cuda/NOTES.md, "the stem's
// MaxPool writing 8 bits").
//
// The int8 launch runs only while every reader runs quantized reading 8
// bits (launchesOf): tuning's FP16 way (int8tune.go) and a plan that chose
// FP16 keep the half pool. Not yet run on a GPU, so opt-in:
// KILN_CUDA_INT8_POOL=1 or KILN_CUDA_UNVERIFIED=1; =0 keeps it out.

// EnvInt8Pool names the environment variable that, set to 1, lets a
// MaxPool write its output in INT8 for its quantized readers (op_pool_i8.go),
// and set to 0 keeps it half.
const EnvInt8Pool = "KILN_CUDA_INT8_POOL"

// poolI8Kernel is the MaxPool writing INT8.
const poolI8Kernel = "maxpool_nhwc8_f16_i8"

// poolI8 is a MaxPool step planned to write INT8.
type poolI8 struct {
	l       launch // the launch of poolI8Kernel (at 1 / the readers' scale)
	readers []int  // the steps reading its output, each as its quantized input
}

// poolI8On says whether MaxPools may write INT8: KILN_CUDA_INT8_POOL=0 or 1
// decides, else KILN_CUDA_UNVERIFIED=1 turns it on (not yet run on a GPU).
func poolI8On() bool {
	switch os.Getenv(EnvInt8Pool) {
	case "0":
		return false
	case "1":
		return true
	}
	return os.Getenv(EnvUnverified) == "1"
}

// planPoolI8 plans, with the chains on (chainInt8 calls it once the
// quantized layers are chosen), every MaxPool that can write INT8 for its
// readers (see above), replacing what an earlier call planned.
func (e *Engine) planPoolI8() {
	e.int8.pool = nil
	if !poolI8On() || !e.prog.half {
		return
	}
	for i := range e.prog.steps {
		if p, err := e.poolI8For(i); err == nil {
			if e.int8.pool == nil {
				e.int8.pool = map[int]*poolI8{}
			}
			e.int8.pool[i] = p
			for _, j := range p.readers {
				e.int8.use[j].in8 = true
				e.ws = max(e.ws, e.int8.use[j].workspace(false))
			}
		}
	}
}

// poolI8For plans step i as a MaxPool writing INT8, or says why it cannot.
func (e *Engine) poolI8For(i int) (*poolI8, error) {
	s := e.prog.steps[i]
	if s.node.OpType != "MaxPool" || !s.half || len(s.launches) != 1 || s.launches[0].kernel != "pool2d_nhwc8_f16" {
		return nil, fmt.Errorf("%w: not a half NHWC MaxPool of 8-channel vectors", ErrUnsupported)
	}
	l := s.launches[0]
	// pool2d_nhwc8_f16's arguments: y, x, N, C, H, W, OH, OW, KH, KW, SH,
	// SW, PH, PW, DH, DW, PEH, PEW, mode
	if len(l.args) != 19 || l.args[18].kind != argI32 || l.args[18].i != 0 || l.args[0].kind != argPtr {
		return nil, fmt.Errorf("%w: MaxPool launch %d arguments", ErrUnsupported, len(l.args))
	}
	y := l.args[0].ref
	rs, ok := e.readers(i, y)
	if !ok || len(rs) == 0 {
		return nil, fmt.Errorf("%w: the MaxPool's output is a graph output or unread", ErrUnsupported)
	}
	var sc float32
	for _, j := range rs {
		q := e.int8.use[j]
		cb := e.prog.steps[j].conv
		if q == nil || cb == nil || q.kind != "int8" || q.lt != nil || q.scaled || cb.x != y || cb.z != nil && *cb.z == y {
			return nil, fmt.Errorf("%w: reader %s does not read the MaxPool's output as its INT8 input", ErrUnsupported, e.prog.steps[j].name())
		}
		var sj float32
		switch {
		case q.x8 != nil:
			sj = q.x8.sx
		case q.cp == q.c:
			sj = 1 / q.inv
		default:
			return nil, fmt.Errorf("%w: reader %s pads its input channels", ErrUnsupported, e.prog.steps[j].name())
		}
		if sc == 0 {
			sc = sj
		} else if !sameScale(sc, sj) {
			return nil, fmt.Errorf("%w: the readers' scales differ (%g, %g)", ErrUnsupported, sc, sj)
		}
	}
	if !(sc > 0) {
		return nil, fmt.Errorf("%w: scale %g", ErrUnsupported, sc)
	}
	if _, ok := e.funcs[poolI8Kernel]; !ok {
		fn, err := e.drv.ModuleFunction(e.mod, poolI8Kernel)
		if err != nil {
			return nil, err
		}
		e.funcs[poolI8Kernel] = fn
	}
	args := append([]arg{l.args[0], l.args[1], fArg(1 / sc)}, l.args[2:16]...)
	return &poolI8{l: launch{kernel: poolI8Kernel, grid: l.grid, block: l.block, args: args}, readers: rs}, nil
}

// launchesOf is step i's launches as the engine runs it now: a MaxPool
// planned to write INT8 runs poolI8Kernel while every reader runs
// quantized reading 8 bits, a GlobalAveragePool planned to read INT8 runs
// gpoolI8Kernel while its producer writes 8 bits, else the step's own
// launches.
func (e *Engine) launchesOf(i int) []launch {
	if p := e.int8.pool[i]; p != nil && e.poolI8Live(p) {
		return []launch{p.l}
	}
	if p := e.int8.gpool[i]; p != nil {
		if q := e.int8.use[p.producer]; q != nil && q.out8 && q.x8 != nil {
			l := e.prog.steps[i].launches[0]
			args := append([]arg{l.args[0], l.args[1], fArg(q.x8.sy)}, l.args[2:5]...)
			return []launch{{kernel: gpoolI8Kernel, grid: l.grid, block: l.block, args: args}}
		}
	}
	return e.prog.steps[i].launches
}

// GlobalAveragePool reading INT8: the last value of the 8-bit chains (in
// ResNet-50 the last block's output, written by expand_i8u2) is read by
// the pooling alone, so expand_i8u2 wrote it to the workspace in 8 bits
// and widened it to half (dequant_i8_f16) for global_pool_nhwc_f16. With
// the pooling reading 8 bits (global_avgpool_nhwc_i8), expand_i8u2 writes
// the value's storage in 8 bits and nothing widens it: the half value
// (2 bytes a value written, read twice) becomes 1 byte written and read
// once. The mean is computed without the per-value half rounding of the
// widening, so the logits differ from the half path by about that
// rounding (not bit for bit). Opt-in until a GPU has run it:
// KILN_CUDA_INT8_GPOOL=1 or KILN_CUDA_UNVERIFIED=1; =0 keeps it out.

// EnvInt8GPool names the environment variable that, set to 1, lets a
// GlobalAveragePool read its input in INT8 from expand_i8u2, and set to 0
// keeps it half.
const EnvInt8GPool = "KILN_CUDA_INT8_GPOOL"

// gpoolI8Kernel is GlobalAveragePool reading INT8.
const gpoolI8Kernel = "global_avgpool_nhwc_i8"

// gpoolI8 is a GlobalAveragePool step that reads step producer's output
// in INT8 while that writes 8 bits (at its output scale).
type gpoolI8 struct {
	producer int
}

// gpoolI8Reader reports whether step j is a GlobalAveragePool that can
// read the half NHWC value y in INT8 (global_pool_nhwc_f16, average).
func (e *Engine) gpoolI8Reader(j int, y ref) bool {
	switch os.Getenv(EnvInt8GPool) {
	case "0":
		return false
	case "1":
	default:
		if os.Getenv(EnvUnverified) != "1" {
			return false
		}
	}
	s := e.prog.steps[j]
	if s.node.OpType != "GlobalAveragePool" || !s.half || len(s.launches) != 1 {
		return false
	}
	// global_pool_nhwc_f16's arguments: y, x, N, HW, C, mode
	l := s.launches[0]
	if l.kernel != "global_pool_nhwc_f16" || len(l.args) != 6 || l.args[1].kind != argPtr || l.args[1].ref != y ||
		l.args[5].kind != argI32 || l.args[5].i != 0 {
		return false
	}
	if _, ok := e.funcs[gpoolI8Kernel]; !ok {
		fn, err := e.drv.ModuleFunction(e.mod, gpoolI8Kernel)
		if err != nil {
			return false
		}
		e.funcs[gpoolI8Kernel] = fn
	}
	return true
}

// poolI8Live says whether every reader of p runs quantized reading 8 bits.
func (e *Engine) poolI8Live(p *poolI8) bool {
	for _, j := range p.readers {
		if q := e.int8.use[j]; q == nil || !q.in8 {
			return false
		}
	}
	return true
}
