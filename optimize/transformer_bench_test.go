package optimize

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// benchEngine times e.Run on in.
func benchEngine(b *testing.B, g *ir.Graph, in map[string]*tensor.Tensor) {
	e, err := engine.New(g)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBertMiniCPU compares bert_mini at batch 1, sequence 128 (the
// shape bench/cpu-models.sh times) optimized as before the CPU's device
// passes ("level2": kiln::Attention between Split/Reshape/Transposes, Add
// + LayerNormalization) and as a CPU build optimizes it now ("cpu"), in the
// same process; run with -count and compare the pairs.
func BenchmarkBertMiniCPU(b *testing.B) {
	for _, bc := range []struct {
		name   string
		device string
	}{{"level2", ""}, {"cpu", "cpu"}} {
		b.Run(bc.name, func(b *testing.B) {
			g, _ := loadModel(b, "bert_mini")
			if err := RunFor(g, 2, bc.device, nil); err != nil {
				b.Fatal(err)
			}
			ids := tensor.New(tensor.Int64, 1, 128)
			mask := tensor.New(tensor.Int64, 1, 128)
			for i := range ids.Int64s() {
				ids.Int64s()[i] = int64(i*37) % 2000
				mask.Int64s()[i] = 1
			}
			benchEngine(b, g, map[string]*tensor.Tensor{"input_ids": ids, "attention_mask": mask})
		})
	}
}

// BenchmarkBertBlocks compares, at bert_mini's sizes (sequence 128, 4 heads
// of 32, width 128), one attention block and one residual LayerNorm before
// ("old": the passes before this change) and after the CPU passes ("new");
// attention-base is BERT-base's attention (12 heads of 64).
func BenchmarkBertBlocks(b *testing.B) {
	att := mhaSpec{batch: 1, seq: 128, heads: 4, size: 32, mask: "keys"}.build
	attBase := mhaSpec{batch: 1, seq: 128, heads: 12, size: 64, mask: "keys"}.build
	ln := lnSpec{shape: []int{1, 128, 128}, add: "same"}.build
	for _, bc := range []struct {
		name  string
		build func() *ir.Graph
		pass  []string
	}{
		{"attention/old", att, []string{"attention", "dce"}},
		{"attention/new", att, []string{"attention", "mha", "dce"}},
		{"attention-base/old", attBase, []string{"attention", "dce"}},
		{"attention-base/new", attBase, []string{"attention", "mha", "dce"}},
		{"addlayernorm/old", ln, []string{"dce"}},
		{"addlayernorm/new", ln, []string{"skiplayernorm", "dce"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := bc.build()
			ps := make([]Pass, len(bc.pass))
			for i, name := range bc.pass {
				ps[i], _ = Lookup(name)
			}
			if err := RunPasses(g, ps, nil); err != nil {
				b.Fatal(err)
			}
			in := map[string]*tensor.Tensor{}
			for _, v := range g.Inputs {
				if v.Const == nil {
					dims, _ := v.Type.Shape.Ints()
					in[v.Name] = tensor.New(tensor.Float32, dims...)
					for i := range in[v.Name].Float32s() {
						in[v.Name].Float32s()[i] = float32(i%17)/8 - 1
					}
				}
			}
			benchEngine(b, g, in)
		})
	}
}
