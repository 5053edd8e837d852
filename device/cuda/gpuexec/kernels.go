package gpuexec

import (
	"regexp"
	"sort"
	"strings"

	"github.com/kilnai/kiln/device/cuda"
)

var (
	// macroDef is a kernel-defining macro of the op sources: its name and
	// body (continuation lines joined).
	macroDef = regexp.MustCompile(`(?m)^#define (KILN_\w+)\(sfx[^)]*\)((?:.*\\\n)*.*)$`)
	// macroKernel is a kernel a macro body defines: its base name.
	macroKernel = regexp.MustCompile(`void (\w+)_##sfx\(`)
	// macroUse instantiates a macro for a suffix.
	macroUse = regexp.MustCompile(`(?m)^(KILN_\w+)\((\w+), [^)]*\)\s*$`)
	// namedUse instantiates one of nn.cu's macros that take the kernel's name.
	namedUse = regexp.MustCompile(`(?m)^(?:PERMUTE|COPYROWS|GATHER)\((\w+), [^)]*\)\s*$`)
	// plainKernel is a kernel defined without a macro.
	plainKernel = regexp.MustCompile(`(?m)^extern "C" __global__ void (\w+)\(`)
)

// opKernelNames lists the kernels of the op family sources
// (kernels/op_*.cu), read from the sources themselves: those defined
// directly and those the KILN_* macros define for each suffix they are
// instantiated with. The registry's kernels launch these besides those of
// cuda.KernelNames.
func opKernelNames() []string {
	var src strings.Builder
	for _, part := range strings.Split(cuda.KernelSource(), `#line 1 "kernels/`)[1:] {
		if strings.HasPrefix(part, "op") {
			src.WriteString(part)
		}
	}
	s := src.String()
	bases := map[string][]string{}
	for _, m := range macroDef.FindAllStringSubmatch(s, -1) {
		for _, k := range macroKernel.FindAllStringSubmatch(m[2], -1) {
			bases[m[1]] = append(bases[m[1]], k[1])
		}
	}
	var names []string
	for _, m := range macroUse.FindAllStringSubmatch(s, -1) {
		for _, b := range bases[m[1]] {
			names = append(names, b+"_"+m[2])
		}
	}
	for _, m := range namedUse.FindAllStringSubmatch(s, -1) {
		names = append(names, m[1])
	}
	for _, m := range plainKernel.FindAllStringSubmatch(s, -1) {
		names = append(names, m[1])
	}
	sort.Strings(names)
	return names
}
