package tactic

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// CPUTimer names how Select measures a tactic; the timing cache files
// Select's times with it (the entry's "timer") and Select uses no time
// filed without it, so that times measured another way (the warm timer of
// a kiln before it, which filed none) are not mixed with these. Change it
// whenever what Select measures changes.
//
// "cold1": a layer whose weights are heavy (coldLayer) is timed with its
// weights cold, as a whole-model run reads them: each tactic runs on
// several copies of the layer's constants, each prepared as its own
// kernel (packed weights and all), in turn, so that at least ColdBytes of
// other weights pass through the caches between two runs on the same copy.
// A model reads a layer's weights once per inference, after every other
// layer's: from L3 or memory, not from the L2 where ten runs in a row keep
// them. The ranking of tactics differs between the two (ops/nn/NOTES.md,
// sections 24 and 25).
const CPUTimer = "cold1"

const (
	// ColdBytes is how many bytes of weights a cold layer's timer runs
	// through between two runs on one copy of its weights: the 32 MiB of
	// copies ops/nn's BenchmarkSmallPlaneCold cycles (16 times this
	// machine's 2 MiB L2, most of a whole model's weights).
	ColdBytes = 32 << 20
	// coldFraction: a layer is cold when one of its tactics' weights take
	// at least 1/coldFraction of a core's L2. Lighter weights are a small
	// part of what the layer reads, so the warm timer (one copy, no
	// more kernels to prepare) ranks its tactics as the model does.
	coldFraction = 4
	// maxCopies bounds the copies of one tactic (their preparation and
	// warm-up runs are build time).
	maxCopies = 8
	// maxPacked bounds a tactic's packed weights, as a multiple of the
	// layer's constants: Winograd F(4x4, 3x3) holds 36 taps for 9; more
	// than that allocated by a tactic's first run is scratch.
	maxPacked = 4
	// defaultL2 is the L2 size taken when the system does not say.
	defaultL2 = 2 << 20
)

// l2Bytes returns the size of one core's L2 cache. A variable so that
// tests can set the machine's.
var l2Bytes = sync.OnceValue(func() int64 {
	if b, ok := readL2("/sys/devices/system/cpu/cpu0/cache"); ok {
		return b
	}
	return defaultL2
})

// readL2 reads the size of the level-2 data or unified cache from a Linux
// sysfs cache folder (index*/level, type, size).
func readL2(dir string) (int64, bool) {
	idx, _ := filepath.Glob(filepath.Join(dir, "index*"))
	for _, d := range idx {
		level, err1 := os.ReadFile(filepath.Join(d, "level"))
		typ, err2 := os.ReadFile(filepath.Join(d, "type"))
		size, err3 := os.ReadFile(filepath.Join(d, "size"))
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if strings.TrimSpace(string(level)) != "2" || strings.TrimSpace(string(typ)) == "Instruction" {
			continue
		}
		if b, ok := parseCacheSize(strings.TrimSpace(string(size))); ok {
			return b, true
		}
	}
	return 0, false
}

// parseCacheSize parses a sysfs cache size: "2048K", "1M", "512" (bytes).
func parseCacheSize(s string) (int64, bool) {
	mul := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mul, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mul, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mul, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n * mul, true
}

// coldPlan decides how a layer is timed from the bytes each tactic reads
// (weights: the larger of the layer's constants and what preparing the
// tactic and running it once allocated, its packed weights) and the bytes
// one round of runs reads (unique: the constants, which the tactics that
// do not pack read alike, and every packed form): cold when the heaviest
// tactic takes at least 1/coldFraction of the L2, and then on as many
// copies of the weights (1 to maxCopies; each copy the constants and every
// tactic's packed form) as put ColdBytes of other weights between two runs
// on one copy. The timer runs every tactic once per round, so the other
// tactics' weights count: a layer whose tactics together read more than
// ColdBytes needs no copy.
func coldPlan(weights []int64, unique, l2 int64) (cold bool, copies int) {
	var heaviest int64
	for _, w := range weights {
		heaviest = max(heaviest, w)
	}
	if heaviest <= 0 || heaviest < l2/coldFraction {
		return false, 1
	}
	unique = max(unique, heaviest)
	// Between two runs on copy j of a tactic run the other copies of
	// every tactic: copies*unique - that tactic's weights.
	copies = int((ColdBytes + heaviest + unique - 1) / unique)
	return true, min(max(copies, 1), maxCopies)
}

// allocated returns the bytes the process has allocated so far.
func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// constBytes is the size of a node's constant inputs.
func constBytes(n *ir.Node, in []*tensor.Tensor) int64 {
	var b int64
	for i, v := range n.Inputs {
		if v != nil && v.Const != nil && in[i] != nil {
			b += int64(len(in[i].Data))
		}
	}
	return b
}

// withCopiedConsts returns a copy of node n whose constant inputs are
// copies of its own, and the inputs in with those copies in their place: a
// kernel prepared from it has weights (and packed weights) of its own.
func withCopiedConsts(n *ir.Node, in []*tensor.Tensor) (*ir.Node, []*tensor.Tensor) {
	c := *n
	c.Inputs = make([]*ir.Value, len(n.Inputs))
	ins := make([]*tensor.Tensor, len(in))
	copy(ins, in)
	for i, v := range n.Inputs {
		c.Inputs[i] = v
		if v == nil || v.Const == nil {
			continue
		}
		t := v.Const.Clone()
		cv := *v
		cv.Const = t
		c.Inputs[i] = &cv
		ins[i] = t
	}
	return &c, ins
}
