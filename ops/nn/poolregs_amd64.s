//go:build amd64 && !purego

#include "textflag.h"

// VPERMT2PS indices of the even and of the odd elements of two vectors.
DATA poolRegEven<>+0(SB)/8, $0x0000000200000000
DATA poolRegEven<>+8(SB)/8, $0x0000000600000004
DATA poolRegEven<>+16(SB)/8, $0x0000000a00000008
DATA poolRegEven<>+24(SB)/8, $0x0000000e0000000c
DATA poolRegEven<>+32(SB)/8, $0x0000001200000010
DATA poolRegEven<>+40(SB)/8, $0x0000001600000014
DATA poolRegEven<>+48(SB)/8, $0x0000001a00000018
DATA poolRegEven<>+56(SB)/8, $0x0000001e0000001c
GLOBL poolRegEven<>(SB), RODATA|NOPTR, $64

DATA poolRegOdd<>+0(SB)/8, $0x0000000300000001
DATA poolRegOdd<>+8(SB)/8, $0x0000000700000005
DATA poolRegOdd<>+16(SB)/8, $0x0000000b00000009
DATA poolRegOdd<>+24(SB)/8, $0x0000000f0000000d
DATA poolRegOdd<>+32(SB)/8, $0x0000001300000011
DATA poolRegOdd<>+40(SB)/8, $0x0000001700000015
DATA poolRegOdd<>+48(SB)/8, $0x0000001b00000019
DATA poolRegOdd<>+56(SB)/8, $0x0000001f0000001d
GLOBL poolRegOdd<>(SB), RODATA|NOPTR, $64

// One input row of the window into the three accumulators (op: VMAXPS or
// VADDPS; masked lanes read nothing).
#define S2ROW(op, base) \
	op (base), Z0, K1, Z0; \
	op 64(base), Z1, K2, Z1; \
	op 128(base), Z2, K3, Z2

// func poolS2AVX512(y, x *float32, tab *int, blk *uint16, inv *float32, planes, rows, nblk, xPlane, yPlane, k int, avg bool)
//
// planes planes of a 2-D MaxPool (AveragePool when avg) with a horizontal
// stride of 2 and a window k (2 or 3) columns wide, the window's rows and
// columns reduced in registers. Plane p reads x[p*xPlane:] and writes
// y[p*yPlane:]. Output row i (of rows) is tab[4i:4i+4]: the element offset
// of its block 0 (the first window row's column -padL), the number of window
// rows inside the input (0: the row is the fill value), the offset in inv of
// its divisors (avg) and the offset of the output row in y. Each row is nblk
// blocks of 16 outputs; block b reads the columns from 32b-padL on, three
// vectors A, B, C (C only for lane 0, the third tap of output 15) whose
// valid lanes (the columns inside the input) are blk[8b], blk[8b+1] and
// blk[8b+2]; blk[8b+3] masks the outputs stored and blk[8b+4] is nonzero
// where some lane is not valid (MaxPool then sets those lanes to -Inf
// before the horizontal pass; AveragePool's zeros are already right). Each
// output is the max (or the sum times inv) of the evens, the odds and, for
// k = 3, the evens one further on of the vertical result.
TEXT ·poolS2AVX512(SB), NOSPLIT, $0-97
	VMOVDQU32 poolRegEven<>(SB), Z31
	VMOVDQU32 poolRegOdd<>(SB), Z29
	MOVBLZX avg+96(FP), CX
	MOVQ k+80(FP), DX
	VPXORD Z30, Z30, Z30
	TESTQ CX, CX
	JNZ s2plane
	MOVL $0xff800000, AX
	VPBROADCASTD AX, Z30
s2plane:
	MOVQ planes+40(FP), AX
	TESTQ AX, AX
	JZ s2done
	MOVQ tab+16(FP), R12
	MOVQ rows+48(FP), R13
s2row:
	TESTQ R13, R13
	JZ s2nextplane
	MOVQ 0(R12), SI
	MOVQ 8(R12), BX
	MOVQ 16(R12), R9
	MOVQ 24(R12), DI
	MOVQ y+0(FP), AX
	LEAQ (AX)(DI*4), DI
	MOVQ nblk+56(FP), R8
	MOVQ blk+24(FP), R14
	TESTQ BX, BX
	JZ s2fill
	MOVQ x+8(FP), AX
	LEAQ (AX)(SI*4), SI
	MOVQ inv+32(FP), AX
	LEAQ (AX)(R9*4), R9
	// R10: bytes per input row
	MOVQ w+88(FP), R10
	SHLQ $2, R10
s2blk:
	KMOVW 0(R14), K1
	KMOVW 2(R14), K2
	KMOVW 4(R14), K3
	KMOVW 6(R14), K4
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMOVUPS.Z 128(SI), K3, Z2
	MOVQ BX, R11
	MOVQ SI, AX
	DECQ R11
	JZ s2h
	TESTQ CX, CX
	JNZ s2vadd
	CMPQ R11, $2
	JNE s2vmax
	// three rows: unrolled
	ADDQ R10, AX
	S2ROW(VMAXPS.Z, AX)
	ADDQ R10, AX
	S2ROW(VMAXPS.Z, AX)
	JMP s2h
s2vmax:
	ADDQ R10, AX
	S2ROW(VMAXPS.Z, AX)
	DECQ R11
	JNZ s2vmax
	JMP s2h
s2vadd:
	ADDQ R10, AX
	S2ROW(VADDPS.Z, AX)
	DECQ R11
	JNZ s2vadd
s2h:
	TESTQ CX, CX
	JNZ s2hperm
	CMPW 8(R14), $0
	JEQ s2hperm
	VBLENDMPS Z0, Z30, K1, Z0
	VBLENDMPS Z1, Z30, K2, Z1
	VBLENDMPS Z2, Z30, K3, Z2
s2hperm:
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	TESTQ CX, CX
	JNZ s2hadd
	CMPQ DX, $2
	JEQ s2hmax2
	VALIGND $1, Z0, Z2, Z2
	VMAXPS Z2, Z0, Z0
s2hmax2:
	VMAXPS Z3, Z0, Z0
	JMP s2st
s2hadd:
	CMPQ DX, $2
	JEQ s2hadd2
	VALIGND $1, Z0, Z2, Z2
	VADDPS Z2, Z0, Z0
s2hadd2:
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	ADDQ $64, R9
s2st:
	VMOVUPS Z0, K4, (DI)
	ADDQ $64, DI
	ADDQ $128, SI
	ADDQ $16, R14
	DECQ R8
	JNZ s2blk
	JMP s2rowdone
s2fill:
	KMOVW 6(R14), K4
	VMOVUPS Z30, K4, (DI)
	ADDQ $64, DI
	ADDQ $16, R14
	DECQ R8
	JNZ s2fill
s2rowdone:
	ADDQ $32, R12
	DECQ R13
	JMP s2row
s2nextplane:
	MOVQ xPlane+64(FP), AX
	SHLQ $2, AX
	ADDQ AX, x+8(FP)
	MOVQ yPlane+72(FP), AX
	SHLQ $2, AX
	ADDQ AX, y+0(FP)
	DECQ planes+40(FP)
	JMP s2plane
s2done:
	VZEROUPPER
	RET
