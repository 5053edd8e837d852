//go:build amd64 && !purego

#include "textflag.h"

// func padPlaneAVX512(dst, src *float32, h, w, hq, wq, padTop, padLeft int, masks *uint16, nch int)
// dst (hq rows of wq floats) = src (h rows of w floats) at row padTop,
// column padLeft, zeros elsewhere. masks holds per 16-float chunk of a
// row the load mask (the lanes whose source column is inside the row: no
// other lane is read) and the store mask (the lanes inside the row).
TEXT ·padPlaneAVX512(SB), NOSPLIT, $0-80
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ h+16(FP), R8
	MOVQ w+24(FP), R9
	MOVQ hq+32(FP), R10
	MOVQ wq+40(FP), R11
	SHLQ $2, R11
	MOVQ padTop+48(FP), R12
	MOVQ padLeft+56(FP), R13
	SHLQ $2, R13
	SUBQ R13, SI
	MOVQ masks+64(FP), R15
	MOVQ nch+72(FP), R13
	VXORPS Z0, Z0, Z0
	XORQ R14, R14
pp_row:
	CMPQ R14, R10
	JGE pp_done
	MOVQ R14, AX
	SUBQ R12, AX
	XORQ DX, DX
	MOVQ DI, CX
	MOVQ R15, BX
	CMPQ AX, $0
	JLT pp_zero
	CMPQ AX, R8
	JGE pp_zero
	IMULQ R9, AX
	SHLQ $2, AX
	ADDQ SI, AX
pp_copy:
	CMPQ DX, R13
	JGE pp_next
	KMOVW 0(BX), K1
	KMOVW 2(BX), K2
	VMOVUPS.Z (AX), K1, Z1
	VMOVUPS Z1, K2, (CX)
	ADDQ $64, AX
	ADDQ $64, CX
	ADDQ $4, BX
	INCQ DX
	JMP pp_copy
pp_zero:
	CMPQ DX, R13
	JGE pp_next
	KMOVW 2(BX), K2
	VMOVUPS Z0, K2, (CX)
	ADDQ $64, CX
	ADDQ $4, BX
	INCQ DX
	JMP pp_zero
pp_next:
	ADDQ R11, DI
	INCQ R14
	JMP pp_row
pp_done:
	VZEROUPPER
	RET
