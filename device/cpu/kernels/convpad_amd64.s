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
	MOVQ padTop+48(FP), R14
	SUBQ R14, R10
	NEGQ R14
	MOVQ padLeft+56(FP), R13
	SHLQ $2, R13
	SUBQ R13, SI
	MOVQ masks+64(FP), R15
	MOVQ nch+72(FP), R13
	// R12: the last row start whose chunks, stored whole, end within dst
	// (dst + hq*wq - 16*nch floats)
	MOVQ hq+32(FP), R12
	IMULQ R11, R12
	ADDQ DI, R12
	MOVQ R13, AX
	SHLQ $6, AX
	SUBQ AX, R12
	DECQ R13
	VXORPS Z0, Z0, Z0
	// R14 counts source rows from -padTop to hq-padTop (R10). A row
	// stores its last chunk whole when that ends within dst (its lanes
	// past the row land in the rows after it, written later: a masked
	// store costs more than a load and a plain store together); the last
	// rows' last chunk stores under its mask, so that nothing past dst is
	// written.
pp_row:
	CMPQ R14, R10
	JGE pp_done
	MOVQ R14, AX
	XORQ DX, DX
	MOVQ DI, CX
	MOVQ R15, BX
	KXNORW K2, K2, K2
	CMPQ DI, R12
	JLE pp_mask
	MOVQ R13, DX
	SHLQ $2, DX
	KMOVW 2(BX)(DX*1), K2
	XORQ DX, DX
pp_mask:
	CMPQ AX, $0
	JLT pp_zero
	CMPQ AX, R8
	JGE pp_zero
	IMULQ R9, AX
	SHLQ $2, AX
	ADDQ SI, AX
pp_copy:
	CMPQ DX, R13
	JGE pp_copylast
	KMOVW 0(BX), K1
	VMOVUPS.Z (AX), K1, Z1
	VMOVUPS Z1, (CX)
	ADDQ $64, AX
	ADDQ $64, CX
	ADDQ $4, BX
	INCQ DX
	JMP pp_copy
pp_copylast:
	KMOVW 0(BX), K1
	VMOVUPS.Z (AX), K1, Z1
	VMOVUPS Z1, K2, (CX)
	JMP pp_next
pp_zero:
	CMPQ DX, R13
	JGE pp_zerolast
	VMOVUPS Z0, (CX)
	ADDQ $64, CX
	INCQ DX
	JMP pp_zero
pp_zerolast:
	VMOVUPS Z0, K2, (CX)
pp_next:
	ADDQ R11, DI
	INCQ R14
	JMP pp_row
pp_done:
	VZEROUPPER
	RET

// func padPlaneSmallAVX512(dst, src *float32, h, w, hq, wq, padTop, padLeft int, masks *uint16, nch int)
// padPlaneAVX512 for rows of at most 3 chunks (wq <= 48): the chunks' load
// masks and the last chunk's store mask stay in K registers for the whole
// plane instead of being loaded for every chunk of every row.
TEXT ·padPlaneSmallAVX512(SB), NOSPLIT, $0-80
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ h+16(FP), R8
	MOVQ w+24(FP), R9
	SHLQ $2, R9
	MOVQ hq+32(FP), R10
	MOVQ wq+40(FP), R11
	SHLQ $2, R11
	MOVQ padTop+48(FP), R14
	SUBQ R14, R10
	NEGQ R14
	MOVQ padLeft+56(FP), R13
	SHLQ $2, R13
	SUBQ R13, SI
	MOVQ masks+64(FP), BX
	MOVQ nch+72(FP), R13
	MOVQ hq+32(FP), R12
	IMULQ R11, R12
	ADDQ DI, R12
	MOVQ R13, AX
	SHLQ $6, AX
	SUBQ AX, R12
	// K3-K5: the load masks of chunks 0-2; K6 the last chunk's store mask
	KMOVW 0(BX), K3
	KMOVW 4(BX), K4
	KMOVW 8(BX), K5
	MOVQ R13, AX
	SHLQ $2, AX
	KMOVW -2(BX)(AX*1), K6
	// the source row of dst's first row
	MOVQ R14, AX
	IMULQ R9, AX
	ADDQ SI, AX
	VXORPS Z0, Z0, Z0
	CMPQ R13, $2
	JLT pps_n1
	JEQ pps_n2
	JMP pps_n3
pps_n1:
pps1_row:
	CMPQ R14, R10
	JGE pps_done
	CMPQ R14, $0
	JLT pps1_zero
	CMPQ R14, R8
	JGE pps1_zero
	VMOVUPS.Z 0(AX), K3, Z1
	CMPQ DI, R12
	JGT pps1_clast
	VMOVUPS Z1, 0(DI)
	JMP pps1_next
pps1_clast:
	VMOVUPS Z1, K6, 0(DI)
	JMP pps1_next
pps1_zero:
	CMPQ DI, R12
	JGT pps1_zlast
	VMOVUPS Z0, 0(DI)
	JMP pps1_next
pps1_zlast:
	VMOVUPS Z0, K6, 0(DI)
pps1_next:
	ADDQ R11, DI
	ADDQ R9, AX
	INCQ R14
	JMP pps1_row
pps_n2:
pps2_row:
	CMPQ R14, R10
	JGE pps_done
	CMPQ R14, $0
	JLT pps2_zero
	CMPQ R14, R8
	JGE pps2_zero
	VMOVUPS.Z 0(AX), K3, Z1
	VMOVUPS.Z 64(AX), K4, Z2
	VMOVUPS Z1, 0(DI)
	CMPQ DI, R12
	JGT pps2_clast
	VMOVUPS Z2, 64(DI)
	JMP pps2_next
pps2_clast:
	VMOVUPS Z2, K6, 64(DI)
	JMP pps2_next
pps2_zero:
	VMOVUPS Z0, 0(DI)
	CMPQ DI, R12
	JGT pps2_zlast
	VMOVUPS Z0, 64(DI)
	JMP pps2_next
pps2_zlast:
	VMOVUPS Z0, K6, 64(DI)
pps2_next:
	ADDQ R11, DI
	ADDQ R9, AX
	INCQ R14
	JMP pps2_row
pps_n3:
pps3_row:
	CMPQ R14, R10
	JGE pps_done
	CMPQ R14, $0
	JLT pps3_zero
	CMPQ R14, R8
	JGE pps3_zero
	VMOVUPS.Z 0(AX), K3, Z1
	VMOVUPS.Z 64(AX), K4, Z2
	VMOVUPS.Z 128(AX), K5, Z3
	VMOVUPS Z1, 0(DI)
	VMOVUPS Z2, 64(DI)
	CMPQ DI, R12
	JGT pps3_clast
	VMOVUPS Z3, 128(DI)
	JMP pps3_next
pps3_clast:
	VMOVUPS Z3, K6, 128(DI)
	JMP pps3_next
pps3_zero:
	VMOVUPS Z0, 0(DI)
	VMOVUPS Z0, 64(DI)
	CMPQ DI, R12
	JGT pps3_zlast
	VMOVUPS Z0, 128(DI)
	JMP pps3_next
pps3_zlast:
	VMOVUPS Z0, K6, 128(DI)
pps3_next:
	ADDQ R11, DI
	ADDQ R9, AX
	INCQ R14
	JMP pps3_row
pps_done:
	VZEROUPPER
	RET

// func padPlaneS2AVX512(dst, src *float32, h, w, hq, wq, r0, c0 int, masks *uint16, nch int)
// dst row i, column j (hq rows of wq floats) = src[r0+2i][c0+2j] (src h
// rows of w floats) where that is inside src, else 0: one stride-2 phase
// plane of the direct convolution's input. masks holds per 16-float chunk
// of a dst row the masks of the two 16-float loads of the 32 source
// floats it takes the even ones of (the lanes inside the source row: no
// other lane is read) and the store mask (the lanes inside the dst row).
TEXT ·padPlaneS2AVX512(SB), NOSPLIT, $0-80
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ h+16(FP), R8
	MOVQ w+24(FP), R9
	MOVQ hq+32(FP), R10
	MOVQ wq+40(FP), R11
	SHLQ $2, R11
	MOVQ r0+48(FP), R12
	MOVQ c0+56(FP), AX
	SHLQ $2, AX
	ADDQ AX, SI
	MOVQ masks+64(FP), R15
	MOVQ nch+72(FP), R13
	VMOVDQU32 padEven<>(SB), Z31
	VXORPS Z0, Z0, Z0
	XORQ R14, R14
s2_row:
	CMPQ R14, R10
	JGE s2_done
	XORQ DX, DX
	MOVQ DI, CX
	MOVQ R15, BX
	CMPQ R12, $0
	JLT s2_zero
	CMPQ R12, R8
	JGE s2_zero
	MOVQ R12, AX
	IMULQ R9, AX
	SHLQ $2, AX
	ADDQ SI, AX
s2_copy:
	CMPQ DX, R13
	JGE s2_next
	KMOVW 0(BX), K1
	KMOVW 2(BX), K2
	KMOVW 4(BX), K3
	VMOVUPS.Z (AX), K1, Z1
	VMOVUPS.Z 64(AX), K2, Z2
	VPERMT2PS Z2, Z31, Z1
	VMOVUPS Z1, K3, (CX)
	ADDQ $128, AX
	ADDQ $64, CX
	ADDQ $6, BX
	INCQ DX
	JMP s2_copy
s2_zero:
	CMPQ DX, R13
	JGE s2_next
	KMOVW 4(BX), K3
	VMOVUPS Z0, K3, (CX)
	ADDQ $64, CX
	ADDQ $6, BX
	INCQ DX
	JMP s2_zero
s2_next:
	ADDQ R11, DI
	ADDQ $2, R12
	INCQ R14
	JMP s2_row
s2_done:
	VZEROUPPER
	RET

// VPERMT2PS indexes of the even lanes of a 32-float pair.
DATA padEven<>+0(SB)/4, $0
DATA padEven<>+4(SB)/4, $2
DATA padEven<>+8(SB)/4, $4
DATA padEven<>+12(SB)/4, $6
DATA padEven<>+16(SB)/4, $8
DATA padEven<>+20(SB)/4, $10
DATA padEven<>+24(SB)/4, $12
DATA padEven<>+28(SB)/4, $14
DATA padEven<>+32(SB)/4, $16
DATA padEven<>+36(SB)/4, $18
DATA padEven<>+40(SB)/4, $20
DATA padEven<>+44(SB)/4, $22
DATA padEven<>+48(SB)/4, $24
DATA padEven<>+52(SB)/4, $26
DATA padEven<>+56(SB)/4, $28
DATA padEven<>+60(SB)/4, $30
GLOBL padEven<>(SB), RODATA|NOPTR, $64

// func padPlaneS2x2AVX512(dst, src *float32, h, w, hq, wq, r0, c0 int, masks *uint16, nch, plane int)
// padPlaneS2AVX512 for the two column phases of a row phase at once: dst
// gets src[r0+2i][c0+2j] (the even lanes of each 32-float load) and
// dst[plane:] src[r0+2i][c0+1+2j] (the odd lanes of the same loads), so
// that each source row is read once, not once per column phase. masks are
// padPlaneS2AVX512's of c0 (the odd phase's last lane, 31, lies in the
// same two loads; a lane outside the source row loads as 0 for both).
TEXT ·padPlaneS2x2AVX512(SB), NOSPLIT, $0-88
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ plane+80(FP), R8
	SHLQ $2, R8
	MOVQ w+24(FP), R9
	MOVQ hq+32(FP), R10
	MOVQ wq+40(FP), R11
	SHLQ $2, R11
	MOVQ r0+48(FP), R12
	MOVQ c0+56(FP), AX
	SHLQ $2, AX
	ADDQ AX, SI
	MOVQ masks+64(FP), R15
	MOVQ nch+72(FP), R13
	VMOVDQU32 padEven<>(SB), Z31
	VMOVDQU32 padOdd<>(SB), Z30
	VXORPS Z0, Z0, Z0
	XORQ R14, R14
x2_row:
	CMPQ R14, R10
	JGE x2_done
	XORQ DX, DX
	MOVQ DI, CX
	MOVQ R15, BX
	CMPQ R12, $0
	JLT x2_zero
	CMPQ R12, h+16(FP)
	JGE x2_zero
	MOVQ R12, AX
	IMULQ R9, AX
	SHLQ $2, AX
	ADDQ SI, AX
x2_copy:
	CMPQ DX, R13
	JGE x2_next
	KMOVW 0(BX), K1
	KMOVW 2(BX), K2
	KMOVW 4(BX), K3
	VMOVUPS.Z (AX), K1, Z1
	VMOVUPS.Z 64(AX), K2, Z2
	VMOVAPS Z1, Z3
	VPERMT2PS Z2, Z31, Z1
	VPERMT2PS Z2, Z30, Z3
	VMOVUPS Z1, K3, (CX)
	VMOVUPS Z3, K3, (CX)(R8*1)
	ADDQ $128, AX
	ADDQ $64, CX
	ADDQ $6, BX
	INCQ DX
	JMP x2_copy
x2_zero:
	CMPQ DX, R13
	JGE x2_next
	KMOVW 4(BX), K3
	VMOVUPS Z0, K3, (CX)
	VMOVUPS Z0, K3, (CX)(R8*1)
	ADDQ $64, CX
	ADDQ $6, BX
	INCQ DX
	JMP x2_zero
x2_next:
	ADDQ R11, DI
	ADDQ $2, R12
	INCQ R14
	JMP x2_row
x2_done:
	VZEROUPPER
	RET

// VPERMT2PS indexes of the odd lanes of a 32-float pair.
DATA padOdd<>+0(SB)/4, $1
DATA padOdd<>+4(SB)/4, $3
DATA padOdd<>+8(SB)/4, $5
DATA padOdd<>+12(SB)/4, $7
DATA padOdd<>+16(SB)/4, $9
DATA padOdd<>+20(SB)/4, $11
DATA padOdd<>+24(SB)/4, $13
DATA padOdd<>+28(SB)/4, $15
DATA padOdd<>+32(SB)/4, $17
DATA padOdd<>+36(SB)/4, $19
DATA padOdd<>+40(SB)/4, $21
DATA padOdd<>+44(SB)/4, $23
DATA padOdd<>+48(SB)/4, $25
DATA padOdd<>+52(SB)/4, $27
DATA padOdd<>+56(SB)/4, $29
DATA padOdd<>+60(SB)/4, $31
GLOBL padOdd<>(SB), RODATA|NOPTR, $64
