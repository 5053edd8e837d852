//go:build !amd64 || purego

package cpu

// prefetchPanel is nil: no prefetch instruction in assembly here.
var prefetchPanel func(p *float32, lines int)
