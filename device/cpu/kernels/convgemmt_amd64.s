//go:build amd64 && !purego

#include "textflag.h"

// func gemmTOutAVX512(y, yt *float32, ldy, hw, nfull, tail, nj int, bias, z *float32, lo, hi float32, clamp bool)
//
// For each of nj output channels j (y and z rows hw floats apart, yt
// columns one float apart, bias one float apart): for the positions i <
// 16*nfull, and then the lanes of the mask tail of the next 16,
// y[j*hw+i] = clamp(yt[i*ldy+j] + bias[j] + z[j*hw+i]) (z nil: no
// residual; clamp false: no clamp to [lo, hi]). Chunks of 16 positions
// outside, channels inside: the chunk's 16 rows of yt stay in L1 while
// every channel gathers its column of them.
TEXT ·gemmTOutAVX512(SB), NOSPLIT, $0-81
	MOVQ         y+0(FP), DI
	MOVQ         yt+8(FP), SI
	MOVQ         ldy+16(FP), R8
	VPBROADCASTD R8, Z1
	VPMULLD      gt_iota<>(SB), Z1, Z1
	SHLQ         $6, R8
	MOVQ         hw+24(FP), R11
	SHLQ         $2, R11
	MOVQ         nfull+32(FP), R10
	MOVQ         tail+40(FP), AX
	KMOVW        AX, K3
	MOVL         $0xffff, AX
	KMOVW        AX, K4
	MOVQ         nj+48(FP), CX
	MOVQ         bias+56(FP), BX
	MOVQ         z+64(FP), DX
	VBROADCASTSS lo+72(FP), Z6
	VBROADCASTSS hi+76(FP), Z7
	MOVBQZX      clamp+80(FP), R12

out_chunk:
	KMOVW    K4, K5
	TESTQ    R10, R10
	JNZ      out_go
	KORTESTW K3, K3
	JZ       out_done
	KMOVW    K3, K5
	KXORW    K3, K3, K3

out_go:
	MOVQ SI, R13
	MOVQ DI, R14
	MOVQ DX, AX
	XORQ R9, R9

out_chan:
	CMPQ         R9, CX
	JGE          out_chunk_end
	KMOVW        K5, K1
	VXORPS       Z2, Z2, Z2
	VGATHERDPS   (R13)(Z1*4), K1, Z2
	VBROADCASTSS (BX)(R9*4), Z5
	VADDPS       Z5, Z2, Z2
	TESTQ        AX, AX
	JZ           out_noz
	VMOVUPS.Z    (AX), K5, Z3
	VADDPS       Z3, Z2, Z2
	ADDQ         R11, AX

out_noz:
	TESTQ  R12, R12
	JZ     out_store
	VMAXPS Z6, Z2, Z2
	VMINPS Z7, Z2, Z2

out_store:
	VMOVUPS Z2, K5, (R14)
	ADDQ    $4, R13
	ADDQ    R11, R14
	INCQ    R9
	JMP     out_chan

out_chunk_end:
	ADDQ  R8, SI
	ADDQ  $64, DI
	TESTQ DX, DX
	JZ    out_chunk_nz
	ADDQ  $64, DX

out_chunk_nz:
	TESTQ R10, R10
	JZ    out_chunk
	DECQ  R10
	JMP   out_chunk

out_done:
	VZEROUPPER
	RET

// func gemmTInAVX512(xt *float32, ldx int, x *float32, plane int, pos *int32, npos, mask int)
//
// For i < npos: xt[i*ldx+c] = x[c*plane+pos[i]] for the channels c < 16
// whose bit is set in mask (the other floats of xt are not written).
TEXT ·gemmTInAVX512(SB), NOSPLIT, $0-56
	MOVQ         xt+0(FP), DI
	MOVQ         ldx+8(FP), R8
	SHLQ         $2, R8
	MOVQ         x+16(FP), SI
	MOVQ         plane+24(FP), AX
	VPBROADCASTD AX, Z1
	VPMULLD      gt_iota<>(SB), Z1, Z1
	MOVQ         pos+32(FP), BX
	MOVQ         npos+40(FP), CX
	MOVQ         mask+48(FP), AX
	KMOVW        AX, K2

in_loop:
	TESTQ      CX, CX
	JZ         in_done
	MOVLQSX    (BX), R9
	LEAQ       (SI)(R9*4), R9
	KMOVW      K2, K1
	VGATHERDPS (R9)(Z1*4), K1, Z2
	VMOVUPS    Z2, K2, (DI)
	ADDQ       $4, BX
	ADDQ       R8, DI
	DECQ       CX
	JMP        in_loop

in_done:
	VZEROUPPER
	RET

// func gemmTIm2colAVX512(xt *float32, ldx int, src *float32, offs *int32, nfull, tail int, pos *int32, npos int)
//
// For i < npos: xt[i*ldx+q] = src[offs[q]+pos[i]] for q < 16*nfull and
// then for the lanes of the mask tail of the next 16.
TEXT ·gemmTIm2colAVX512(SB), NOSPLIT, $0-64
	MOVQ  xt+0(FP), DI
	MOVQ  ldx+8(FP), R8
	SHLQ  $2, R8
	MOVQ  src+16(FP), SI
	MOVQ  offs+24(FP), R10
	MOVQ  nfull+32(FP), R11
	MOVQ  tail+40(FP), AX
	KMOVW AX, K3
	MOVL  $0xffff, AX
	KMOVW AX, K4
	MOVQ  pos+48(FP), BX
	MOVQ  npos+56(FP), CX

im_pos:
	TESTQ        CX, CX
	JZ           im_done
	VPBROADCASTD (BX), Z1
	MOVQ         R10, R12
	MOVQ         DI, R13
	MOVQ         R11, R9

im_full:
	TESTQ      R9, R9
	JZ         im_tail
	VPADDD     (R12), Z1, Z2
	KMOVW      K4, K1
	VGATHERDPS (SI)(Z2*4), K1, Z3
	VMOVUPS    Z3, (R13)
	ADDQ       $64, R12
	ADDQ       $64, R13
	DECQ       R9
	JMP        im_full

im_tail:
	KORTESTW    K3, K3
	JZ          im_next
	VMOVDQU32.Z (R12), K3, Z2
	VPADDD      Z1, Z2, Z2
	KMOVW       K3, K1
	VGATHERDPS  (SI)(Z2*4), K1, Z3
	VMOVUPS     Z3, K3, (R13)

im_next:
	ADDQ $4, BX
	ADDQ R8, DI
	DECQ CX
	JMP  im_pos

im_done:
	VZEROUPPER
	RET

DATA gt_iota<>+0(SB)/4, $0
DATA gt_iota<>+4(SB)/4, $1
DATA gt_iota<>+8(SB)/4, $2
DATA gt_iota<>+12(SB)/4, $3
DATA gt_iota<>+16(SB)/4, $4
DATA gt_iota<>+20(SB)/4, $5
DATA gt_iota<>+24(SB)/4, $6
DATA gt_iota<>+28(SB)/4, $7
DATA gt_iota<>+32(SB)/4, $8
DATA gt_iota<>+36(SB)/4, $9
DATA gt_iota<>+40(SB)/4, $10
DATA gt_iota<>+44(SB)/4, $11
DATA gt_iota<>+48(SB)/4, $12
DATA gt_iota<>+52(SB)/4, $13
DATA gt_iota<>+56(SB)/4, $14
DATA gt_iota<>+60(SB)/4, $15
GLOBL gt_iota<>(SB), RODATA|NOPTR, $64
