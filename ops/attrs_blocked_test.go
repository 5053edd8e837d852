package ops_test

import (
	"errors"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// TestBlockedAttrs: the typed attributes of kiln's blocked-layout ops
// (domain "kiln", written by the optimizer's "blocked" pass): FusedConv's
// plus input_nchw, the pools' (2-D, one output), FromBlocked's channels.
func TestBlockedAttrs(t *testing.T) {
	conv := ops.ConvAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{7, 7}, Strides: []int64{2, 2}, Pads: []int64{3, 3, 3, 3}}, Group: 1}
	k3s2 := ops.WindowAttrs{KernelShape: []int64{3, 3}, Strides: []int64{2, 2}}
	runAttrCases(t, []attrCase{
		{"blockedconv default", "kiln::BlockedConv", nil, 1, ops.BlockedConvAttrs{FusedConvAttrs: ops.FusedConvAttrs{ConvAttrs: ops.ConvAttrs{Group: 1}}}, ""},
		{"blockedconv stem", "kiln::BlockedConv", []*ir.Attr{intsA("kernel_shape", 7, 7), intsA("strides", 2, 2), intsA("pads", 3, 3, 3, 3), intA("input_nchw", 1), strA("activation", "Relu")}, 1,
			ops.BlockedConvAttrs{FusedConvAttrs: ops.FusedConvAttrs{ConvAttrs: conv, EpilogueAttrs: ops.EpilogueAttrs{Activation: "Relu"}}, InputNCHW: true}, ""},
		{"blockedconv depthwise hardsigmoid", "kiln::BlockedConv", []*ir.Attr{intA("group", 32), strA("activation", "HardSigmoid"), intA("input_nchw", 0)}, 1,
			ops.BlockedConvAttrs{FusedConvAttrs: ops.FusedConvAttrs{ConvAttrs: ops.ConvAttrs{Group: 32}, EpilogueAttrs: ops.EpilogueAttrs{Activation: "HardSigmoid", P0: 0.2, P1: 0.5}}}, ""},
		{"blockedconv input_nchw 2", "kiln::BlockedConv", []*ir.Attr{intA("input_nchw", 2)}, 1, nil, "input_nchw"},
		{"blockedconv input_nchw grouped", "kiln::BlockedConv", []*ir.Attr{intA("input_nchw", 1), intA("group", 4)}, 1, nil, "input_nchw"},
		{"blockedconv 1-D", "kiln::BlockedConv", []*ir.Attr{intsA("kernel_shape", 3)}, 1, nil, "kernel_shape"},
		{"blockedconv 3-D dilations", "kiln::BlockedConv", []*ir.Attr{intsA("dilations", 1, 1, 1)}, 1, nil, "dilations"},
		{"blockedconv group 0", "kiln::BlockedConv", []*ir.Attr{intA("group", 0)}, 1, nil, "group"},
		{"blockedconv empty clip", "kiln::BlockedConv", []*ir.Attr{strA("activation", "Clip"), floatsA("activation_params", 6, 0)}, 1, nil, "activation_params"},
		{"blockedmaxpool", "kiln::BlockedMaxPool", []*ir.Attr{intsA("kernel_shape", 3, 3), intsA("strides", 2, 2), intA("ceil_mode", 1), intA("storage_order", 1)}, 1,
			ops.PoolAttrs{WindowAttrs: ops.WindowAttrs{KernelShape: []int64{3, 3}, Strides: []int64{2, 2}, CeilMode: true}}, ""},
		{"blockedmaxpool ignores count_include_pad", "kiln::BlockedMaxPool", []*ir.Attr{intsA("kernel_shape", 3, 3), intsA("strides", 2, 2), intA("count_include_pad", 1)}, 1,
			ops.PoolAttrs{WindowAttrs: k3s2}, ""},
		{"blockedaveragepool count_include_pad", "kiln::BlockedAveragePool", []*ir.Attr{intsA("kernel_shape", 3, 3), intsA("strides", 2, 2), intA("count_include_pad", 1)}, 1,
			ops.PoolAttrs{WindowAttrs: k3s2, CountIncludePad: true}, ""},
		{"blockedmaxpool no kernel", "kiln::BlockedMaxPool", nil, 1, nil, "kernel_shape"},
		{"blockedaveragepool 1-D", "kiln::BlockedAveragePool", []*ir.Attr{intsA("kernel_shape", 2)}, 1, nil, "kernel_shape"},
		{"blockedmaxpool 1-D pads", "kiln::BlockedMaxPool", []*ir.Attr{intsA("kernel_shape", 2, 2), intsA("pads", 1, 1)}, 1, nil, "pads"},
		{"fromblocked", "kiln::FromBlocked", []*ir.Attr{intA("channels", 24)}, 1, ops.FromBlockedAttrs{Channels: 24}, ""},
		{"fromblocked no channels", "kiln::FromBlocked", nil, 1, nil, "channels"},
		{"fromblocked channels 0", "kiln::FromBlocked", []*ir.Attr{intA("channels", 0)}, 1, nil, "channels"},
	})
}

// FuzzBlockedAttrs: the blocked operators' parsers, given any attributes
// of any type, return their struct or an error wrapping ops.ErrBadAttr
// and never panic; Prepare agrees on whether the attributes are bad.
func FuzzBlockedAttrs(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 5})
	f.Add([]byte{2, 3, 1, 0, 0, 1, 255})
	f.Add([]byte{1, 12, 0, 1, 3, 3, 9})
	opTypes := []string{"BlockedConv", "BlockedMaxPool", "BlockedAveragePool", "FromBlocked", "ToBlocked", "BlockedGlobalAveragePool", "BlockedGlobalMaxPool"}
	names := []string{"auto_pad", "kernel_shape", "strides", "dilations", "pads", "group", "ceil_mode", "count_include_pad",
		"storage_order", "activation", "activation_params", "input_nchw", "channels"}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 1 {
			return
		}
		n := &ir.Node{Name: "n", Domain: "kiln", OpType: opTypes[int(b[0])%len(opTypes)], Attrs: map[string]*ir.Attr{}}
		for b = b[1:]; len(b) >= 3; b = b[3:] {
			name := names[int(b[0])%len(names)]
			v := int64(int8(b[2]))
			a := &ir.Attr{Name: name}
			switch b[1] % 5 {
			case 0:
				a.Type, a.I = ir.AttrInt, v%4
			case 1:
				a.Type, a.F = ir.AttrFloat, float32(v)/4
			case 2:
				a.Type, a.S = ir.AttrString, []string{"Relu", "Clip", "HardSigmoid", "SAME_UPPER", "VALID", "NOTSET", "", "x"}[int(b[2])%8]
			case 3:
				a.Type, a.Ints = ir.AttrInts, []int64{v % 4, (v / 4) % 4, 1, 2}[:1+int(b[2])%4]
			case 4:
				a.Type, a.Floats = ir.AttrFloats, []float32{float32(v), float32(v) / 2}[:1+int(b[2])%2]
			}
			n.Attrs[name] = a
		}
		_, err := ops.ParseAttrs(n, 1)
		if err != nil && !errors.Is(err, ops.ErrBadAttr) {
			t.Fatalf("%s: %v, want an error wrapping ErrBadAttr", n.OpType, err)
		}
		if _, perr := ops.Prepare(n, 1); (err != nil) != (perr != nil) {
			t.Fatalf("%s: ParseAttrs %v, Prepare %v", n.OpType, err, perr)
		}
	})
}
