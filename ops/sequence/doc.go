// Package sequence implements the ONNX operators on sequence and optional
// values: SequenceConstruct, SequenceEmpty, SequenceAt, SequenceInsert,
// SequenceErase, SequenceLength, SplitToSequence, ConcatFromSequence,
// SequenceMap (a subgraph per element), Optional, OptionalHasElement and
// OptionalGetElement.
//
// A sequence value is a tensor.Tensor of DType tensor.Sequence holding its
// elements (tensors of one element type, of any shapes) in Elems; an empty
// optional is a tensor.Tensor of DType tensor.Optional, and an optional
// holding a value is that value itself. The elements of a sequence never
// live in an execution context's arena: the operators that put tensors into
// a sequence copy them to memory of their own, so that the memory planner,
// which plans only tensors, can reuse the arena as it does for any graph.
// These operators run on the CPU only.
package sequence
