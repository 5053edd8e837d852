// Package plan is kiln's engine plan file: what kiln build writes and kiln
// run, kiln inspect and kiln serve load.
//
// Layout (little endian, every section 64-byte aligned so that weights can
// be used in place from the aligned memory Open reads the file into, or
// from a memory mapping with OpenMapped):
//
//	"KILNPLAN" | format version u32 | header length u32 | header (JSON)
//	graph: the optimized graph as an ONNX ModelProto whose initializers
//	       refer to the weight section
//	weights, then device blobs (compiled GPU kernels)
//	SHA-256 of everything before it
//
// The header records the kiln version, the device and its fingerprint, the
// optimization profiles, the chosen tactics, the layers and sizes for kiln
// inspect, and the builder's notes. Open refuses a file that is not a plan,
// has another format version, is truncated or tampered with (checksum), or
// was built by another kiln version; CheckDevice refuses a plan built for a
// device whose fingerprint differs from this machine's. Every error says
// what differs. Open reads the whole file, so that the plan is unaffected
// by later changes to it (a file rewritten in place under a mapping would
// fault); ReadHeader reads only the header.
package plan
