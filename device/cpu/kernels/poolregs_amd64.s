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

// func poolS2AVX512(y, x *float32, tab *int, blk *uint16, inv *float32, planes, rows, nblk, xPlane, yPlane, k, w, b0, nint, rn, rxoff, ryoff, rinv, rstep, ow, rreuse, strip int, avg bool)
//
// planes planes of a 2-D MaxPool (AveragePool when avg) with a horizontal
// stride of 2 and a window k (2 or 3) columns wide, the window's rows and
// columns reduced in registers. Plane p reads x[p*xPlane:] and writes
// y[p*yPlane:]. Output row i (of rows) is tab[5i:5i+5]: the element offset
// of its block 0 (the first window row's column -padL), the number n of
// window rows inside the input (0: the row is the fill value), the offset
// in inv of its divisors (avg), the offset of the output row in y, and
// whether blocks b0 .. b0+nint run the interior loop (n = k, and those
// blocks' columns and outputs all inside). Each row is nblk blocks of 16
// outputs; block b reads the columns from 32b-padL on, three vectors A, B,
// C (C only for lane 0, the third tap of output 15) whose valid lanes (the
// columns inside the input) are blk[8b], blk[8b+1] and blk[8b+2];
// blk[8b+3] masks the outputs stored and blk[8b+4] is nonzero where some
// lane is not valid (MaxPool then sets those lanes to -Inf before the
// horizontal pass; AveragePool's zeros are already right). Each output is
// the max (or the sum times inv) of the evens, the odds and, for k = 3, the
// evens one further on of the vertical result. The interior loop is the
// same without masks, with the n rows unrolled. The rn regular rows (n = k,
// the same divisors, the input rows rstep elements apart: rows of the
// window inside the input; tab[5i+4] = 2) are skipped by the row loop and
// run after it block by block, each block down all of them with its masks
// loaded once (unmasked where blk[8b+5] says every lane is valid): block 0
// of the first reads x from rxoff and writes y from ryoff, its divisors from
// inv[rinv:]; output rows are ow elements apart. With rreuse set (3 rows
// each, 2 rows apart) the last row of one output row's window is kept in
// registers as the first of the next one's. The column pass runs the regular
// rows in strips of up to strip rows (all the blocks of a strip, then the
// next strip), so that a strip's input rows stay in L1 across its blocks.
TEXT ·poolS2AVX512(SB), NOSPLIT, $32-177
	VMOVDQU32 poolRegEven<>(SB), Z31
	VMOVDQU32 poolRegOdd<>(SB), Z29
	MOVBLZX avg+176(FP), CX
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
	// R10: bytes per input row
	MOVQ w+88(FP), R10
	SHLQ $2, R10
s2row:
	TESTQ R13, R13
	JZ s2col
	CMPQ 32(R12), $2
	JEQ s2rowdone
	MOVQ 0(R12), SI
	MOVQ 8(R12), BX
	MOVQ 16(R12), R9
	MOVQ 24(R12), DI
	MOVQ y+0(FP), AX
	LEAQ (AX)(DI*4), DI
	MOVQ blk+24(FP), R14
	MOVQ nblk+56(FP), R8
	TESTQ BX, BX
	JZ s2fill
	MOVQ x+8(FP), AX
	LEAQ (AX)(SI*4), SI
	MOVQ inv+32(FP), AX
	LEAQ (AX)(R9*4), R9
	// DX: the phase (0: the whole row masked; 1: blocks before the
	// interior ones, then the interior, then phase 2: the blocks after)
	XORQ DX, DX
	CMPQ 32(R12), $0
	JEQ s2gen
	MOVQ $1, DX
	MOVQ b0+96(FP), R8
s2gen:
	TESTQ R8, R8
	JZ s2phase
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
	CMPQ k+80(FP), $2
	JEQ s2hmax2
	VALIGND $1, Z0, Z2, Z2
	VMAXPS Z2, Z0, Z0
s2hmax2:
	VMAXPS Z3, Z0, Z0
	JMP s2st
s2hadd:
	CMPQ k+80(FP), $2
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
s2phase:
	CMPQ DX, $1
	JNE s2rowdone
	// the interior blocks, then the rest masked
	MOVQ nint+104(FP), R8
	MOVQ R8, AX
	SHLQ $4, AX
	ADDQ AX, R14
	CMPQ k+80(FP), $2
	JEQ s2i2
	TESTQ CX, CX
	JNZ s2iadd3
s2imax3:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVSS 128(SI), X2
	VMAXPS (SI)(R10*1), Z0, Z0
	VMAXPS 64(SI)(R10*1), Z1, Z1
	VMAXSS 128(SI)(R10*1), X2, X2
	VMAXPS (SI)(R10*2), Z0, Z0
	VMAXPS 64(SI)(R10*2), Z1, Z1
	VMAXSS 128(SI)(R10*2), X2, X2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VMAXPS Z2, Z0, Z0
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $128, SI
	ADDQ $64, DI
	DECQ R8
	JNZ s2imax3
	JMP s2rest
s2iadd3:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVSS 128(SI), X2
	VADDPS (SI)(R10*1), Z0, Z0
	VADDPS 64(SI)(R10*1), Z1, Z1
	VADDSS 128(SI)(R10*1), X2, X2
	VADDPS (SI)(R10*2), Z0, Z0
	VADDPS 64(SI)(R10*2), Z1, Z1
	VADDSS 128(SI)(R10*2), X2, X2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VADDPS Z2, Z0, Z0
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, R9
	ADDQ $128, SI
	ADDQ $64, DI
	DECQ R8
	JNZ s2iadd3
	JMP s2rest
s2i2:
	TESTQ CX, CX
	JNZ s2iadd2
s2imax2:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMAXPS (SI)(R10*1), Z0, Z0
	VMAXPS 64(SI)(R10*1), Z1, Z1
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $128, SI
	ADDQ $64, DI
	DECQ R8
	JNZ s2imax2
	JMP s2rest
s2iadd2:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VADDPS (SI)(R10*1), Z0, Z0
	VADDPS 64(SI)(R10*1), Z1, Z1
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, R9
	ADDQ $128, SI
	ADDQ $64, DI
	DECQ R8
	JNZ s2iadd2
s2rest:
	MOVQ $2, DX
	MOVQ nblk+56(FP), R8
	SUBQ b0+96(FP), R8
	SUBQ nint+104(FP), R8
	JMP s2gen
s2fill:
	KMOVW 6(R14), K4
	VMOVUPS Z30, K4, (DI)
	ADDQ $64, DI
	ADDQ $16, R14
	DECQ R8
	JNZ s2fill
s2rowdone:
	ADDQ $40, R12
	DECQ R13
	JMP s2row
	// the column pass: the regular rows (rows r0 .. r0+rn, each n = k
	// rows from rxoff + (i-r0)*rstep), block by block, each block down
	// all those rows with its masks loaded once
s2col:
	MOVQ rn+112(FP), AX
	TESTQ AX, AX
	JZ s2nextplane
	MOVQ AX, left-24(SP)
	MOVQ x+8(FP), R12
	MOVQ rxoff+120(FP), AX
	LEAQ (R12)(AX*4), R12
	MOVQ R12, sx-8(SP)
	MOVQ y+0(FP), R13
	MOVQ ryoff+128(FP), AX
	LEAQ (R13)(AX*4), R13
	MOVQ R13, sy-16(SP)
	MOVQ rstep+144(FP), BX
	SHLQ $2, BX
	MOVQ ow+152(FP), DX
	SHLQ $2, DX
s2strip:
	// the next strip of up to strip rows: every block down its rows
	MOVQ left-24(SP), AX
	MOVQ strip+168(FP), R11
	CMPQ AX, R11
	CMOVQLT AX, R11
	MOVQ R11, cnt-32(SP)
	MOVQ sx-8(SP), R12
	MOVQ sy-16(SP), R13
	MOVQ blk+24(FP), R14
	MOVQ nblk+56(FP), R8
	MOVQ inv+32(FP), R9
	MOVQ rinv+136(FP), AX
	LEAQ (R9)(AX*4), R9
s2cblk:
	KMOVW 0(R14), K1
	KMOVW 2(R14), K2
	KMOVW 4(R14), K3
	KMOVW 6(R14), K4
	MOVQ R12, SI
	MOVQ R13, DI
	MOVQ cnt-32(SP), R11
	CMPQ rreuse+160(FP), $0
	JEQ s2cnoreuse
	CMPW 10(R14), $0
	JEQ s2crmasked
	TESTQ CX, CX
	JNZ s2criaddp
	JMP s2crimaxp
s2crmasked:
	TESTQ CX, CX
	JNZ s2crmaddp
	JMP s2crmmaxp
s2cnoreuse:
	CMPW 10(R14), $0
	JEQ s2cmasked
	CMPQ k+80(FP), $2
	JEQ s2ci2
	TESTQ CX, CX
	JNZ s2ciadd3
	JMP s2cimax3
s2ci2:
	TESTQ CX, CX
	JNZ s2ciadd2
	JMP s2cimax2
s2cmasked:
	CMPQ k+80(FP), $2
	JEQ s2cm2
	TESTQ CX, CX
	JNZ s2cmadd3
	JMP s2cmmax3
s2cm2:
	TESTQ CX, CX
	JNZ s2cmadd2
	JMP s2cmmax2
s2crimaxp:
	VMOVUPS (SI), Z4
	VMOVUPS 64(SI), Z5
	VMOVSS 128(SI), X6
s2crimax:
	VMAXPS (SI)(R10*1), Z4, Z0
	VMAXPS 64(SI)(R10*1), Z5, Z1
	VMAXSS 128(SI)(R10*1), X6, X2
	VMOVUPS (SI)(R10*2), Z4
	VMOVUPS 64(SI)(R10*2), Z5
	VMOVSS 128(SI)(R10*2), X6
	VMAXPS Z4, Z0, Z0
	VMAXPS Z5, Z1, Z1
	VMAXPS Z6, Z2, Z2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VMAXPS Z2, Z0, Z0
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2crimax
	JMP s2cnext
s2crmmaxp:
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z 64(SI), K2, Z5
	VMOVUPS.Z 128(SI), K3, Z6
s2crmmax:
	VMAXPS.Z (SI)(R10*1), Z4, K1, Z0
	VMAXPS.Z 64(SI)(R10*1), Z5, K2, Z1
	VMAXPS.Z 128(SI)(R10*1), Z6, K3, Z2
	VMOVUPS.Z (SI)(R10*2), K1, Z4
	VMOVUPS.Z 64(SI)(R10*2), K2, Z5
	VMOVUPS.Z 128(SI)(R10*2), K3, Z6
	VMAXPS Z4, Z0, Z0
	VMAXPS Z5, Z1, Z1
	VMAXPS Z6, Z2, Z2
	VBLENDMPS Z0, Z30, K1, Z0
	VBLENDMPS Z1, Z30, K2, Z1
	VBLENDMPS Z2, Z30, K3, Z2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VMAXPS Z2, Z0, Z0
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, K4, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2crmmax
	JMP s2cnext
s2criaddp:
	VMOVUPS (SI), Z4
	VMOVUPS 64(SI), Z5
	VMOVSS 128(SI), X6
s2criadd:
	VADDPS (SI)(R10*1), Z4, Z0
	VADDPS 64(SI)(R10*1), Z5, Z1
	VADDSS 128(SI)(R10*1), X6, X2
	VMOVUPS (SI)(R10*2), Z4
	VMOVUPS 64(SI)(R10*2), Z5
	VMOVSS 128(SI)(R10*2), X6
	VADDPS Z4, Z0, Z0
	VADDPS Z5, Z1, Z1
	VADDPS Z6, Z2, Z2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VADDPS Z2, Z0, Z0
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2criadd
	JMP s2cnext
s2crmaddp:
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z 64(SI), K2, Z5
	VMOVUPS.Z 128(SI), K3, Z6
s2crmadd:
	VADDPS.Z (SI)(R10*1), Z4, K1, Z0
	VADDPS.Z 64(SI)(R10*1), Z5, K2, Z1
	VADDPS.Z 128(SI)(R10*1), Z6, K3, Z2
	VMOVUPS.Z (SI)(R10*2), K1, Z4
	VMOVUPS.Z 64(SI)(R10*2), K2, Z5
	VMOVUPS.Z 128(SI)(R10*2), K3, Z6
	VADDPS Z4, Z0, Z0
	VADDPS Z5, Z1, Z1
	VADDPS Z6, Z2, Z2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VADDPS Z2, Z0, Z0
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	VMOVUPS Z0, K4, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2crmadd
	JMP s2cnext
s2cimax3:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVSS 128(SI), X2
	VMAXPS (SI)(R10*1), Z0, Z0
	VMAXPS 64(SI)(R10*1), Z1, Z1
	VMAXSS 128(SI)(R10*1), X2, X2
	VMAXPS (SI)(R10*2), Z0, Z0
	VMAXPS 64(SI)(R10*2), Z1, Z1
	VMAXSS 128(SI)(R10*2), X2, X2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VMAXPS Z2, Z0, Z0
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2cimax3
	JMP s2cnext
s2cmmax3:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMOVUPS.Z 128(SI), K3, Z2
	VMAXPS.Z (SI)(R10*1), Z0, K1, Z0
	VMAXPS.Z 64(SI)(R10*1), Z1, K2, Z1
	VMAXPS.Z 128(SI)(R10*1), Z2, K3, Z2
	VMAXPS.Z (SI)(R10*2), Z0, K1, Z0
	VMAXPS.Z 64(SI)(R10*2), Z1, K2, Z1
	VMAXPS.Z 128(SI)(R10*2), Z2, K3, Z2
	VBLENDMPS Z0, Z30, K1, Z0
	VBLENDMPS Z1, Z30, K2, Z1
	VBLENDMPS Z2, Z30, K3, Z2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VMAXPS Z2, Z0, Z0
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, K4, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2cmmax3
	JMP s2cnext
s2ciadd3:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVSS 128(SI), X2
	VADDPS (SI)(R10*1), Z0, Z0
	VADDPS 64(SI)(R10*1), Z1, Z1
	VADDSS 128(SI)(R10*1), X2, X2
	VADDPS (SI)(R10*2), Z0, Z0
	VADDPS 64(SI)(R10*2), Z1, Z1
	VADDSS 128(SI)(R10*2), X2, X2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VADDPS Z2, Z0, Z0
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2ciadd3
	JMP s2cnext
s2cmadd3:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMOVUPS.Z 128(SI), K3, Z2
	VADDPS.Z (SI)(R10*1), Z0, K1, Z0
	VADDPS.Z 64(SI)(R10*1), Z1, K2, Z1
	VADDPS.Z 128(SI)(R10*1), Z2, K3, Z2
	VADDPS.Z (SI)(R10*2), Z0, K1, Z0
	VADDPS.Z 64(SI)(R10*2), Z1, K2, Z1
	VADDPS.Z 128(SI)(R10*2), Z2, K3, Z2
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VALIGND $1, Z0, Z2, Z2
	VADDPS Z2, Z0, Z0
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	VMOVUPS Z0, K4, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2cmadd3
	JMP s2cnext
s2cimax2:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMAXPS (SI)(R10*1), Z0, Z0
	VMAXPS 64(SI)(R10*1), Z1, Z1
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2cimax2
	JMP s2cnext
s2cmmax2:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMAXPS.Z (SI)(R10*1), Z0, K1, Z0
	VMAXPS.Z 64(SI)(R10*1), Z1, K2, Z1
	VBLENDMPS Z0, Z30, K1, Z0
	VBLENDMPS Z1, Z30, K2, Z1
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, K4, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2cmmax2
	JMP s2cnext
s2ciadd2:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VADDPS (SI)(R10*1), Z0, Z0
	VADDPS 64(SI)(R10*1), Z1, Z1
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2ciadd2
	JMP s2cnext
s2cmadd2:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VADDPS.Z (SI)(R10*1), Z0, K1, Z0
	VADDPS.Z 64(SI)(R10*1), Z1, K2, Z1
	VMOVAPS Z0, Z3
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z3
	VADDPS Z3, Z0, Z0
	VMULPS (R9), Z0, Z0
	VMOVUPS Z0, K4, (DI)
	ADDQ BX, SI
	ADDQ DX, DI
	DECQ R11
	JNZ s2cmadd2
	JMP s2cnext
s2cnext:
	ADDQ $128, R12
	ADDQ $64, R13
	ADDQ $64, R9
	ADDQ $16, R14
	DECQ R8
	JNZ s2cblk
	MOVQ cnt-32(SP), R11
	MOVQ R11, AX
	IMULQ BX, AX
	ADDQ AX, sx-8(SP)
	MOVQ R11, AX
	IMULQ DX, AX
	ADDQ AX, sy-16(SP)
	SUBQ R11, left-24(SP)
	JNZ s2strip

s2nextplane:
	// the next plane (x and y never point past their planes)
	DECQ planes+40(FP)
	JZ s2done
	MOVQ xPlane+64(FP), AX
	SHLQ $2, AX
	ADDQ AX, x+8(FP)
	MOVQ yPlane+72(FP), AX
	SHLQ $2, AX
	ADDQ AX, y+0(FP)
	JMP s2plane
s2done:
	VZEROUPPER
	RET

// func poolS1AVX512(y, x *float32, tab *int, blk *uint16, inv, idx *float32, planes, rows, nblk, xPlane, yPlane, k, w int, avg bool)
//
// planes planes of a 2-D MaxPool (AveragePool when avg) with a horizontal
// stride of 1 and a window k (1 to 17) columns wide, reduced in registers.
// Planes and tab are as in poolS2AVX512 (the fifth entry unused). The
// input row is read in chunks of 16 columns from -padL on: chunk c's valid
// lanes are blk[2c], and blk[2b+1] masks the outputs of block b (nblk+1
// chunks, nblk blocks). Each chunk is reduced over the window's rows once
// (MaxPool: lanes outside the input set to -Inf); the 16 outputs of block b
// are the max (or sum times inv) over the taps t < k of chunks b and b+1
// shifted by t, VPERMI2PS with idx[16(t-1):] (t, t+1, ... t+15).
TEXT ·poolS1AVX512(SB), NOSPLIT, $0-105
	MOVBLZX avg+104(FP), CX
	VPXORD Z30, Z30, Z30
	TESTQ CX, CX
	JNZ s1plane
	MOVL $0xff800000, AX
	VPBROADCASTD AX, Z30
s1plane:
	MOVQ planes+48(FP), AX
	TESTQ AX, AX
	JZ s1done
	MOVQ tab+16(FP), R12
	MOVQ rows+56(FP), R13
	MOVQ w+96(FP), R10
	SHLQ $2, R10
s1row:
	TESTQ R13, R13
	JZ s1nextplane
	MOVQ 0(R12), SI
	MOVQ 8(R12), BX
	MOVQ 16(R12), R9
	MOVQ 24(R12), DI
	MOVQ y+0(FP), AX
	LEAQ (AX)(DI*4), DI
	MOVQ blk+24(FP), R14
	MOVQ nblk+64(FP), R8
	TESTQ BX, BX
	JZ s1fill
	MOVQ x+8(FP), AX
	LEAQ (AX)(SI*4), SI
	MOVQ inv+32(FP), AX
	LEAQ (AX)(R9*4), R9
	// chunk 0 into Z0
	KMOVW 0(R14), K1
	VMOVUPS.Z (SI), K1, Z0
	MOVQ BX, R11
	MOVQ SI, AX
	DECQ R11
	JZ s1v0b
	TESTQ CX, CX
	JNZ s1v0add
s1v0max:
	ADDQ R10, AX
	VMAXPS.Z (AX), Z0, K1, Z0
	DECQ R11
	JNZ s1v0max
	JMP s1v0b
s1v0add:
	ADDQ R10, AX
	VADDPS.Z (AX), Z0, K1, Z0
	DECQ R11
	JNZ s1v0add
s1v0b:
	TESTQ CX, CX
	JNZ s1blk
	VBLENDMPS Z0, Z30, K1, Z0
s1blk:
	// chunk b+1 into Z1
	ADDQ $64, SI
	KMOVW 4(R14), K1
	KMOVW 2(R14), K4
	VMOVUPS.Z (SI), K1, Z1
	MOVQ BX, R11
	MOVQ SI, AX
	DECQ R11
	JZ s1v1b
	TESTQ CX, CX
	JNZ s1v1add
s1v1max:
	ADDQ R10, AX
	VMAXPS.Z (AX), Z1, K1, Z1
	DECQ R11
	JNZ s1v1max
	JMP s1v1b
s1v1add:
	ADDQ R10, AX
	VADDPS.Z (AX), Z1, K1, Z1
	DECQ R11
	JNZ s1v1add
s1v1b:
	TESTQ CX, CX
	JNZ s1taps
	VBLENDMPS Z1, Z30, K1, Z1
s1taps:
	// Z2: the outputs, the taps t = 1 .. k-1 from idx
	VMOVAPS Z0, Z2
	MOVQ k+88(FP), R11
	CMPQ R11, $3
	JEQ s1k3
	CMPQ R11, $5
	JEQ s1k5
	MOVQ idx+40(FP), AX
	DECQ R11
	JZ s1tdone
	TESTQ CX, CX
	JNZ s1tadd
s1tmax:
	VMOVDQU32 (AX), Z3
	VPERMI2PS Z1, Z0, Z3
	VMAXPS Z3, Z2, Z2
	ADDQ $64, AX
	DECQ R11
	JNZ s1tmax
	JMP s1tdone
s1tadd:
	VMOVDQU32 (AX), Z3
	VPERMI2PS Z1, Z0, Z3
	VADDPS Z3, Z2, Z2
	ADDQ $64, AX
	DECQ R11
	JNZ s1tadd
	JMP s1tdone
s1k3:
	// 3 and 5 taps: VALIGND by constant lanes, no index loads
	VALIGND $1, Z0, Z1, Z3
	VALIGND $2, Z0, Z1, Z4
	TESTQ CX, CX
	JNZ s1k3add
	VMAXPS Z3, Z2, Z2
	VMAXPS Z4, Z2, Z2
	JMP s1tdone
s1k3add:
	VADDPS Z3, Z2, Z2
	VADDPS Z4, Z2, Z2
	JMP s1tdone
s1k5:
	VALIGND $1, Z0, Z1, Z3
	VALIGND $2, Z0, Z1, Z4
	VALIGND $3, Z0, Z1, Z5
	VALIGND $4, Z0, Z1, Z6
	TESTQ CX, CX
	JNZ s1k5add
	VMAXPS Z3, Z2, Z2
	VMAXPS Z4, Z5, Z5
	VMAXPS Z6, Z2, Z2
	VMAXPS Z5, Z2, Z2
	JMP s1tdone
s1k5add:
	VADDPS Z3, Z2, Z2
	VADDPS Z4, Z5, Z5
	VADDPS Z6, Z2, Z2
	VADDPS Z5, Z2, Z2
s1tdone:
	TESTQ CX, CX
	JZ s1st
	VMULPS (R9), Z2, Z2
	ADDQ $64, R9
s1st:
	VMOVUPS Z2, K4, (DI)
	VMOVAPS Z1, Z0
	ADDQ $64, DI
	ADDQ $4, R14
	DECQ R8
	JNZ s1blk
	JMP s1rowdone
s1fill:
	KMOVW 2(R14), K4
	VMOVUPS Z30, K4, (DI)
	ADDQ $64, DI
	ADDQ $4, R14
	DECQ R8
	JNZ s1fill
s1rowdone:
	ADDQ $40, R12
	DECQ R13
	JMP s1row
s1nextplane:
	// the next plane (x and y never point past their planes)
	DECQ planes+48(FP)
	JZ s1done
	MOVQ xPlane+72(FP), AX
	SHLQ $2, AX
	ADDQ AX, x+8(FP)
	MOVQ yPlane+80(FP), AX
	SHLQ $2, AX
	ADDQ AX, y+0(FP)
	JMP s1plane
s1done:
	VZEROUPPER
	RET
