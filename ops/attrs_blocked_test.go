package ops_test

import (
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
