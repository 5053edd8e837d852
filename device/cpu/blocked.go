package cpu

import "fmt"

// The blocked layout ("NCHWc", as oneDNN and ONNX Runtime's NCHWc
// transformer call it) keeps an activation [N, C, H, W] as
// [N, Blocks(C), H, W, Block]: Block consecutive channels of one pixel are
// contiguous, one AVX-512 vector, so a convolution's inner loop fills every
// lane whatever the plane's width. Channels past C in the last block (the
// pad lanes) are zero in every tensor a blocked kernel writes, and every
// blocked kernel that reads a tensor gives them no weight, so a tensor's
// pad lanes never change a real channel.

// Block is the number of channels of one block.
const Block = 16

// Blocks is the number of channel blocks of c channels.
func Blocks(c int) int { return (c + Block - 1) / Block }

// BlockedLen is the number of floats of an [n, c, h*w] activation in the
// blocked layout.
func BlockedLen(n, c, hw int) int { return n * Blocks(c) * hw * Block }

// BlockedFilter is a convolution's weights packed for BlockedConv2D, made
// once (at a plan's load) by PackBlockedFilter.
type BlockedFilter struct {
	// P is the geometry the weights were packed for.
	P Conv2DParams
	// InNCHW: the convolution reads a plain NCHW input (a network's first
	// layer, a few channels) and writes a blocked output.
	InNCHW bool
	// Depthwise: Group == C == M, one channel per group.
	Depthwise bool
	// W is the packed weights (zero where a pad lane would be):
	//   group 1, blocked input: [Blocks(M)][Blocks(C)][KH][KW][Block ic][Block oc]
	//   group 1, NCHW input:    [Blocks(M)][C][KH][KW][Block oc]
	//   depthwise:              [Blocks(C)][KH][KW][Block]
	W []float32
}

// BlockedSupported reports why p cannot run as a blocked convolution, or
// nil: group 1 or depthwise (Group == C == M) only, and an NCHW input only
// with group 1.
func BlockedSupported(p Conv2DParams, inNCHW bool) error {
	if err := p.Validate(); err != nil {
		return err
	}
	dw := p.Group == p.C && p.M == p.C && p.Group > 1
	switch {
	case p.Group == 1:
	case dw && !inNCHW:
	default:
		return fmt.Errorf("%w: blocked convolution of %d groups (C = %d, M = %d, NCHW input %v): group 1 or depthwise only", ErrInvalidConv, p.Group, p.C, p.M, inNCHW)
	}
	return nil
}

// PackBlockedFilter packs w, [M, C/Group, KH, KW], for BlockedConv2D. It
// panics if BlockedSupported refuses p.
func PackBlockedFilter(p Conv2DParams, inNCHW bool, w []float32) *BlockedFilter {
	if err := BlockedSupported(p, inNCHW); err != nil {
		panic(err)
	}
	f := &BlockedFilter{P: p, InNCHW: inNCHW, Depthwise: p.Group > 1}
	k := p.KH * p.KW
	mb, cb := Blocks(p.M), Blocks(p.C)
	switch {
	case f.Depthwise:
		_ = w[p.C*k-1]
		f.W = make([]float32, cb*k*Block)
		for c := 0; c < p.C; c++ {
			b, l := c/Block, c%Block
			for t := 0; t < k; t++ {
				f.W[(b*k+t)*Block+l] = w[c*k+t]
			}
		}
	case inNCHW:
		_ = w[p.M*p.C*k-1]
		f.W = make([]float32, mb*p.C*k*Block)
		for m := 0; m < p.M; m++ {
			b, l := m/Block, m%Block
			for c := 0; c < p.C; c++ {
				for t := 0; t < k; t++ {
					f.W[((b*p.C+c)*k+t)*Block+l] = w[(m*p.C+c)*k+t]
				}
			}
		}
	default:
		_ = w[p.M*p.C*k-1]
		f.W = make([]float32, mb*cb*k*Block*Block)
		for m := 0; m < p.M; m++ {
			ob, ol := m/Block, m%Block
			for c := 0; c < p.C; c++ {
				ib, il := c/Block, c%Block
				for t := 0; t < k; t++ {
					f.W[((((ob*cb+ib)*k+t)*Block)+il)*Block+ol] = w[(m*p.C+c)*k+t]
				}
			}
		}
	}
	return f
}

// BlockedConv2D computes y = act(conv(x, w) + bias + z) in the blocked
// layout: x is [N, Blocks(C), H, W, Block] (or [N, C, H, W] when f was
// packed for an NCHW input), y and z (nil for none) [N, Blocks(M), OutH,
// OutW, Block], bias [M] or nil; f.P's activation (ActNone, ActRelu,
// ActClip) is applied last and y's pad lanes are written zero. z may be y
// itself (a residual added in place); x must not overlap y. It panics if a
// slice is too short.
func BlockedConv2D(f *BlockedFilter, x, bias, z, y []float32) {
	if f.Depthwise {
		blockedDepthwise(f, x, bias, z, y) // blockeddw.go
		return
	}
	blockedDense(f, x, bias, z, y) // blockedconv.go
}

// blockedConvRef is BlockedConv2D in plain loops: the reference the fast
// kernels are checked against.
func blockedConvRef(f *BlockedFilter, x, bias, z, y []float32) {
	p := f.P
	oh, ow := p.OutH(), p.OutW()
	mb, cb := Blocks(p.M), Blocks(p.C)
	k := p.KH * p.KW
	xlen := BlockedLen(p.N, p.C, p.H*p.W)
	if f.InNCHW {
		xlen = p.N * p.C * p.H * p.W
	}
	_ = x[xlen-1]
	_ = y[BlockedLen(p.N, p.M, oh*ow)-1]
	if z != nil {
		_ = z[BlockedLen(p.N, p.M, oh*ow)-1]
	}
	if bias != nil {
		_ = bias[p.M-1]
	}
	var acc [Block]float32
	for n := 0; n < p.N; n++ {
		for ob := 0; ob < mb; ob++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					acc = [Block]float32{}
					for kh := 0; kh < p.KH; kh++ {
						ih := i*p.StrideH - p.PadTop + kh*p.DilH
						if ih < 0 || ih >= p.H {
							continue
						}
						for kw := 0; kw < p.KW; kw++ {
							iw := j*p.StrideW - p.PadLeft + kw*p.DilW
							if iw < 0 || iw >= p.W {
								continue
							}
							t := kh*p.KW + kw
							switch {
							case f.Depthwise:
								xv := x[((n*cb+ob)*p.H+ih)*p.W*Block+iw*Block:]
								wv := f.W[(ob*k+t)*Block:]
								for l := 0; l < Block; l++ {
									acc[l] += xv[l] * wv[l]
								}
							case f.InNCHW:
								for c := 0; c < p.C; c++ {
									xs := x[((n*p.C+c)*p.H+ih)*p.W+iw]
									wv := f.W[((ob*p.C+c)*k+t)*Block:]
									for l := 0; l < Block; l++ {
										acc[l] += xs * wv[l]
									}
								}
							default:
								for ib := 0; ib < cb; ib++ {
									xv := x[((n*cb+ib)*p.H+ih)*p.W*Block+iw*Block:]
									for il := 0; il < Block; il++ {
										xs := xv[il]
										wv := f.W[(((ob*cb+ib)*k+t)*Block+il)*Block:]
										for l := 0; l < Block; l++ {
											acc[l] += xs * wv[l]
										}
									}
								}
							}
						}
					}
					o := ((n*mb+ob)*oh+i)*ow*Block + j*Block
					for l := 0; l < Block; l++ {
						m := ob*Block + l
						if m >= p.M {
							y[o+l] = 0
							continue
						}
						v := acc[l]
						if bias != nil {
							v += bias[m]
						}
						if z != nil {
							v += z[o+l]
						}
						switch p.Act {
						case ActRelu:
							v = max(v, 0)
						case ActClip:
							v = min(max(v, p.ActMin), p.ActMax)
						}
						y[o+l] = v
					}
				}
			}
		}
	}
}
