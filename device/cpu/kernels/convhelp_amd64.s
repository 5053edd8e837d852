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

// func gatherEvenAVX512(dst, src *float32, blocks int)
// dst[j] = src[2*j] for j < 16*blocks; reads src[0 : 32*blocks].
TEXT ·gatherEvenAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ blocks+16(FP), CX
	VMOVDQU32 poolEvenIdx<>(SB), Z31
gloop:
	TESTQ CX, CX
	JZ gdone
	VMOVUPS (SI), Z0
	VPERMT2PS 64(SI), Z31, Z0
	VMOVUPS Z0, (DI)
	ADDQ $128, SI
	ADDQ $64, DI
	DECQ CX
	JMP gloop
gdone:
	VZEROUPPER
	RET

// func addClampAVX512(dst, a, z *float32, n int, lo, hi float32, clamp bool)
// dst[i] = a[i] + z[i], clamped to [lo, hi] when clamp is set, for i < n.
TEXT ·addClampAVX512(SB), NOSPLIT, $0-41
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ z+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS lo+32(FP), Z30
	VBROADCASTSS hi+36(FP), Z31
	MOVBLZX clamp+40(FP), R8
aloop:
	CMPQ CX, $16
	JLT atail
	VMOVUPS (SI), Z0
	VADDPS (DX), Z0, Z0
	TESTQ R8, R8
	JZ astore
	VMAXPS Z30, Z0, Z0
	VMINPS Z31, Z0, Z0
astore:
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP aloop
atail:
	TESTQ CX, CX
	JZ adone
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (DX), K1, Z1
	VADDPS Z1, Z0, Z0
	TESTQ R8, R8
	JZ atstore
	VMAXPS Z30, Z0, Z0
	VMINPS Z31, Z0, Z0
atstore:
	VMOVUPS Z0, K1, (DI)
adone:
	VZEROUPPER
	RET

