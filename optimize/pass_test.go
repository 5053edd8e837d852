package optimize

import (
	"errors"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestPassesOrder(t *testing.T) {
	names := func(ps []Pass) []string {
		var s []string
		for _, p := range ps {
			s = append(s, p.Name())
		}
		return s
	}
	tests := []struct {
		level int
		want  []string
	}{
		{0, nil},
		{1, []string{"identity", "layout", "dropout", "shapefold", "constfold", "transpose", "reshape", "concat", "dce"}},
		{2, []string{"identity", "layout", "dropout", "shapefold", "constfold", "transpose", "reshape", "concat", "dce", "gelu", "layernorm", "attention", "bnfold", "convfuse", "matmuladd", "qkvmerge"}},
		{5, []string{"identity", "layout", "dropout", "shapefold", "constfold", "transpose", "reshape", "concat", "dce", "gelu", "layernorm", "attention", "bnfold", "convfuse", "matmuladd", "qkvmerge"}},
	}
	for _, tt := range tests {
		got := names(Passes(tt.level))
		if len(got) != len(tt.want) {
			t.Errorf("level %d: %v, want %v", tt.level, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("level %d: %v, want %v", tt.level, got, tt.want)
				break
			}
		}
	}
}

func TestRegisterDuplicatePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering a second identity pass did not panic")
		}
	}()
	Register(identityPass{})
}

// flipPass changes the graph on every call: Run must stop.
type flipPass struct{}

func (flipPass) Name() string                    { return "flip" }
func (flipPass) Apply(g *ir.Graph) (bool, error) { return true, nil }

type failPass struct{}

func (failPass) Name() string                    { return "fail" }
func (failPass) Apply(g *ir.Graph) (bool, error) { return false, errors.New("boom") }

func TestRunErrors(t *testing.T) {
	build := func() *ir.Graph {
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(2))
		b.Output(b.Op("Relu", []*ir.Value{x}), "y")
		return b.Graph()
	}
	bad := func() *ir.Graph {
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(2))
		b.Output(b.Op("NoSuchOp", []*ir.Value{x}), "y")
		return b.Graph()
	}
	tests := []struct {
		name   string
		g      *ir.Graph
		passes []Pass
		want   error
	}{
		{"no fixed point", build(), []Pass{flipPass{}}, ErrNotConverged},
		{"pass error", build(), []Pass{failPass{}}, ErrPass},
		{"unsupported op", bad(), Passes(2), ErrPass},
		{"nothing to do", build(), Passes(2), nil},
		{"level 0 on a bad graph", bad(), Passes(0), nil},
	}
	for _, tt := range tests {
		err := RunPasses(tt.g, tt.passes, nil)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestRunLogs checks that Run reports each rewrite under its pass's name.
func TestRunLogs(t *testing.T) {
	g := convBlock(true, true, unary("Relu"))()
	got := map[string][]string{}
	if err := Run(g, 2, func(pass, msg string) { got[pass] = append(got[pass], msg) }); err != nil {
		t.Fatal(err)
	}
	for _, pass := range []string{"bnfold", "convfuse", "dce"} {
		if len(got[pass]) == 0 {
			t.Errorf("no log from %s: %v", pass, got)
		}
	}
	if len(got["convfuse"]) != 3 { // Conv as FusedConv, residual, Relu
		t.Errorf("convfuse logged %q, want 3 rewrites", got["convfuse"])
	}
}
