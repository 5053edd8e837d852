//go:build !amd64 || purego

package kernels

import "testing"

func asmModes() []bool { return []bool{false} }

func setPoolAsm(*testing.T, bool) {}
