package gpuexec

import (
	"fmt"
	"testing"

	"github.com/kilnai/kiln/engine/arena"
	"github.com/kilnai/kiln/engine/arena/arenatest"
)

// TestModelsPackers compiles every shared model (optimized, at its
// test_data_set_0 shapes, float32 and half) and compares, on the buffers
// the executor gives the packer, the device arena of the one packer
// (planOffsets: arena.Place) with those of the two it replaced (arenatest:
// the CUDA executor's first fit, the CPU engine's best fits) and the peak
// of live bytes. It needs no GPU (compiling only plans), and logs a table
// row per graph (bench/results/memplan.md).
func TestModelsPackers(t *testing.T) {
	for _, name := range []string{"bert_mini", "mobilenet_v2", "resnet_mini", "squeezenet1_1", "yolo_tiny"} {
		for _, half := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/half=%v", name, half), func(t *testing.T) {
				path := modelPath(t, name)
				g := optimizedGraph(t, path, testInputs(t, name))
				p, err := compile(g, false, half)
				if err != nil {
					t.Skipf("not compiled for the GPU: %v", err)
				}
				bufs := make([]arena.Buffer, len(p.stores))
				old := make([]arenatest.Buffer, len(p.stores))
				for i, s := range p.stores {
					bufs[i] = arena.Buffer{Size: s.size, First: s.first, Last: s.last}
					old[i] = arenatest.Buffer(bufs[i])
				}
				_, gpu := arenatest.GPU(old, Alignment)
				_, cpu := arenatest.CPU(old, Alignment)
				peak := arena.PeakLive(bufs, Alignment)
				if p.arena > gpu || p.arena > cpu || p.arena < peak {
					t.Errorf("device arena %d: above the former GPU %d or CPU %d packer, or below the peak %d", p.arena, gpu, cpu, peak)
				}
				mib := func(n int64) string { return fmt.Sprintf("%d (%.2f MiB)", n, float64(n)/(1<<20)) }
				t.Logf("| %s | %v | %d | %s | %s | %s | %s |", name, half, len(bufs), mib(peak), mib(gpu), mib(cpu), mib(p.arena))
			})
		}
	}
}
