//go:build amd64 && !purego

#include "textflag.h"

// func planeSumsAVX512(y, x *float32, planes, size int)
// y[p] = the sum of x[p*size : (p+1)*size] for p < planes (two vector
// accumulators, masked tail: nothing past the planes is read).
TEXT ·planeSumsAVX512(SB), NOSPLIT, $0-32
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ planes+16(FP), R8
	MOVQ size+24(FP), R9
gsplane:
	TESTQ R8, R8
	JZ gsdone
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	MOVQ R9, CX
gs32:
	CMPQ CX, $32
	JLT gs16
	VADDPS (SI), Z0, Z0
	VADDPS 64(SI), Z1, Z1
	ADDQ $128, SI
	SUBQ $32, CX
	JMP gs32
gs16:
	CMPQ CX, $16
	JLT gstail
	VADDPS (SI), Z0, Z0
	ADDQ $64, SI
	SUBQ $16, CX
gstail:
	TESTQ CX, CX
	JZ gsred
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
	VMOVUPS.Z (SI), K1, Z2
	VADDPS Z2, Z1, Z1
	LEAQ (SI)(CX*4), SI
gsred:
	VADDPS Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VADDPS X1, X0, X0
	VPSHUFD $0xb1, X0, X1
	VADDSS X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	DECQ R8
	JMP gsplane
gsdone:
	VZEROUPPER
	RET

// func planeMaxAVX512(y, x *float32, planes, size int)
// y[p] = the max of x[p*size : (p+1)*size] for p < planes, NaNs left out
// (the accumulators start at -Inf and VMAXPS keeps them where the data is
// NaN); masked tail: nothing past the planes is read.
TEXT ·planeMaxAVX512(SB), NOSPLIT, $0-32
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ planes+16(FP), R8
	MOVQ size+24(FP), R9
	MOVL $0xff800000, AX
	VPBROADCASTD AX, Z30
gmplane:
	TESTQ R8, R8
	JZ gmdone
	VMOVAPS Z30, Z0
	VMOVAPS Z30, Z1
	MOVQ R9, CX
gm32:
	CMPQ CX, $32
	JLT gm16
	VMOVUPS (SI), Z2
	VMOVUPS 64(SI), Z3
	VMAXPS Z0, Z2, Z0
	VMAXPS Z1, Z3, Z1
	ADDQ $128, SI
	SUBQ $32, CX
	JMP gm32
gm16:
	CMPQ CX, $16
	JLT gmtail
	VMOVUPS (SI), Z2
	VMAXPS Z0, Z2, Z0
	ADDQ $64, SI
	SUBQ $16, CX
gmtail:
	TESTQ CX, CX
	JZ gmred
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
	VMOVAPS Z30, Z2
	VMOVUPS (SI), K1, Z2
	VMAXPS Z1, Z2, Z1
	LEAQ (SI)(CX*4), SI
gmred:
	VMAXPS Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPSHUFD $0xb1, X0, X1
	VMAXSS X1, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	DECQ R8
	JMP gmplane
gmdone:
	VZEROUPPER
	RET
