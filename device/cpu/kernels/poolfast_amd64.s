//go:build amd64 && !purego

#include "textflag.h"

// Index vector of VPERMT2PS that picks the even elements of two vectors.
DATA poolEvenIdx<>+0(SB)/8, $0x0000000200000000
DATA poolEvenIdx<>+8(SB)/8, $0x0000000600000004
DATA poolEvenIdx<>+16(SB)/8, $0x0000000a00000008
DATA poolEvenIdx<>+24(SB)/8, $0x0000000e0000000c
DATA poolEvenIdx<>+32(SB)/8, $0x0000001200000010
DATA poolEvenIdx<>+40(SB)/8, $0x0000001600000014
DATA poolEvenIdx<>+48(SB)/8, $0x0000001a00000018
DATA poolEvenIdx<>+56(SB)/8, $0x0000001e0000001c
GLOBL poolEvenIdx<>(SB), RODATA|NOPTR, $64

// Index vector of VPERMT2PS that picks the odd elements of two vectors.
DATA poolOddIdx<>+0(SB)/8, $0x0000000300000001
DATA poolOddIdx<>+8(SB)/8, $0x0000000700000005
DATA poolOddIdx<>+16(SB)/8, $0x0000000b00000009
DATA poolOddIdx<>+24(SB)/8, $0x0000000f0000000d
DATA poolOddIdx<>+32(SB)/8, $0x0000001300000011
DATA poolOddIdx<>+40(SB)/8, $0x0000001700000015
DATA poolOddIdx<>+48(SB)/8, $0x0000001b00000019
DATA poolOddIdx<>+56(SB)/8, $0x0000001f0000001d
GLOBL poolOddIdx<>(SB), RODATA|NOPTR, $64

// func poolVAVX512(dst, src *float32, n int, avg bool)
// dst[i] = max(dst[i], src[i]) (or dst[i] + src[i] when avg) for i < n.
TEXT ·poolVAVX512(SB), NOSPLIT, $0-25
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVBLZX avg+24(FP), DX
	TESTQ DX, DX
	JNZ vadd
vmax64:
	CMPQ CX, $64
	JLT vmax16
	VMOVUPS (DI), Z0
	VMOVUPS 64(DI), Z1
	VMOVUPS 128(DI), Z2
	VMOVUPS 192(DI), Z3
	VMAXPS (SI), Z0, Z0
	VMAXPS 64(SI), Z1, Z1
	VMAXPS 128(SI), Z2, Z2
	VMAXPS 192(SI), Z3, Z3
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	ADDQ $256, DI
	ADDQ $256, SI
	SUBQ $64, CX
	JMP vmax64
vmax16:
	CMPQ CX, $16
	JLT vmaxtail
	VMOVUPS (DI), Z0
	VMAXPS (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	ADDQ $64, SI
	SUBQ $16, CX
	JMP vmax16
vmaxtail:
	TESTQ CX, CX
	JZ vdone
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
	VMOVUPS.Z (DI), K1, Z0
	VMOVUPS.Z (SI), K1, Z1
	VMAXPS Z1, Z0, Z0
	VMOVUPS Z0, K1, (DI)
	JMP vdone
vadd:
	CMPQ CX, $16
	JLT vaddtail
	VMOVUPS (DI), Z0
	VADDPS (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	ADDQ $64, SI
	SUBQ $16, CX
	JMP vadd
vaddtail:
	TESTQ CX, CX
	JZ vdone
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
	VMOVUPS.Z (DI), K1, Z0
	VMOVUPS.Z (SI), K1, Z1
	VADDPS Z1, Z0, Z0
	VMOVUPS Z0, K1, (DI)
vdone:
	VZEROUPPER
	RET

// func poolHAVX512(dst, src *float32, n, k, stride int, avg bool)
// dst[j] = max (or sum when avg) of src[j*stride+t] for t < k, for j < n;
// stride is 1 or 2. It reads src up to element 32*ceil(n/16)+k+16.
TEXT ·poolHAVX512(SB), NOSPLIT, $0-41
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ k+24(FP), R8
	MOVQ stride+32(FP), R9
	MOVBLZX avg+40(FP), DX
	VMOVDQU32 poolEvenIdx<>(SB), Z31
	MOVQ $0xffff, AX
	KMOVW AX, K1
hblock:
	TESTQ CX, CX
	JLE hdone
	CMPQ CX, $16
	JGE hfull
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
hfull:
	// Z0: accumulator; R10: src of tap t; R11: taps left
	MOVQ SI, R10
	MOVQ R8, R11
	CMPQ R9, $2
	JEQ hs2first
	VMOVUPS (R10), Z0
	JMP hnext
hs2first:
	VMOVUPS (R10), Z0
	VPERMT2PS 64(R10), Z31, Z0
hnext:
	ADDQ $4, R10
	DECQ R11
	JZ hstore
	CMPQ R9, $2
	JEQ hs2
	VMOVUPS (R10), Z1
	JMP hred
hs2:
	VMOVUPS (R10), Z1
	VPERMT2PS 64(R10), Z31, Z1
hred:
	TESTQ DX, DX
	JNZ hadd
	VMAXPS Z1, Z0, Z0
	JMP hnext
hadd:
	VADDPS Z1, Z0, Z0
	JMP hnext
hstore:
	VMOVUPS Z0, K1, (DI)
	ADDQ $64, DI
	// src advances 16*stride floats
	MOVQ R9, AX
	SHLQ $6, AX
	ADDQ AX, SI
	SUBQ $16, CX
	JMP hblock
hdone:
	VZEROUPPER
	RET

// func maxPoolPlaneAVX512(y, x, buf *float32, tab *int, rows, w, ow, k, stride, padL, bufLen int)
// One plane of a 2-D MaxPool, every output row in one call: for output row
// i, tab[2i] is the element offset in x of the first input row of its
// window and tab[2i+1] how many rows of the window lie inside the input (0:
// the row is -Inf). The window's rows are reduced with VMAXPS into a row
// buffer at padL (masked loads and stores, nothing read past the row), then
// each of the ow outputs is the max of k elements of that buffer from
// j*stride (stride 1 or 2), as poolHAVX512. buf holds two row buffers of
// bufLen (at least poolHSrcLen(ow, k, stride)) used in turn: the vertical
// pass of row i runs before the horizontal pass of row i-1, so the
// horizontal loads, which straddle the vertical pass's stores, do not wait
// for them. Elements of buf outside [padL, padL+w) of each half must hold
// -Inf (the pads and ceil_mode's overhang).
TEXT ·maxPoolPlaneAVX512(SB), NOSPLIT, $0-88
	MOVQ tab+24(FP), R12
	VMOVDQU32 poolEvenIdx<>(SB), Z31
	VMOVDQU32 poolOddIdx<>(SB), Z29
	MOVL $0xff800000, AX
	VPBROADCASTD AX, Z30
	MOVQ buf+16(FP), R14
	MOVQ bufLen+80(FP), AX
	LEAQ (R14)(AX*4), R9
	XORQ R13, R13
prow:
	// vertical pass of row R13 into R14 (none past the last row or for a
	// row outside the input)
	MOVQ rows+32(FP), AX
	CMPQ R13, AX
	JGE phstart
	MOVQ 0(R12), SI
	MOVQ 8(R12), DX
	TESTQ DX, DX
	JZ phstart
	// SI: input chunk; R8: buffer chunk; R10: row bytes; CX: elements left
	MOVQ x+8(FP), AX
	LEAQ (AX)(SI*4), SI
	MOVQ padL+72(FP), AX
	LEAQ (R14)(AX*4), R8
	MOVQ w+40(FP), CX
	MOVQ CX, R10
	SHLQ $2, R10
	MOVQ $0xffff, AX
	KMOVW AX, K1
pv:
	TESTQ CX, CX
	JLE phstart
	CMPQ CX, $16
	JGE pvfull
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
pvfull:
	VMOVUPS.Z (SI), K1, Z0
	CMPQ DX, $3
	JNE pvloop
	// three rows (3x3 windows inside the input): no loop
	VMOVUPS.Z (SI)(R10*1), K1, Z1
	VMOVUPS.Z (SI)(R10*2), K1, Z2
	VMAXPS Z1, Z0, Z0
	VMAXPS Z2, Z0, Z0
	JMP pvst
pvloop:
	MOVQ SI, R11
	MOVQ DX, BX
pvt:
	DECQ BX
	JZ pvst
	ADDQ R10, R11
	VMOVUPS.Z (R11), K1, Z1
	VMAXPS Z1, Z0, Z0
	JMP pvt
pvst:
	VMOVUPS Z0, K1, (R8)
	ADDQ $64, SI
	ADDQ $64, R8
	SUBQ $16, CX
	JMP pv
phstart:
	// horizontal pass of row R13-1 from R9 into its output row DI
	TESTQ R13, R13
	JZ pswap
	MOVQ R13, AX
	DECQ AX
	MOVQ ow+48(FP), CX
	IMULQ CX, AX
	MOVQ y+0(FP), DI
	LEAQ (DI)(AX*4), DI
	MOVQ $0xffff, AX
	KMOVW AX, K1
	MOVQ -8(R12), AX
	TESTQ AX, AX
	JNZ ph
pfill:
	TESTQ CX, CX
	JLE pswap
	CMPQ CX, $16
	JGE pfillst
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
pfillst:
	VMOVUPS Z30, K1, (DI)
	ADDQ $64, DI
	SUBQ $16, CX
	JMP pfill
ph:
	// SI: buffer block; R8: k; R10: tap src; R11: taps left; BX: stride
	MOVQ R9, SI
	MOVQ k+56(FP), R8
	MOVQ stride+64(FP), BX
hb:
	TESTQ CX, CX
	JLE pswap
	CMPQ CX, $16
	JGE hf
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
hf:
	MOVQ SI, R10
	MOVQ R8, R11
	CMPQ BX, $2
	JNE h1
	CMPQ R8, $3
	JNE h2
	// 3 taps, stride 2 (the CNN stems): the evens and odds of 32
	// elements, and the evens one further on (the evens shifted by one
	// lane, the last lane element 32)
	VMOVUPS (R10), Z0
	VMOVUPS 64(R10), Z1
	VMOVUPS Z0, Z2
	VPERMT2PS Z1, Z31, Z0
	VPERMT2PS Z1, Z29, Z2
	VMOVUPS 128(R10), Z3
	VALIGND $1, Z0, Z3, Z3
	VMAXPS Z2, Z0, Z0
	VMAXPS Z3, Z0, Z0
	JMP hst
h1:
	VMOVUPS (R10), Z0
h1n:
	ADDQ $4, R10
	DECQ R11
	JZ hst
	VMAXPS (R10), Z0, Z0
	JMP h1n
h2:
	VMOVUPS (R10), Z0
	VPERMT2PS 64(R10), Z31, Z0
h2n:
	ADDQ $4, R10
	DECQ R11
	JZ hst
	VMOVUPS (R10), Z1
	VPERMT2PS 64(R10), Z31, Z1
	VMAXPS Z1, Z0, Z0
	JMP h2n
hst:
	VMOVUPS Z0, K1, (DI)
	ADDQ $64, DI
	MOVQ BX, AX
	SHLQ $6, AX
	ADDQ AX, SI
	SUBQ $16, CX
	JMP hb
pswap:
	XCHGQ R9, R14
	ADDQ $16, R12
	INCQ R13
	MOVQ rows+32(FP), AX
	CMPQ R13, AX
	JLE prow
	VZEROUPPER
	RET
