// Package tactic picks, for each layer of an optimized graph, the fastest of
// its kernel's implementations ("tactics", see ops.Tactical) on this
// machine, the way TensorRT's builder does, and remembers the measurements
// in a persistent timing cache.
//
// Select runs every candidate of every tactical layer on inputs of the
// layer's concrete shapes (the profile's opt shape), after a warm-up run,
// and keeps the one with the lowest time (the fastest of its runs). The warm-up run's
// outputs must match the default tactic's: float ones within 1e-3 of their
// largest magnitude (another order of the sums), float16 and bfloat16 ones
// also within one unit in their last place (they are float32 results
// rounded), others bit for bit. Before measuring it looks
// in the Cache, whose entries are keyed by the device fingerprint, the
// layer signature (operator, attributes, input types and shapes, which
// inputs are constant; see Signature) and the tactic, so that a second build
// of the same model, or of another model with layers of the same shapes,
// measures nothing.
//
//	cache, err := tactic.Open("kiln.timing")
//	choices, err := tactic.Select(ctx, g, fp, cache, tactic.Options{})
//	err = cache.Save()
//	// choices["conv1"].Tactic == "winograd4x4"
//
// A layer whose weights (packed forms included) take a good part of the L2
// is timed with them cold, as a whole-model run reads them: its runs take
// copies of the weights in turn (CPUTimer; Choice.Cold).
//
// Every device chooses through Choose: a layer's candidates (names, the
// default first), a Timer (how the device runs and times them: the CPU's
// wall clock in Select, CUDA events in device/cuda/gpuexec's tuner), the
// timing cache and a Rule (the fastest that ran and fits the workspace,
// ties to the earlier; the default unless another is MinGain faster,
// Keeps). Candidates that fail are skipped with their reasons.
//
// The cache file is JSON with a format name and version; entries measured
// on another device are kept (a cache can be shared between machines) but
// never used, and so are entries of another timer (Select files its own
// with "timer": CPUTimer).
package tactic
