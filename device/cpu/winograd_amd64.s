//go:build amd64 && !purego

#include "textflag.h"

// func winoRowsAVX512(n int, src, dst *[6]*float32, coef *float32, ns, nd int)
//
// dst[r][i] = sum over k < ns of coef[r*ns+k] * src[k][i], for r < nd and
// i < n; n is a multiple of 16.
TEXT ·winoRowsAVX512(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ dst+16(FP), DI
	MOVQ coef+24(FP), DX
	MOVQ ns+32(FP), R8
	MOVQ nd+40(FP), R9
	XORQ AX, AX

loop_i:
	CMPQ AX, CX
	JGE  done
	XORQ R10, R10
	MOVQ DX, R12

loop_r:
	CMPQ   R10, R9
	JGE    next_i
	VXORPS Z0, Z0, Z0
	XORQ   R11, R11

loop_k:
	CMPQ         R11, R8
	JGE          store
	MOVQ         (SI)(R11*8), R13
	VMOVUPS      (R13)(AX*4), Z1
	VBROADCASTSS (R12)(R11*4), Z2
	VFMADD231PS  Z1, Z2, Z0
	INCQ         R11
	JMP          loop_k

store:
	MOVQ    (DI)(R10*8), R13
	VMOVUPS Z0, (R13)(AX*4)
	LEAQ    (R12)(R8*4), R12
	INCQ    R10
	JMP     loop_r

next_i:
	ADDQ $16, AX
	JMP  loop_i

done:
	VZEROUPPER
	RET
