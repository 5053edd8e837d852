//go:build !amd64 || purego

package cpu

// int8Kernels lists the int8 kernels this CPU can run: the pure-Go one.
func int8Kernels() []*int8Kernel { return []*int8Kernel{int8GenericKernel} }

// quantImpls lists the quantizing loops this CPU can run: pure Go.
func quantImpls() []*quantImpl { return []*quantImpl{quantGo} }
