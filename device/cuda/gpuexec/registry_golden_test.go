package gpuexec

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/support_golden.txt from the current registry")

const supportGoldenFile = "testdata/support_golden.txt"

// supportAnswers runs support over every node of the ONNX node suite's
// models and the shared models, each as loaded (shapes inferred) and as a
// build optimizes it (so kiln's fused ops are asked too), and returns
// "model form index op" -> "yes" or "no". The sources it found are named in
// srcs (so a machine without one compares only the others).
func supportAnswers(t *testing.T) (answers map[string]string, srcs map[string]bool) {
	t.Helper()
	answers, srcs = map[string]string{}, map[string]bool{}
	var paths []struct{ name, path string }
	dirs, _ := filepath.Glob(filepath.Join(nodeSuiteDir(), "test_*"))
	for _, d := range dirs {
		paths = append(paths, struct{ name, path string }{"node/" + filepath.Base(d), filepath.Join(d, "model.onnx")})
	}
	models, _ := filepath.Glob(filepath.Join(modelsDir(), "*", "model.onnx"))
	for _, m := range models {
		paths = append(paths, struct{ name, path string }{"models/" + filepath.Base(filepath.Dir(m)), m})
	}
	for _, p := range paths {
		b, err := os.ReadFile(p.path)
		if err != nil {
			continue
		}
		src := strings.SplitN(p.name, "/", 2)[0]
		for _, form := range []string{"raw", "opt"} {
			m, err := onnx.DecodeModel(b)
			if err != nil {
				continue
			}
			g, err := onnx.ToGraph(m, nil)
			if err != nil {
				continue
			}
			if form == "opt" {
				if err := optimize.Run(g, 2, nil); err != nil {
					continue
				}
			}
			if _, err := ops.InferGraph(g); err != nil {
				continue
			}
			srcs[src] = true
			for i, n := range g.Nodes {
				ans := "yes"
				if _, err := supportGuarded(n, g); err != nil {
					ans = "no"
				}
				answers[fmt.Sprintf("%s %s %d %s", p.name, form, i, opName(n))] = ans
			}
		}
	}
	return answers, srcs
}

// supportGuarded is support with a panic turned into an error (a panic is
// itself a defect the comparison reports as a changed answer).
func supportGuarded(n *ir.Node, g *ir.Graph) (d kernelDef, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("PANIC %v", x)
		}
	}()
	return support(n, g.Opset(), func(v *ir.Value) bool { return usedIn(g, v) })
}

// TestRegistrySupportGolden checks that support's answer for every node of
// the ONNX node suite and the shared models is the one recorded in
// testdata/support_golden.txt (written with -update from the registry
// before element types became part of its key): every node the GPU took it
// still takes, every node it refused it still refuses.
func TestRegistrySupportGolden(t *testing.T) {
	answers, srcs := supportAnswers(t)
	if len(answers) == 0 {
		t.Skipf("needs the ONNX node tests in %s or the reference models in %s", nodeSuiteDir(), modelsDir())
	}
	if *updateGolden {
		keys := make([]string, 0, len(answers))
		for k := range answers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var sb strings.Builder
		sb.WriteString("# support's answer per node: source/model form index op answer (TestRegistrySupportGolden; -update rewrites)\n")
		for _, k := range keys {
			fmt.Fprintf(&sb, "%s %s\n", k, answers[k])
		}
		if err := os.WriteFile(supportGoldenFile, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(supportGoldenFile)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("golden line %q has no answer", line)
		}
		want[line[:i]] = line[i+1:]
	}
	compared, yes := 0, 0
	for k, w := range want {
		if !srcs[strings.SplitN(k, "/", 2)[0]] {
			continue // this machine lacks the source
		}
		got, ok := answers[k]
		if !ok {
			t.Errorf("%s: in the golden file, not asked now", k)
			continue
		}
		compared++
		if w == "yes" {
			yes++
		}
		if got != w {
			t.Errorf("%s: support says %s, was %s", k, got, w)
		}
	}
	for k := range answers {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: asked now, not in the golden file (rerun with -update on the registry before a change)", k)
		}
	}
	t.Logf("%d nodes compared, %d supported", compared, yes)
}
