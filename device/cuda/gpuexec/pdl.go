package gpuexec

import (
	"encoding/binary"

	"github.com/kilnai/kiln/device/cuda"
)

// pdlKernels are the kernels that wait for the work queued before them
// (KILN_PDL_WAIT, PTX griddepcontrol.wait, before their first memory
// access) and may therefore be launched with programmatic dependent
// launch: the GPU starts them while the kernel before them finishes, so
// that their launch latency overlaps its last blocks. At BERT's batch 1
// these are the kernels after most of cuBLASLt's products: attention after
// the QKV product, LayerNormalization after the output projection and
// FFN-out, the epilogue kernels after a plain product.
var pdlKernels = map[string]bool{
	"layernorm_vec_f16":           true,
	"layernorm_vec8_f16":          true,
	"layernorm_embed_f16":         true,
	"row_epilogue_vec_f16":        true,
	"row_epilogue_res_vec_f16":    true,
	"attention_mma_fa_d32_f16":    true,
	"attention_mma_fa_d64_f16":    true,
	"attention_mma_fa_d128_f16":   true,
	"attention_mma_fa128_d32_f16": true,
	"attention_mma_fa128_d64_f16": true,
}

// programmaticLaunch lets engines launch pdlKernels with programmatic
// dependent launch where the driver, the GPU (compute capability 9.0) and
// the kernel image (compiled for sm_90: kiln_pdl_probe) allow. Checked on
// an H100 (TestOpsPDLOnGPU, TestModelsFP16PDLOnGPU, TestBertFP16OnGPU:
// outputs as without); its time is within the noise or worse so far
// (BERT-base batch 1: 0.552 without / 0.556 ms with in one run, 0.495 /
// 0.503 ms in the next, device/cuda/NOTES.md), so it is off by default;
// tests turn it on (withPDL) to check and time it.
var programmaticLaunch = false

// pdlProbe is the kernel that says whether the image's kernels wait.
const pdlProbe = "kiln_pdl_probe"

// probePDL reports whether e may launch pdlKernels with programmatic
// dependent launch: programmaticLaunch, a driver that captures it into
// graphs, a GPU of compute capability 9.0 or later, and kernels compiled
// to wait (kiln_pdl_probe, run once, writes 1). Any failure says no. The
// context is current.
func (e *Engine) probePDL() bool {
	d := e.drv
	if !programmaticLaunch || !d.CanLaunchPDL() || e.fp.ComputeMajor < 9 {
		return false
	}
	fn, err := d.ModuleFunction(e.mod, pdlProbe)
	if err != nil {
		return false
	}
	out, err := d.MemAlloc(4)
	if err != nil {
		return false
	}
	defer d.MemFree(out)
	args := cuda.NewKernelArgs(1)
	defer args.Free()
	args.SetPtr(0, out)
	if err := d.Launch(fn, cuda.Dim3{X: 1, Y: 1, Z: 1}, cuda.Dim3{X: 1, Y: 1, Z: 1}, 0, cuda.Stream{}, args); err != nil {
		return false
	}
	var b [4]byte
	if err := d.MemcpyDtoH(b[:], out); err != nil {
		return false
	}
	return binary.LittleEndian.Uint32(b[:]) == 1
}

// launch queues the kernel call k on s: with programmatic dependent launch
// when k.pdl says so.
func (k *call) launch(d *cuda.Driver, s cuda.Stream) error {
	if k.pdl {
		return d.LaunchPDL(k.fn, k.grid, k.block, k.shmem, s, k.args)
	}
	return d.Launch(k.fn, k.grid, k.block, k.shmem, s, k.args)
}
