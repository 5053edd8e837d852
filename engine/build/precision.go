package build

import (
	"fmt"
	"sort"

	"github.com/kilnai/kiln/quant"
)

// fp16Keep is the list of layers --layer-precision keeps in float32 in an
// FP16 build (NAME:fp32), sorted: quant.FP16Options.KeepFP32 on every
// device. Other overrides (fp16, int8) change nothing in an FP16 build.
func (b *builder) fp16Keep() []string {
	var keep []string
	for layer, p := range b.o.LayerPrecision {
		if p == FP32 {
			keep = append(keep, layer)
		}
	}
	sort.Strings(keep)
	return keep
}

// deviceFP16 is the FP16 precision stage of a build for a device that runs
// graphs itself: the decisions the CPU's conversion takes
// (quant.FP16Decide: the same rule, the same keep list from
// --layer-precision), made on the optimized graph and returned per layer
// for device.ExecOptions.LayerPrecision ("fp32" for the layers kept in
// float32, "fp16" for the others). The counts and each fp32 layer with its
// reason are logged as on the CPU, and the reasons kept for kiln inspect.
// A graph the stage cannot decide for (quant.FP16Convert fails) runs whole
// in fp16 on the device, as before the stage was shared, unless
// --layer-precision asks for fp32 layers.
func (b *builder) deviceFP16() (map[string]string, error) {
	keep := b.fp16Keep()
	rep, err := quant.FP16Decide(b.g, quant.FP16Options{KeepFP32: keep})
	if err != nil {
		if len(keep) > 0 {
			return nil, err
		}
		// The device computes every layer in fp16 as it always did; only
		// an override needs the decision.
		b.logf("FP16 on %s: every layer in fp16 (the precision stage could not decide per layer: %v)", b.o.Device, err)
		return nil, nil
	}
	b.logf("FP16 on %s: %d layers in fp16, %d in fp32 (the precision stage's decisions, as on the CPU)",
		b.o.Device, rep.Count(quant.FP16PrecisionHalf), rep.Count(quant.FP16PrecisionSingle))
	for _, l := range rep.Layers {
		if l.Precision == quant.FP16PrecisionSingle {
			b.logf("  fp32  %s (%s): %s", l.Name, l.OpType, l.Reason)
		}
	}
	b.recordFP16(rep, b.o.Device)
	return rep.LayerPrecision(), nil
}

// recordFP16 keeps, for kiln inspect (plan.Layer.Reason), why each layer
// of an FP16 build that stays in fp32 does, on device ("" on the CPU).
func (b *builder) recordFP16(rep *quant.FP16Report, device string) {
	for _, l := range rep.Layers {
		if l.Precision != quant.FP16PrecisionSingle {
			continue
		}
		if b.reasons == nil {
			b.reasons = map[string]string{}
		}
		if device != "" {
			b.reasons[l.Name] = fmt.Sprintf("fp32 on %s: %s", device, l.Reason)
		} else {
			b.reasons[l.Name] = "fp32: " + l.Reason
		}
	}
}
