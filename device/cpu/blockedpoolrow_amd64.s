//go:build amd64 && !purego

#include "textflag.h"

// func blockedPoolRowAVX512(dst, src *float32, n, kh, kw, sx, rs, cs int, avg bool, scale float32)
// For each of n outputs j (16 lanes at dst + 64*j): the max of (or, when
// avg, scale times the sum of) the kh x kw 16-lane vectors at
// src + j*sx + a*rs + b*cs (byte strides), a < kh, b < kw. Four outputs at
// a time (four independent accumulators), then one at a time.
TEXT ·blockedPoolRowAVX512(SB), NOSPLIT, $0-72
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ kh+24(FP), R8
	MOVQ kw+32(FP), R9
	MOVQ sx+40(FP), R10
	MOVQ rs+48(FP), R11
	MOVQ cs+56(FP), R12
	MOVBLZX avg+64(FP), DX
	VBROADCASTSS scale+68(FP), Z8
	LEAQ (R10)(R10*2), R15 // 3*sx
	TESTQ DX, DX
	JNZ avg4

max4:
	CMPQ CX, $4
	JLT max1
	VMOVUPS (SI), Z0
	VMOVUPS (SI)(R10*1), Z1
	VMOVUPS (SI)(R10*2), Z2
	VMOVUPS (SI)(R15*1), Z3
	MOVQ SI, AX
	MOVQ R8, BX
max4row:
	MOVQ AX, R13
	MOVQ R9, DX
max4col:
	VMAXPS (R13), Z0, Z0
	VMAXPS (R13)(R10*1), Z1, Z1
	VMAXPS (R13)(R10*2), Z2, Z2
	VMAXPS (R13)(R15*1), Z3, Z3
	ADDQ R12, R13
	DECQ DX
	JNZ max4col
	ADDQ R11, AX
	DECQ BX
	JNZ max4row
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	ADDQ $256, DI
	LEAQ (SI)(R10*4), SI
	SUBQ $4, CX
	JMP max4

max1:
	TESTQ CX, CX
	JZ done
	VMOVUPS (SI), Z0
	MOVQ SI, AX
	MOVQ R8, BX
max1row:
	MOVQ AX, R13
	MOVQ R9, DX
max1col:
	VMAXPS (R13), Z0, Z0
	ADDQ R12, R13
	DECQ DX
	JNZ max1col
	ADDQ R11, AX
	DECQ BX
	JNZ max1row
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	ADDQ R10, SI
	DECQ CX
	JMP max1

avg4:
	CMPQ CX, $4
	JLT avg1
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	MOVQ SI, AX
	MOVQ R8, BX
avg4row:
	MOVQ AX, R13
	MOVQ R9, DX
avg4col:
	VADDPS (R13), Z0, Z0
	VADDPS (R13)(R10*1), Z1, Z1
	VADDPS (R13)(R10*2), Z2, Z2
	VADDPS (R13)(R15*1), Z3, Z3
	ADDQ R12, R13
	DECQ DX
	JNZ avg4col
	ADDQ R11, AX
	DECQ BX
	JNZ avg4row
	VMULPS Z8, Z0, Z0
	VMULPS Z8, Z1, Z1
	VMULPS Z8, Z2, Z2
	VMULPS Z8, Z3, Z3
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	ADDQ $256, DI
	LEAQ (SI)(R10*4), SI
	SUBQ $4, CX
	JMP avg4

avg1:
	TESTQ CX, CX
	JZ done
	VXORPS Z0, Z0, Z0
	MOVQ SI, AX
	MOVQ R8, BX
avg1row:
	MOVQ AX, R13
	MOVQ R9, DX
avg1col:
	VADDPS (R13), Z0, Z0
	ADDQ R12, R13
	DECQ DX
	JNZ avg1col
	ADDQ R11, AX
	DECQ BX
	JNZ avg1row
	VMULPS Z8, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	ADDQ R10, SI
	DECQ CX
	JMP avg1

done:
	VZEROUPPER
	RET
