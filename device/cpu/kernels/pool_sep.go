package kernels

import (
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
)

// poolSep computes a 1-D or 2-D max or average pooling as two separable
// passes per output row: a vertical pass reduces the window's input rows to
// one row, a horizontal pass reduces that row to the output columns. The valid
// part of every window is a rectangle, so both the maximum and the sum (and
// the element count of the average) factor over the two axes.
func poolSep[T ops.Number](k *poolKernel, g *nn.PoolGeometry, planes int, x, y []T) {
	sp, in, dil := g.Spans()
	rows, cols := sp[1], sp[2]
	H, W := in[1], in[2]
	OH, OW := len(rows), len(cols)
	dh, dw := dil[1], dil[2]
	low := lowest[T]()
	isMax := k.kind == poolMax
	// divisor of each output column and row
	colCnt := make([]int, OW)
	for j, s := range cols {
		colCnt[j] = s.Hi - s.Lo
		if k.includePad {
			colCnt[j] = s.Count
		}
	}
	rowCnt := make([]int, OH)
	for i, s := range rows {
		rowCnt[i] = s.Hi - s.Lo
		if k.includePad {
			rowCnt[i] = s.Count
		}
	}
	grain := max(1, (1<<14)/max(1, H*W+OH*OW))
	cpu.ParallelFor(planes, grain, func(lo, hi int) {
		tmp := make([]T, W)
		for pl := lo; pl < hi; pl++ {
			xp := x[pl*H*W : (pl+1)*H*W]
			yp := y[pl*OH*OW : (pl+1)*OH*OW]
			for i, s := range rows {
				out := yp[i*OW : (i+1)*OW]
				if s.Lo >= s.Hi {
					fill := low
					if !isMax {
						fill = 0
					}
					for j := range out {
						out[j] = fill
					}
					continue
				}
				// vertical pass: reduce the window's rows into tmp
				copy(tmp, xp[(s.Start+s.Lo*dh)*W:][:W])
				for r := s.Lo + 1; r < s.Hi; r++ {
					src := xp[(s.Start+r*dh)*W:][:W]
					if isMax {
						for j, v := range src {
							tmp[j] = max(tmp[j], v)
						}
					} else {
						for j, v := range src {
							tmp[j] += v
						}
					}
				}
				// horizontal pass: reduce tmp into the output columns
				for j, c := range cols {
					if c.Lo >= c.Hi {
						out[j] = low
						if !isMax {
							out[j] = 0
						}
						continue
					}
					win := tmp[c.Start+c.Lo*dw : c.Start+(c.Hi-1)*dw+1]
					if isMax {
						m := win[0]
						if dw == 1 {
							for _, v := range win[1:] {
								m = max(m, v)
							}
						} else {
							for p := dw; p < len(win); p += dw {
								m = max(m, win[p])
							}
						}
						out[j] = m
					} else {
						var sum T
						if dw == 1 {
							for _, v := range win {
								sum += v
							}
						} else {
							for p := 0; p < len(win); p += dw {
								sum += win[p]
							}
						}
						if n := rowCnt[i] * colCnt[j]; n > 0 {
							sum /= T(n)
						}
						out[j] = sum
					}
				}
			}
		}
	})
}
