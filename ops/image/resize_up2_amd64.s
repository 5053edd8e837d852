//go:build amd64 && !purego

#include "textflag.h"

// VPERMPS indexes that repeat each of the low (then high) 8 lanes twice.
DATA up2Lo<>+0(SB)/8, $0x0000000000000000
DATA up2Lo<>+8(SB)/8, $0x0000000100000001
DATA up2Lo<>+16(SB)/8, $0x0000000200000002
DATA up2Lo<>+24(SB)/8, $0x0000000300000003
DATA up2Lo<>+32(SB)/8, $0x0000000400000004
DATA up2Lo<>+40(SB)/8, $0x0000000500000005
DATA up2Lo<>+48(SB)/8, $0x0000000600000006
DATA up2Lo<>+56(SB)/8, $0x0000000700000007
GLOBL up2Lo<>(SB), RODATA|NOPTR, $64
DATA up2Hi<>+0(SB)/8, $0x0000000800000008
DATA up2Hi<>+8(SB)/8, $0x0000000900000009
DATA up2Hi<>+16(SB)/8, $0x0000000a0000000a
DATA up2Hi<>+24(SB)/8, $0x0000000b0000000b
DATA up2Hi<>+32(SB)/8, $0x0000000c0000000c
DATA up2Hi<>+40(SB)/8, $0x0000000d0000000d
DATA up2Hi<>+48(SB)/8, $0x0000000e0000000e
DATA up2Hi<>+56(SB)/8, $0x0000000f0000000f
GLOBL up2Hi<>(SB), RODATA|NOPTR, $64

// func up2x2AVX512(dst, src *uint32, rows, w int)
// Nearest 2x2 enlargement of rows rows of w 4-byte elements: input row r
// becomes output rows 2r and 2r+1 (2w elements each), every element
// written twice along the row. Loads and stores are masked at the row
// ends: nothing past the rows is read or written.
TEXT ·up2x2AVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rows+16(FP), R8
	MOVQ w+24(FP), R9
	VMOVDQU32 up2Lo<>(SB), Z30
	VMOVDQU32 up2Hi<>(SB), Z31
	MOVQ R9, R10
	SHLQ $3, R10 // output row bytes (2w elements)
urow:
	TESTQ R8, R8
	JZ udone
	MOVQ R9, CX
	MOVQ DI, R11 // first output row; second at R11+R10
uchunk:
	CMPQ CX, $16
	JLT utail
	VMOVDQU32 (SI), Z0
	VPERMD Z0, Z30, Z1
	VPERMD Z0, Z31, Z2
	VMOVDQU32 Z1, (R11)
	VMOVDQU32 Z2, 64(R11)
	VMOVDQU32 Z1, (R11)(R10*1)
	VMOVDQU32 Z2, 64(R11)(R10*1)
	ADDQ $64, SI
	ADDQ $128, R11
	SUBQ $16, CX
	JMP uchunk
utail:
	TESTQ CX, CX
	JZ unext
	// K1: the CX input lanes; K2, K3: the 2*CX output lanes
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
	MOVQ $1, AX
	SHLQ CX, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K2
	SHRQ $16, AX
	KMOVW AX, K3
	VMOVDQU32.Z (SI), K1, Z0
	VPERMD Z0, Z30, Z1
	VPERMD Z0, Z31, Z2
	VMOVDQU32 Z1, K2, (R11)
	VMOVDQU32 Z2, K3, 64(R11)
	VMOVDQU32 Z1, K2, (R11)(R10*1)
	VMOVDQU32 Z2, K3, 64(R11)(R10*1)
	SHLQ $2, CX
	ADDQ CX, SI
unext:
	LEAQ (DI)(R10*2), DI
	DECQ R8
	JMP urow
udone:
	VZEROUPPER
	RET
