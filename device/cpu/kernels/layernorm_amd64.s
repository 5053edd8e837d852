//go:build amd64 && !purego

#include "textflag.h"

// The AVX2+FMA row loops of kiln::SkipLayerNormalization (layernorm.go);
// n is a positive multiple of 8.

// func lnSumAVX2(x *float32, n int) float32
TEXT ·lnSumAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	CMPQ CX, $16
	JL   sum8

sum16:
	VADDPS (SI), Y0, Y0
	VADDPS 32(SI), Y1, Y1
	ADDQ $64, SI
	SUBQ $16, CX
	CMPQ CX, $16
	JGE  sum16

sum8:
	CMPQ CX, $8
	JL   sumdone
	VADDPS (SI), Y0, Y0

sumdone:
	VADDPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X0, ret+16(FP)
	VZEROUPPER
	RET

// func lnSqDevAVX2(x *float32, n int, mean float32) float32
TEXT ·lnSqDevAVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS mean+16(FP), Y2
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	CMPQ         CX, $16
	JL           sq8

sq16:
	VMOVUPS     (SI), Y3
	VMOVUPS     32(SI), Y4
	VSUBPS      Y2, Y3, Y3
	VSUBPS      Y2, Y4, Y4
	VFMADD231PS Y3, Y3, Y0
	VFMADD231PS Y4, Y4, Y1
	ADDQ        $64, SI
	SUBQ        $16, CX
	CMPQ        CX, $16
	JGE         sq16

sq8:
	CMPQ        CX, $8
	JL          sqdone
	VMOVUPS     (SI), Y3
	VSUBPS      Y2, Y3, Y3
	VFMADD231PS Y3, Y3, Y0

sqdone:
	VADDPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X0, ret+24(FP)
	VZEROUPPER
	RET

// func lnApplyAVX2(dst, x, gamma, beta *float32, n int, mean, inv float32)
// dst = (x-mean)*inv*gamma + beta; beta may be nil.
TEXT ·lnApplyAVX2(SB), NOSPLIT, $0-48
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         gamma+16(FP), BX
	MOVQ         beta+24(FP), DX
	MOVQ         n+32(FP), CX
	VBROADCASTSS mean+40(FP), Y2
	VBROADCASTSS inv+44(FP), Y5
	TESTQ        DX, DX
	JZ           nobeta

apply:
	VMOVUPS     (SI), Y3
	VSUBPS      Y2, Y3, Y3
	VMULPS      Y5, Y3, Y3
	VMOVUPS     (BX), Y4
	VFMADD213PS (DX), Y4, Y3
	VMOVUPS     Y3, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	ADDQ        $32, BX
	ADDQ        $32, DX
	SUBQ        $8, CX
	JNZ         apply
	VZEROUPPER
	RET

nobeta:
	VMOVUPS (SI), Y3
	VSUBPS  Y2, Y3, Y3
	VMULPS  Y5, Y3, Y3
	VMULPS  (BX), Y3, Y3
	VMOVUPS Y3, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, BX
	SUBQ    $8, CX
	JNZ     nobeta
	VZEROUPPER
	RET

// func lnAddSumAVX2(dst, x, skip *float32, n int) float32
// dst = x + skip, returning the sum of dst accumulated as lnSumAVX2 does.
TEXT ·lnAddSumAVX2(SB), NOSPLIT, $0-36
	MOVQ   dst+0(FP), DI
	MOVQ   x+8(FP), SI
	MOVQ   skip+16(FP), DX
	MOVQ   n+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	CMPQ   CX, $16
	JL     add8

add16:
	VMOVUPS (SI), Y3
	VMOVUPS 32(SI), Y4
	VADDPS  (DX), Y3, Y3
	VADDPS  32(DX), Y4, Y4
	VMOVUPS Y3, (DI)
	VMOVUPS Y4, 32(DI)
	VADDPS  Y3, Y0, Y0
	VADDPS  Y4, Y1, Y1
	ADDQ    $64, SI
	ADDQ    $64, DX
	ADDQ    $64, DI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     add16

add8:
	CMPQ    CX, $8
	JL      adddone
	VMOVUPS (SI), Y3
	VADDPS  (DX), Y3, Y3
	VMOVUPS Y3, (DI)
	VADDPS  Y3, Y0, Y0

adddone:
	VADDPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X0, ret+32(FP)
	VZEROUPPER
	RET
