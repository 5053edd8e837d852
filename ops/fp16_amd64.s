#include "textflag.h"

// Constants of f16cNarrow, broadcast from here.
DATA fp16c<>+0(SB)/4, $0x7fffffff  // abs mask
DATA fp16c<>+4(SB)/4, $0x477ff000  // 65520: rounds to infinity from here
DATA fp16c<>+8(SB)/4, $0x7f800000  // +Inf
DATA fp16c<>+12(SB)/4, $0x477fe000 // 65504, the largest finite float16
DATA fp16c<>+16(SB)/4, $0x80000000 // sign mask
GLOBL fp16c<>(SB), RODATA|NOPTR, $20

// func f16cWiden(dst *float32, src *uint16, n int)
TEXT ·f16cWiden(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX

loop:
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop
	VZEROUPPER
	RET

// func f16cNarrow(dst *uint16, src *float32, n int)
//
// Finite values that would round to infinity become +-65504 first.
TEXT ·f16cNarrow(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	SHRQ         $3, CX
	VBROADCASTSS fp16c<>+0(SB), Y8
	VBROADCASTSS fp16c<>+4(SB), Y9
	VBROADCASTSS fp16c<>+8(SB), Y10
	VBROADCASTSS fp16c<>+12(SB), Y11
	VBROADCASTSS fp16c<>+16(SB), Y12

loop:
	VMOVUPS   (SI), Y0
	VANDPS    Y8, Y0, Y1        // |x|
	VCMPPS    $0x1d, Y9, Y1, Y2 // |x| >= 65520 (false for NaN)
	VCMPPS    $0x0c, Y10, Y1, Y3 // |x| != Inf (false for NaN)
	VANDPS    Y3, Y2, Y2        // finite overflow
	VANDPS    Y12, Y0, Y4       // sign
	VORPS     Y11, Y4, Y4       // +-65504
	VBLENDVPS Y2, Y4, Y0, Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	DECQ      CX
	JNZ       loop
	VZEROUPPER
	RET
