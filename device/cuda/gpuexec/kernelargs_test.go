package gpuexec

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
)

// kernelParams reads the parameter kinds of the op family kernels from
// their sources (kernels/op_*.cu): for each kernel, one argKind a
// parameter (pointers argPtr, int argI32, long long argI64, float argF32).
// Kernels with other parameter types are left out.
func kernelParams(t *testing.T) map[string][]argKind {
	t.Helper()
	var src strings.Builder
	for _, part := range strings.Split(cuda.KernelSource(), `#line 1 "kernels/`)[1:] {
		if strings.HasPrefix(part, "op") {
			src.WriteString(part)
		}
	}
	s := strings.ReplaceAll(src.String(), "\\\n", " ")
	decl := regexp.MustCompile(`extern "C" __global__ void (\w+)\(([^)]*)\)`)
	macroDecl := regexp.MustCompile(`extern "C" __global__ void (\w+)_##sfx\(([^)]*)\)`)
	use := regexp.MustCompile(`(?m)^(KILN_\w+)\((\w+), [^)]*\)\s*$`)
	def := regexp.MustCompile(`(?m)^#define (KILN_\w+)\(sfx[^)]*\)(.*)$`)
	kinds := func(params string) ([]argKind, bool) {
		var out []argKind
		for _, p := range strings.Split(params, ",") {
			p = strings.TrimSpace(p)
			switch {
			case strings.Contains(p, "*"):
				out = append(out, argPtr)
			case strings.HasPrefix(p, "long long "):
				out = append(out, argI64)
			case strings.HasPrefix(p, "int "):
				out = append(out, argI32)
			case strings.HasPrefix(p, "float "):
				out = append(out, argF32)
			default:
				return nil, false
			}
		}
		return out, true
	}
	sigs := map[string][]argKind{}
	macros := map[string]string{}
	for _, m := range def.FindAllStringSubmatch(s, -1) {
		macros[m[1]] = m[2]
	}
	for _, m := range use.FindAllStringSubmatch(s, -1) {
		for _, d := range macroDecl.FindAllStringSubmatch(macros[m[1]], -1) {
			if k, ok := kinds(d[2]); ok {
				sigs[d[1]+"_"+m[2]] = k
			}
		}
	}
	for _, d := range decl.FindAllStringSubmatch(s, -1) {
		if !strings.HasSuffix(d[1], "_") {
			if k, ok := kinds(d[2]); ok {
				sigs[d[1]] = k
			}
		}
	}
	return sigs
}

// TestLaunchArgsMatchKernels checks, for every case of TestNewOpsOnGPU
// compiled in float32 and float16, that each launch of an op family
// kernel passes as many arguments as the kernel declares, each of the
// declared kind (a pointer, int, long long or float): a mismatch would
// read garbage on the GPU.
func TestLaunchArgsMatchKernels(t *testing.T) {
	sigs := kernelParams(t)
	if len(sigs) < 50 {
		t.Fatalf("read %d kernel signatures from the op sources", len(sigs))
	}
	checked, unread := map[string]bool{}, map[string]bool{}
	for _, tc := range opCases() {
		g, _ := opGraph(t, tc)
		for _, half := range []bool{false, true} {
			if half && tc.noF16 {
				continue
			}
			p, err := compile(g, false, half)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			for _, s := range p.steps {
				for _, l := range s.launches {
					want, ok := sigs[l.kernel]
					if !ok {
						unread[l.kernel] = true
						continue
					}
					checked[l.kernel] = true
					if len(want) != len(l.args) {
						t.Errorf("%s: %s launched with %d arguments, declares %d", tc.name, l.kernel, len(l.args), len(want))
						continue
					}
					for i, a := range l.args {
						if a.kind != want[i] {
							t.Errorf("%s: %s argument %d is kind %d, declared %d", tc.name, l.kernel, i, a.kind, want[i])
						}
					}
				}
			}
		}
	}
	t.Logf("%d kernels' launches checked against their declarations; not read (nn.cu's, or other parameter types): %v", len(checked), slices.Sorted(maps.Keys(unread)))
}
