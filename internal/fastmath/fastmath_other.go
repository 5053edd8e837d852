//go:build !amd64 || purego

package fastmath

// Without the assembly loops every element takes the scalar path.

func expVec(dst, src []float32) int      { return 0 }
func sigmoidVec(dst, src []float32) int  { return 0 }
func siluVec(dst, src []float32) int     { return 0 }
func tanhVec(dst, src []float32) int     { return 0 }
func geluTanhVec(dst, src []float32) int { return 0 }
func erfVec(dst, src []float32) int      { return 0 }
func geluVec(dst, src []float32) int     { return 0 }

func expShiftedVec(dst, src []float32, scale, m float32) (int, float64) { return 0, 0 }

func maxVec(x []float32) (float32, int) { return 0, 0 }

func scaleAddVec(dst, src []float32, s float32, add []float32) int { return 0 }
