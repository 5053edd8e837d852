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

// func winoGatherAVX512(n int, src *float32, base *int32, off int, dst *float32)
//
// dst[i] = src[base[i]+off] for i < n (a multiple of 16) where base[i] >= 0;
// dst[i] is undefined where base[i] < 0.
TEXT ·winoGatherAVX512(SB), NOSPLIT, $0-40
	MOVQ         n+0(FP), CX
	MOVQ         src+8(FP), SI
	MOVQ         base+16(FP), BX
	MOVQ         off+24(FP), DX
	MOVQ         dst+32(FP), DI
	VPBROADCASTD DX, Z2
	VPXORD       Z0, Z0, Z0
	XORQ         AX, AX

gather_loop:
	CMPQ       AX, CX
	JGE        gather_done
	VMOVDQU32  (BX)(AX*4), Z1
	VPCMPD     $5, Z0, Z1, K1
	VPADDD     Z2, Z1, Z3
	VXORPS     Z4, Z4, Z4
	VGATHERDPS (SI)(Z3*4), K1, Z4
	VMOVUPS    Z4, (DI)(AX*4)
	ADDQ       $16, AX
	JMP        gather_loop

gather_done:
	VZEROUPPER
	RET

// func winoScatterAVX512(n int, src *float32, obase *int32, off int, dst *float32, b, lo, hi float32)
//
// dst[obase[i]+off] = min(max(src[i]+b, lo), hi) for i < n (a multiple of
// 16) where obase[i] >= 0.
TEXT ·winoScatterAVX512(SB), NOSPLIT, $0-52
	MOVQ         n+0(FP), CX
	MOVQ         src+8(FP), SI
	MOVQ         obase+16(FP), BX
	MOVQ         off+24(FP), DX
	MOVQ         dst+32(FP), DI
	VBROADCASTSS b+40(FP), Z5
	VBROADCASTSS lo+44(FP), Z6
	VBROADCASTSS hi+48(FP), Z7
	VPBROADCASTD DX, Z2
	VPXORD       Z0, Z0, Z0
	XORQ         AX, AX

scatter_loop:
	CMPQ        AX, CX
	JGE         scatter_done
	VMOVDQU32   (BX)(AX*4), Z1
	VPCMPD      $5, Z0, Z1, K1
	VPADDD      Z2, Z1, Z3
	VADDPS      (SI)(AX*4), Z5, Z4
	VMAXPS      Z4, Z6, Z4
	VMINPS      Z4, Z7, Z4
	VSCATTERDPS Z4, K1, (DI)(Z3*4)
	ADDQ        $16, AX
	JMP         scatter_loop

scatter_done:
	VZEROUPPER
	RET
