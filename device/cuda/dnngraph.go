package cuda

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// cuDNN 9's graph (backend) API: convolutions with their epilogue as one
// operation graph, whose engine configurations the heuristics enumerate.
// The values below are cuDNN 9's (cudnn_graph.h, which cudnn_backend.h
// includes); each carries its C name.

// cudnnBackendDescriptorType_t
const (
	beDescPointwise     = 0  // CUDNN_BACKEND_POINTWISE_DESCRIPTOR
	beDescConvolution   = 1  // CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR
	beDescEngine        = 2  // CUDNN_BACKEND_ENGINE_DESCRIPTOR
	beDescEngineCfg     = 3  // CUDNN_BACKEND_ENGINECFG_DESCRIPTOR
	beDescEngineHeur    = 4  // CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR
	beDescPlan          = 5  // CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR
	beDescKnobChoice    = 7  // CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR
	beDescOpConvForward = 10 // CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR
	beDescOpPointwise   = 13 // CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR
	beDescOpGraph       = 15 // CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR
	beDescVariantPack   = 16 // CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR
	beDescTensor        = 17 // CUDNN_BACKEND_TENSOR_DESCRIPTOR
)

var beDescNames = map[int32]string{
	beDescPointwise: "POINTWISE", beDescConvolution: "CONVOLUTION", beDescEngine: "ENGINE",
	beDescEngineCfg: "ENGINECFG", beDescEngineHeur: "ENGINEHEUR", beDescPlan: "EXECUTION_PLAN",
	beDescKnobChoice: "KNOB_CHOICE", beDescOpConvForward: "OPERATION_CONVOLUTION_FORWARD",
	beDescOpPointwise: "OPERATION_POINTWISE", beDescOpGraph: "OPERATIONGRAPH",
	beDescVariantPack: "VARIANT_PACK", beDescTensor: "TENSOR",
}

// cudnnBackendAttributeType_t
const (
	beTypeHandle        = 0  // CUDNN_TYPE_HANDLE
	beTypeDataType      = 1  // CUDNN_TYPE_DATA_TYPE
	beTypeBoolean       = 2  // CUDNN_TYPE_BOOLEAN (a C bool: one byte)
	beTypeInt64         = 3  // CUDNN_TYPE_INT64
	beTypeFloat         = 4  // CUDNN_TYPE_FLOAT
	beTypeDouble        = 5  // CUDNN_TYPE_DOUBLE
	beTypeVoidPtr       = 6  // CUDNN_TYPE_VOID_PTR
	beTypeConvMode      = 7  // CUDNN_TYPE_CONVOLUTION_MODE
	beTypeHeurMode      = 8  // CUDNN_TYPE_HEUR_MODE
	beTypeKnobType      = 9  // CUDNN_TYPE_KNOB_TYPE
	beTypeNumericalNote = 11 // CUDNN_TYPE_NUMERICAL_NOTE
	beTypePointwiseMode = 14 // CUDNN_TYPE_POINTWISE_MODE
	beTypeDescriptor    = 15 // CUDNN_TYPE_BACKEND_DESCRIPTOR
	beTypeBehaviorNote  = 19 // CUDNN_TYPE_BEHAVIOR_NOTE
)

// cudnnBackendAttributeName_t
const (
	beAttrPointwiseMode     = 0    // CUDNN_ATTR_POINTWISE_MODE
	beAttrPointwiseMathPrec = 1    // CUDNN_ATTR_POINTWISE_MATH_PREC
	beAttrConvCompType      = 100  // CUDNN_ATTR_CONVOLUTION_COMP_TYPE
	beAttrConvMode          = 101  // CUDNN_ATTR_CONVOLUTION_CONV_MODE
	beAttrConvDilations     = 102  // CUDNN_ATTR_CONVOLUTION_DILATIONS
	beAttrConvStrides       = 103  // CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES
	beAttrConvPostPad       = 104  // CUDNN_ATTR_CONVOLUTION_POST_PADDINGS
	beAttrConvPrePad        = 105  // CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS
	beAttrConvSpatialDims   = 106  // CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS
	beAttrHeurMode          = 200  // CUDNN_ATTR_ENGINEHEUR_MODE
	beAttrHeurGraph         = 201  // CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH
	beAttrHeurResults       = 202  // CUDNN_ATTR_ENGINEHEUR_RESULTS
	beAttrCfgEngine         = 300  // CUDNN_ATTR_ENGINECFG_ENGINE
	beAttrCfgKnobChoices    = 302  // CUDNN_ATTR_ENGINECFG_KNOB_CHOICES
	beAttrCfgWorkspace      = 303  // CUDNN_ATTR_ENGINECFG_WORKSPACE_SIZE (cuDNN 9.2 and later)
	beAttrPlanHandle        = 400  // CUDNN_ATTR_EXECUTION_PLAN_HANDLE
	beAttrPlanEngineCfg     = 401  // CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG
	beAttrPlanWorkspace     = 402  // CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE
	beAttrKnobType          = 600  // CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE
	beAttrKnobValue         = 601  // CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE
	beAttrConvFwdAlpha      = 700  // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA
	beAttrConvFwdBeta       = 701  // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA
	beAttrConvFwdConv       = 702  // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC
	beAttrConvFwdW          = 703  // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W
	beAttrConvFwdX          = 704  // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X
	beAttrConvFwdY          = 705  // CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y
	beAttrPwDesc            = 750  // CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR
	beAttrPwX               = 751  // CUDNN_ATTR_OPERATION_POINTWISE_XDESC
	beAttrPwB               = 752  // CUDNN_ATTR_OPERATION_POINTWISE_BDESC
	beAttrPwY               = 753  // CUDNN_ATTR_OPERATION_POINTWISE_YDESC
	beAttrGraphHandle       = 800  // CUDNN_ATTR_OPERATIONGRAPH_HANDLE
	beAttrGraphOps          = 801  // CUDNN_ATTR_OPERATIONGRAPH_OPS
	beAttrGraphEngineCount  = 802  // CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT
	beAttrTensorAlignment   = 900  // CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT
	beAttrTensorDataType    = 901  // CUDNN_ATTR_TENSOR_DATA_TYPE
	beAttrTensorDims        = 902  // CUDNN_ATTR_TENSOR_DIMENSIONS
	beAttrTensorStrides     = 903  // CUDNN_ATTR_TENSOR_STRIDES
	beAttrTensorUID         = 906  // CUDNN_ATTR_TENSOR_UNIQUE_ID
	beAttrTensorVirtual     = 907  // CUDNN_ATTR_TENSOR_IS_VIRTUAL
	beAttrVPUIDs            = 1000 // CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS
	beAttrVPPointers        = 1001 // CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS
	beAttrVPWorkspace       = 1003 // CUDNN_ATTR_VARIANT_PACK_WORKSPACE
	beAttrEngineGraph       = 1300 // CUDNN_ATTR_ENGINE_OPERATION_GRAPH
	beAttrEngineIndex       = 1301 // CUDNN_ATTR_ENGINE_GLOBAL_INDEX
	beAttrEngineNumNote     = 1303 // CUDNN_ATTR_ENGINE_NUMERICAL_NOTE
	beAttrEngineBehNote     = 1305 // CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE
)

var beAttrNames = map[int32]string{
	beAttrPointwiseMode: "CUDNN_ATTR_POINTWISE_MODE", beAttrPointwiseMathPrec: "CUDNN_ATTR_POINTWISE_MATH_PREC",
	beAttrConvCompType: "CUDNN_ATTR_CONVOLUTION_COMP_TYPE", beAttrConvMode: "CUDNN_ATTR_CONVOLUTION_CONV_MODE",
	beAttrConvDilations: "CUDNN_ATTR_CONVOLUTION_DILATIONS", beAttrConvStrides: "CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES",
	beAttrConvPostPad: "CUDNN_ATTR_CONVOLUTION_POST_PADDINGS", beAttrConvPrePad: "CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS",
	beAttrConvSpatialDims: "CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS", beAttrHeurMode: "CUDNN_ATTR_ENGINEHEUR_MODE",
	beAttrHeurGraph: "CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH", beAttrHeurResults: "CUDNN_ATTR_ENGINEHEUR_RESULTS",
	beAttrCfgEngine: "CUDNN_ATTR_ENGINECFG_ENGINE", beAttrCfgKnobChoices: "CUDNN_ATTR_ENGINECFG_KNOB_CHOICES",
	beAttrCfgWorkspace: "CUDNN_ATTR_ENGINECFG_WORKSPACE_SIZE", beAttrPlanHandle: "CUDNN_ATTR_EXECUTION_PLAN_HANDLE",
	beAttrPlanEngineCfg: "CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG", beAttrPlanWorkspace: "CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE",
	beAttrKnobType: "CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE", beAttrKnobValue: "CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE",
	beAttrConvFwdAlpha: "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA", beAttrConvFwdBeta: "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA",
	beAttrConvFwdConv: "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC", beAttrConvFwdW: "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W",
	beAttrConvFwdX: "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X", beAttrConvFwdY: "CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y",
	beAttrPwDesc: "CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR", beAttrPwX: "CUDNN_ATTR_OPERATION_POINTWISE_XDESC",
	beAttrPwB: "CUDNN_ATTR_OPERATION_POINTWISE_BDESC", beAttrPwY: "CUDNN_ATTR_OPERATION_POINTWISE_YDESC",
	beAttrGraphHandle: "CUDNN_ATTR_OPERATIONGRAPH_HANDLE", beAttrGraphOps: "CUDNN_ATTR_OPERATIONGRAPH_OPS",
	beAttrGraphEngineCount: "CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT", beAttrTensorAlignment: "CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT",
	beAttrTensorDataType: "CUDNN_ATTR_TENSOR_DATA_TYPE", beAttrTensorDims: "CUDNN_ATTR_TENSOR_DIMENSIONS",
	beAttrTensorStrides: "CUDNN_ATTR_TENSOR_STRIDES", beAttrTensorUID: "CUDNN_ATTR_TENSOR_UNIQUE_ID",
	beAttrTensorVirtual: "CUDNN_ATTR_TENSOR_IS_VIRTUAL", beAttrVPUIDs: "CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS",
	beAttrVPPointers: "CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS", beAttrVPWorkspace: "CUDNN_ATTR_VARIANT_PACK_WORKSPACE",
	beAttrEngineGraph: "CUDNN_ATTR_ENGINE_OPERATION_GRAPH", beAttrEngineIndex: "CUDNN_ATTR_ENGINE_GLOBAL_INDEX",
	beAttrEngineNumNote: "CUDNN_ATTR_ENGINE_NUMERICAL_NOTE", beAttrEngineBehNote: "CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE",
}

// Other enumerators of the graph API.
const (
	cudnnPointwiseAdd           = 0    // CUDNN_POINTWISE_ADD
	cudnnPointwiseMul           = 1    // CUDNN_POINTWISE_MUL
	cudnnPointwiseReluFwd       = 100  // CUDNN_POINTWISE_RELU_FWD
	cudnnNoteTensorCore         = 0    // CUDNN_NUMERICAL_NOTE_TENSOR_CORE
	cudnnNoteDownConvert        = 1    // CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS
	cudnnNoteReducedReduction   = 2    // CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION
	cudnnBehaviorRuntimeCompile = 0    // CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION
	cudnnStatusNotSupported     = 3000 // CUDNN_STATUS_NOT_SUPPORTED (cuDNN 9)
	// maxKnobChoices is how many knob choice descriptors are offered when
	// an engine configuration's choices are read: more than the knob types
	// cuDNN 9 defines (CUDNN_KNOB_TYPE_COUNTS is 37 in 9.6).
	maxKnobChoices = 64
)

// HeurMode is a heuristics query of cuDNN's graph API
// (cudnnBackendHeurMode_t).
type HeurMode int32

// The heuristics modes.
const (
	HeurInstant  HeurMode = 0 // CUDNN_HEUR_MODE_INSTANT
	HeurB        HeurMode = 1 // CUDNN_HEUR_MODE_B
	HeurFallback HeurMode = 2 // CUDNN_HEUR_MODE_FALLBACK
	HeurA        HeurMode = 3 // CUDNN_HEUR_MODE_A
)

// String returns "instant", "A", "B" or "fallback".
func (m HeurMode) String() string {
	switch m {
	case HeurInstant:
		return "instant"
	case HeurA:
		return "A"
	case HeurB:
		return "B"
	case HeurFallback:
		return "fallback"
	}
	return "mode " + strconv.Itoa(int(m))
}

// ErrStaleEngine is wrapped by the error of NewGraphConvFromID when the
// engine configuration an ID names does not build here (another cuDNN
// version, another GPU, or a workspace over the limit): the caller tunes
// again.
var ErrStaleEngine = errors.New("cuda: the cuDNN engine configuration does not build here")

// graphFn holds the backend API's functions.
type graphFn struct {
	create, destroy, set, get, finalize, execute uintptr
	lastError                                    uintptr // cudnnGetLastErrorString, optional
}

// graph resolves the backend API (cheap: a few dlsym lookups, done by each
// NewGraphConv); an error wraps ErrUnavailable.
func (d *CUDNN) graph() (*graphFn, error) {
	f := &graphFn{}
	if err := d.lib.symbols([]symbol{
		sym(&f.create, "cudnnBackendCreateDescriptor"),
		sym(&f.destroy, "cudnnBackendDestroyDescriptor"),
		sym(&f.set, "cudnnBackendSetAttribute"),
		sym(&f.get, "cudnnBackendGetAttribute"),
		sym(&f.finalize, "cudnnBackendFinalize"),
		sym(&f.execute, "cudnnBackendExecute"),
	}); err != nil {
		return nil, err
	}
	f.lastError, _ = d.lib.sym("cudnnGetLastErrorString")
	return f, nil
}

// beDesc is a backend descriptor (cudnnBackendDescriptor_t, C memory) and
// its type.
type beDesc struct {
	p   uintptr
	typ int32
}

// backend is the graph API bound to one library, with helpers that name
// the descriptor type and attribute in every error.
type backend struct {
	d *CUDNN
	f *graphFn
}

func (b backend) fail(fn string, d beDesc, attr int32, r int32) error {
	c := fn + "(" + beDescNames[d.typ]
	if attr >= 0 {
		name := beAttrNames[attr]
		if name == "" {
			name = "attribute " + strconv.Itoa(int(attr))
		}
		c += ", " + name
	}
	e := b.d.err(c+")", r).(*Error)
	e.OOM = r == 4003 || r == 4004 // CUDNN_STATUS_INTERNAL_ERROR_{HOST,DEVICE}_ALLOCATION_FAILED
	if b.f.lastError != 0 {
		var buf [512]byte
		call(b.f.lastError, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		if s := strings.TrimSpace(cStringIn(buf[:])); s != "" {
			e.Msg = s
		}
	}
	return e
}

func (b backend) create(typ int32) (beDesc, error) {
	var p uintptr
	if r := call(b.f.create, uintptr(typ), uintptr(unsafe.Pointer(&p))); r != 0 {
		return beDesc{}, b.fail("cudnnBackendCreateDescriptor", beDesc{typ: typ}, -1, r)
	}
	return beDesc{p, typ}, nil
}

func (b backend) destroy(d beDesc) {
	if d.p != 0 {
		call(b.f.destroy, d.p)
	}
}

func (b backend) finalize(d beDesc) error {
	if r := call(b.f.finalize, d.p); r != 0 {
		return b.fail("cudnnBackendFinalize", d, -1, r)
	}
	return nil
}

// setRaw calls cudnnBackendSetAttribute with n elements at p (Go memory
// without Go pointers, or C memory).
func (b backend) setRaw(d beDesc, attr, typ int32, n int, p unsafe.Pointer) error {
	if r := call(b.f.set, d.p, uintptr(attr), uintptr(typ), uintptr(n), uintptr(p)); r != 0 {
		return b.fail("cudnnBackendSetAttribute", d, attr, r)
	}
	return nil
}

// setInt64 sets an INT64 attribute to vs (one value or an array).
func (b backend) setInt64(d beDesc, attr int32, vs ...int64) error {
	return b.setRaw(d, attr, beTypeInt64, len(vs), unsafe.Pointer(&vs[0]))
}

// setEnum sets an attribute of a C enum type (typ: DATA_TYPE, HEUR_MODE,
// POINTWISE_MODE, CONVOLUTION_MODE, KNOB_TYPE) to v.
func (b backend) setEnum(d beDesc, attr, typ, v int32) error {
	return b.setRaw(d, attr, typ, 1, unsafe.Pointer(&v))
}

// setFloat sets a FLOAT attribute (a scale) to v.
func (b backend) setFloat(d beDesc, attr int32, v float32) error {
	return b.setRaw(d, attr, beTypeFloat, 1, unsafe.Pointer(&v))
}

// setDouble sets a DOUBLE attribute to v.
func (b backend) setDouble(d beDesc, attr int32, v float64) error {
	return b.setRaw(d, attr, beTypeDouble, 1, unsafe.Pointer(&v))
}

// setBool sets a BOOLEAN attribute (a one-byte C bool) to v.
func (b backend) setBool(d beDesc, attr int32, v bool) error {
	var c byte
	if v {
		c = 1
	}
	return b.setRaw(d, attr, beTypeBoolean, 1, unsafe.Pointer(&c))
}

// setDescs sets a BACKEND_DESCRIPTOR attribute to ds (one or an array).
func (b backend) setDescs(d beDesc, attr int32, ds ...beDesc) error {
	ps := make([]uintptr, len(ds))
	for i, x := range ds {
		ps[i] = x.p
	}
	return b.setRaw(d, attr, beTypeDescriptor, len(ps), unsafe.Pointer(&ps[0]))
}

// setHandle sets a HANDLE attribute to h.
func (b backend) setHandle(d beDesc, attr int32, h CUDNNHandle) error {
	p := uintptr(h.p)
	return b.setRaw(d, attr, beTypeHandle, 1, unsafe.Pointer(&p))
}

// getRaw calls cudnnBackendGetAttribute for up to n elements at p and
// returns how many cuDNN wrote.
func (b backend) getRaw(d beDesc, attr, typ int32, n int, p unsafe.Pointer) (int, error) {
	var got int64
	if r := call(b.f.get, d.p, uintptr(attr), uintptr(typ), uintptr(n), uintptr(unsafe.Pointer(&got)), uintptr(p)); r != 0 {
		return 0, b.fail("cudnnBackendGetAttribute", d, attr, r)
	}
	return int(got), nil
}

// getInt64 reads an INT64 attribute of one value.
func (b backend) getInt64(d beDesc, attr int32) (int64, error) {
	var v int64
	_, err := b.getRaw(d, attr, beTypeInt64, 1, unsafe.Pointer(&v))
	return v, err
}

// getEnums reads up to max values of an attribute of a C enum type.
func (b backend) getEnums(d beDesc, attr, typ int32, max int) ([]int32, error) {
	vs := make([]int32, max)
	n, err := b.getRaw(d, attr, typ, max, unsafe.Pointer(&vs[0]))
	if err != nil {
		return nil, err
	}
	return vs[:min(n, max)], nil
}

// getDescs reads a BACKEND_DESCRIPTOR attribute: it creates max
// descriptors of type typ for cuDNN to fill, and returns the ones filled
// (the others are destroyed). A max of 0 asks cuDNN for the count first.
func (b backend) getDescs(d beDesc, attr, typ int32, max int) ([]beDesc, error) {
	if max == 0 {
		n, err := b.getRaw(d, attr, beTypeDescriptor, 0, nil)
		if err != nil || n == 0 {
			return nil, err
		}
		max = n
	}
	ds := make([]beDesc, 0, max)
	ps := make([]uintptr, max)
	for range max {
		x, err := b.create(typ)
		if err != nil {
			b.destroyAll(ds)
			return nil, err
		}
		ds = append(ds, x)
		ps[len(ds)-1] = x.p
	}
	n, err := b.getRaw(d, attr, beTypeDescriptor, max, unsafe.Pointer(&ps[0]))
	if err != nil {
		b.destroyAll(ds)
		return nil, err
	}
	n = min(n, max)
	b.destroyAll(ds[n:])
	return ds[:n], nil
}

func (b backend) destroyAll(ds []beDesc) {
	for _, x := range ds {
		b.destroy(x)
	}
}

// GraphConvOptions says what NewGraphConv puts after the convolution and
// how it searches: y = act(conv(x, w) + bias + z).
type GraphConvOptions struct {
	// Bias adds a bias of M values (a [1,M,1,1] tensor of y's data type).
	Bias bool
	// Residual adds z, a tensor of y's shape, layout and data type.
	Residual bool
	// ReLU applies max(0, v) last; otherwise the activation is identity.
	ReLU bool
	// MaxWorkspace bounds the workspace of a candidate, in bytes (0: the
	// candidates that need none).
	MaxWorkspace int
	// Heuristics are the lists asked for engine configurations, in order;
	// nil means modes A and B and the fallback list.
	Heuristics []HeurMode
	// MaxCandidates, when positive, stops the search once that many
	// candidates have execution plans (finalizing one can compile a
	// kernel at run time: tens to hundreds of milliseconds).
	MaxCandidates int
	// MaxRuntimeCompiled, when positive, bounds how many candidates whose
	// kernel is compiled when their plan is built (runtime fusion engines:
	// 0.24-0.65 s each on an H100 with cuDNN 9.14) are built; the others
	// are skipped before they compile. Precompiled engines build in
	// microseconds.
	MaxRuntimeCompiled int
	// AllowTF32 keeps, in float32, the engines that use tensor cores
	// (TF32 inputs); by default float32 graphs get true float32 only.
	AllowTF32 bool
	// AllowReducedPrecision keeps the engines that convert the inputs
	// down or accumulate in less than float32
	// (CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS,
	// CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION); by default they
	// are left out.
	AllowReducedPrecision bool
	// Quant makes the graph quantized (8-bit x and w, per-channel scales;
	// see GraphQuant and dnnquant.go); its zero value leaves the data
	// types to ConvParams.Half.
	Quant GraphQuant
}

// Knob is one knob choice of an engine configuration: a
// cudnnBackendKnobType_t and its value.
type Knob struct{ Type, Value int64 }

// GraphEngine is one engine configuration that runs a GraphConv, with its
// execution plan.
type GraphEngine struct {
	// ID names the configuration: "eng<global index>" and, for each knob
	// in type order, "_k<type>=<value>". NewGraphConvFromID rebuilds it
	// from the ID alone (for the same graph, cuDNN version and GPU).
	ID        string
	Engine    int    // the engine's global index
	Knobs     []Knob // its knob choices, in type order
	Workspace int    // bytes of workspace Execute needs
	// Heuristic is the first list that returned it ("A", "B",
	// "fallback"; empty when built from an ID).
	Heuristic string
	// TensorCore and RuntimeCompiled are the engine's notes: it runs on
	// tensor cores (CUDNN_NUMERICAL_NOTE_TENSOR_CORE); its kernel was
	// compiled when the plan was built (CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION).
	TensorCore, RuntimeCompiled bool
	// ReducedPrecision says that the engine converts its inputs down or
	// accumulates in less than float32 (kept only with
	// GraphConvOptions.AllowReducedPrecision).
	ReducedPrecision bool
	// Build is how long finalizing the execution plan took.
	Build time.Duration

	plan, cfg beDesc
}

// String describes e for reports: its ID, workspace and notes.
func (e GraphEngine) String() string {
	s := fmt.Sprintf("%s (%d B workspace", e.ID, e.Workspace)
	if e.TensorCore {
		s += ", tensor cores"
	}
	if e.RuntimeCompiled {
		s += ", runtime compiled"
	}
	if e.ReducedPrecision {
		s += ", reduced precision"
	}
	if e.Heuristic != "" {
		s += ", heuristics " + e.Heuristic
	}
	return s + ")"
}

// GraphSearch counts what NewGraphConv did with the heuristics' answers.
type GraphSearch struct {
	Returned      map[string]int // engine configurations per heuristics list
	Duplicates    int            // returned by an earlier list too
	OverWorkspace int            // needing more than MaxWorkspace
	TF32          int            // left out of a float32 graph (tensor cores)
	Reduced       int            // left out for reduced precision (down-converted inputs, half accumulation)
	Uncompiled    int            // runtime-compiled ones left out over MaxRuntimeCompiled
	Failed        int            // whose execution plan did not finalize
	Errors        []string       // why the lists or plans failed (the first few)
}

// engineID formats an engine configuration's ID.
func engineID(engine int, knobs []Knob) string {
	var s strings.Builder
	fmt.Fprintf(&s, "eng%d", engine)
	for _, k := range knobs {
		fmt.Fprintf(&s, "_k%d=%d", k.Type, k.Value)
	}
	return s.String()
}

// ParseEngineID parses an ID made by NewGraphConv (GraphEngine.ID).
func ParseEngineID(id string) (engine int, knobs []Knob, err error) {
	parts := strings.Split(id, "_")
	bad := func(why string) error { return fmt.Errorf("cuda: malformed cuDNN engine ID %q: %s", id, why) }
	e, ok := strings.CutPrefix(parts[0], "eng")
	if !ok {
		return 0, nil, bad(`it does not start with "eng"`)
	}
	if engine, err = strconv.Atoi(e); err != nil || engine < 0 {
		return 0, nil, bad("the engine index is not a number")
	}
	for _, p := range parts[1:] {
		t, v, ok := strings.Cut(strings.TrimPrefix(p, "k"), "=")
		kt, err1 := strconv.ParseInt(t, 10, 64)
		kv, err2 := strconv.ParseInt(v, 10, 64)
		if !strings.HasPrefix(p, "k") || !ok || err1 != nil || err2 != nil || kt < 0 {
			return 0, nil, bad(fmt.Sprintf("knob %q is not k<type>=<value>", p))
		}
		if len(knobs) > 0 && knobs[len(knobs)-1].Type >= kt {
			return 0, nil, bad("knobs are not in increasing type order")
		}
		knobs = append(knobs, Knob{kt, kv})
	}
	return engine, knobs, nil
}

// Tensor unique IDs of a GraphConv's graph (the variant pack's keys).
const (
	uidX, uidW, uidY, uidBias, uidZ = 1, 2, 3, 4, 5
	uidScale, uidPost               = 6, 7          // quantized graphs' per-channel scales
	uidConv, uidBiased, uidSum      = 101, 102, 103 // virtual
	uidScaled, uidAct               = 104, 105      // virtual, quantized graphs
	// graphTensors is how many data pointers a variant pack can hold.
	graphTensors = 7
)

// GraphConv is a convolution with its epilogue as one cuDNN operation
// graph, y = act(conv(x, w) + bias + z), and the engine configurations
// that run it. X, W and Y are laid out as p says (NHWC: X [N,H,W,C], W
// [M,KH,KW,C/Group]); intermediate values are float32 and never leave the
// kernel (virtual tensors). Execute runs the chosen candidate; it may be
// called from one goroutine at a time (it serializes itself).
//
// As a tactic of an executor: tune with NewGraphConv (time each candidate
// with Use and Execute, then Keep the fastest), store the chosen
// GraphEngine.ID in the plan together with the layer's signature and the
// cuDNN version (an ID means something only for the same graph, library
// and GPU), and at load rebuild it with NewGraphConvFromID; an error
// wrapping ErrStaleEngine means tune that layer again. The weights are
// [M,KH,KW,C/Group] in NHWC, the bias M values of y's data type, z of y's
// shape; every pointer 16-byte aligned; the workspace at least
// Engine().Workspace bytes.
type GraphConv struct {
	b    backend
	p    ConvParams
	o    GraphConvOptions
	keep []beDesc // the graph, its operations and tensors, the heuristics
	op   beDesc   // the operation graph

	// Candidates are the engine configurations with an execution plan
	// within the workspace limit, deduplicated, in the heuristics' order
	// (list by list); Execute runs the one chosen (the first unless Use
	// chose another).
	Candidates []GraphEngine
	// Search counts what the heuristics returned and what was left out.
	Search GraphSearch
	cur    int

	mu      sync.Mutex     // guards cur, Candidates (Keep, Destroy) and the variant pack
	vp      beDesc         // the variant pack of the last Execute
	vpMem   unsafe.Pointer // C memory: uids [graphTensors]int64, pointers [graphTensors], workspace
	vpN     int            // tensors in the variant pack
	vpValid bool
}

// NewGraphConv builds the operation graph of p (oh x ow output) with the
// epilogue o asks for, asks the heuristics (modes A, B and the fallback
// list unless o.Heuristics says otherwise) for engine configurations, and
// builds an execution plan for each one that finalizes within
// o.MaxWorkspace, dropping duplicates: the Candidates, each to be timed
// (Use, Execute). Data types: half with float32 accumulation when p.Half,
// else float32. Device pointers given to Execute must be 16-byte aligned.
// Free it with Destroy.
func (d *CUDNN) NewGraphConv(h CUDNNHandle, p ConvParams, oh, ow int, o GraphConvOptions) (_ *GraphConv, err error) {
	c, err := d.newGraph(h, p, oh, ow, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Destroy()
		}
	}()
	modes := o.Heuristics
	if modes == nil {
		modes = []HeurMode{HeurA, HeurB, HeurFallback}
	}
	c.Search.Returned = map[string]int{}
	seen := map[string]bool{}
	compiled := 0
	note := func(err error) {
		if len(c.Search.Errors) < 8 {
			c.Search.Errors = append(c.Search.Errors, err.Error())
		}
	}
	for _, m := range modes {
		if o.MaxCandidates > 0 && len(c.Candidates) >= o.MaxCandidates {
			break
		}
		cfgs, err := c.heuristics(m)
		if err != nil {
			note(err)
			continue
		}
		c.Search.Returned[m.String()] = len(cfgs)
		for i, cfg := range cfgs {
			if o.MaxCandidates > 0 && len(c.Candidates) >= o.MaxCandidates {
				c.b.destroyAll(cfgs[i:])
				break
			}
			e, err := c.describe(cfg)
			if err != nil {
				note(err)
				c.Search.Failed++
				c.b.destroy(cfg)
				continue
			}
			e.Heuristic = m.String()
			dup := seen[e.ID]
			seen[e.ID] = true
			switch {
			case dup:
				c.Search.Duplicates++
			case !p.Half && !o.Quant.on() && !o.AllowTF32 && e.TensorCore:
				c.Search.TF32++
			case !o.AllowReducedPrecision && !o.Quant.on() && e.ReducedPrecision:
				c.Search.Reduced++
			case e.RuntimeCompiled && o.MaxRuntimeCompiled > 0 && compiled >= o.MaxRuntimeCompiled:
				c.Search.Uncompiled++
			case e.Workspace > o.MaxWorkspace:
				c.Search.OverWorkspace++
			default:
				if err := c.plan(h, &e, cfg); err != nil {
					if errors.Is(err, ErrStaleEngine) {
						c.Search.OverWorkspace++
					} else {
						note(fmt.Errorf("%s: %w", e.ID, err))
						c.Search.Failed++
					}
					continue // plan destroyed cfg
				}
				c.Candidates = append(c.Candidates, e)
				if e.RuntimeCompiled {
					compiled++
				}
				continue
			}
			c.b.destroy(cfg)
		}
	}
	if len(c.Candidates) == 0 {
		return nil, &Error{Call: "cudnnBackendFinalize(EXECUTION_PLAN)", Code: cudnnStatusNotSupported, Name: "CUDNN_STATUS_NOT_SUPPORTED",
			Msg: fmt.Sprintf("no engine configuration of %s runs within %d bytes of workspace (%s)", c.describeGraph(), o.MaxWorkspace, c.Search)}
	}
	return c, nil
}

// String summarizes the search.
func (s GraphSearch) String() string {
	var parts []string
	for _, m := range []string{"A", "B", "fallback", "instant"} {
		if n, ok := s.Returned[m]; ok {
			parts = append(parts, fmt.Sprintf("%s returned %d", m, n))
		}
	}
	parts = append(parts, fmt.Sprintf("%d duplicates, %d over the workspace, %d TF32, %d reduced precision, %d not compiled, %d failed",
		s.Duplicates, s.OverWorkspace, s.TF32, s.Reduced, s.Uncompiled, s.Failed))
	if len(s.Errors) > 0 {
		parts = append(parts, "first error: "+s.Errors[0])
	}
	return strings.Join(parts, ", ")
}

// NewGraphConvFromID builds the graph as NewGraphConv does and the one
// engine configuration id names (a GraphEngine.ID saved in a plan),
// without asking the heuristics. When that configuration does not build
// here (another cuDNN version or GPU, or more workspace than
// o.MaxWorkspace) the error wraps ErrStaleEngine,
// and the caller tunes again. A malformed id is an error that does not.
func (d *CUDNN) NewGraphConvFromID(h CUDNNHandle, p ConvParams, oh, ow int, o GraphConvOptions, id string) (_ *GraphConv, err error) {
	engine, knobs, err := ParseEngineID(id)
	if err != nil {
		return nil, err
	}
	c, err := d.newGraph(h, p, oh, ow, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Destroy()
		}
	}()
	stale := func(err error) error {
		return fmt.Errorf("%w: %s for %s: %w", ErrStaleEngine, id, c.describeGraph(), err)
	}
	count, err := c.b.getInt64(c.op, beAttrGraphEngineCount)
	if err != nil {
		return nil, err
	}
	if int64(engine) >= count {
		return nil, fmt.Errorf("%w: %s for %s: this cuDNN (%d) has %d engines for the graph", ErrStaleEngine, id, c.describeGraph(), d.Version(), count)
	}
	b := c.b
	eng, err := b.create(beDescEngine)
	if err != nil {
		return nil, err
	}
	defer b.destroy(eng)
	if err := b.setDescs(eng, beAttrEngineGraph, c.op); err != nil {
		return nil, err
	}
	if err := b.setInt64(eng, beAttrEngineIndex, int64(engine)); err != nil {
		return nil, err
	}
	if err := b.finalize(eng); err != nil {
		return nil, stale(err)
	}
	var choices []beDesc
	defer func() { b.destroyAll(choices) }()
	for _, k := range knobs {
		kc, err := b.create(beDescKnobChoice)
		if err != nil {
			return nil, err
		}
		choices = append(choices, kc)
		if err := b.setEnum(kc, beAttrKnobType, beTypeKnobType, int32(k.Type)); err != nil {
			return nil, stale(err)
		}
		if err := b.setInt64(kc, beAttrKnobValue, k.Value); err != nil {
			return nil, stale(err)
		}
		if err := b.finalize(kc); err != nil {
			return nil, stale(err)
		}
	}
	cfg, err := b.create(beDescEngineCfg)
	if err != nil {
		return nil, err
	}
	if err := b.setDescs(cfg, beAttrCfgEngine, eng); err != nil {
		b.destroy(cfg)
		return nil, err
	}
	if len(choices) > 0 {
		if err := b.setDescs(cfg, beAttrCfgKnobChoices, choices...); err != nil {
			b.destroy(cfg)
			return nil, stale(err)
		}
	}
	if err := b.finalize(cfg); err != nil {
		b.destroy(cfg)
		return nil, stale(err)
	}
	e, err := c.describe(cfg)
	if err != nil {
		b.destroy(cfg)
		return nil, err
	}
	if err := c.plan(h, &e, cfg); err != nil {
		if errors.Is(err, ErrStaleEngine) {
			return nil, err
		}
		return nil, stale(err)
	}
	c.Candidates = []GraphEngine{e}
	return c, nil
}

// describeGraph names the graph in errors.
func (c *GraphConv) describeGraph() string {
	p := c.p
	layout, dt := "NCHW", "float32"
	if p.NHWC {
		layout = "NHWC"
	}
	if p.Half {
		dt = "half"
	}
	if q := c.o.Quant; q.on() {
		dt = q.In.String() + " -> " + q.out().String()
	}
	s := fmt.Sprintf("conv %dx%dx%dx%d -> %d, %dx%d/%d pad %d %s %s", p.N, p.C, p.H, p.W, p.M, p.KH, p.KW, p.StrideH, p.PadH, layout, dt)
	if c.o.Quant.Scale {
		s += " * scale"
	}
	if c.o.Bias {
		s += " + bias"
	}
	if c.o.Residual {
		s += " + z"
	}
	if c.o.ReLU {
		s += ", ReLU"
	}
	if c.o.Quant.PostScale {
		s += " * post-scale"
	}
	return s
}

// newGraph checks p and builds and finalizes the operation graph.
func (d *CUDNN) newGraph(h CUDNNHandle, p ConvParams, oh, ow int, o GraphConvOptions) (_ *GraphConv, err error) {
	g := max(p.Group, 1)
	switch {
	case p.N < 1 || p.C < 1 || p.H < 1 || p.W < 1 || p.M < 1 || p.KH < 1 || p.KW < 1 || oh < 1 || ow < 1:
		return nil, fmt.Errorf("cuda: graph convolution: every dimension must be positive (N %d C %d H %d W %d M %d kernel %dx%d output %dx%d)",
			p.N, p.C, p.H, p.W, p.M, p.KH, p.KW, oh, ow)
	case p.StrideH < 1 || p.StrideW < 1 || p.DilH < 1 || p.DilW < 1 || p.PadH < 0 || p.PadW < 0:
		return nil, fmt.Errorf("cuda: graph convolution: strides %dx%d and dilations %dx%d must be positive, pads %dx%d not negative",
			p.StrideH, p.StrideW, p.DilH, p.DilW, p.PadH, p.PadW)
	case p.C%g != 0 || p.M%g != 0:
		return nil, fmt.Errorf("cuda: graph convolution: %d groups do not divide C %d and M %d", g, p.C, p.M)
	}
	if want := (p.H+2*p.PadH-p.DilH*(p.KH-1)-1)/p.StrideH + 1; want != oh {
		return nil, fmt.Errorf("cuda: graph convolution: output height %d, the convolution gives %d", oh, want)
	}
	if want := (p.W+2*p.PadW-p.DilW*(p.KW-1)-1)/p.StrideW + 1; want != ow {
		return nil, fmt.Errorf("cuda: graph convolution: output width %d, the convolution gives %d", ow, want)
	}
	f, err := d.graph()
	if err != nil {
		return nil, err
	}
	if err := o.Quant.check(p); err != nil {
		return nil, err
	}
	mem := cMalloc((2*graphTensors + 1) * 8)
	c := &GraphConv{b: backend{d, f}, p: p, o: o, vpMem: mem}
	defer func() {
		if err != nil {
			c.Destroy()
		}
	}()
	b := c.b
	dt := int32(cudnnDataFloat)
	if p.Half {
		dt = cudnnDataHalf
	}
	// quantized graphs: x and w 8-bit, y and z o.Quant.Out, the bias and
	// the scales float32, the accumulation INT32 (INT8) or float32 (FP8)
	xdt, ydt, edt, comp := dt, dt, dt, int32(cudnnDataFloat)
	q := o.Quant
	if q.on() {
		xdt, ydt, edt, comp = q.In.cudnn(), q.out().cudnn(), cudnnDataFloat, q.compute()
	}
	// dims and strides of an [A,B,H,W] tensor in p's layout
	strides := func(a, bb, hh, ww int64) []int64 {
		if p.NHWC {
			return []int64{hh * ww * bb, 1, ww * bb, bb}
		}
		return []int64{bb * hh * ww, hh * ww, ww, 1}
	}
	tensor := func(uid int64, dtype int32, virtual bool, a, bb, hh, ww int) (beDesc, error) {
		t, err := b.create(beDescTensor)
		if err != nil {
			return beDesc{}, err
		}
		c.keep = append(c.keep, t)
		for _, set := range []func() error{
			func() error { return b.setEnum(t, beAttrTensorDataType, beTypeDataType, dtype) },
			func() error { return b.setInt64(t, beAttrTensorDims, int64(a), int64(bb), int64(hh), int64(ww)) },
			func() error {
				return b.setInt64(t, beAttrTensorStrides, strides(int64(a), int64(bb), int64(hh), int64(ww))...)
			},
			func() error { return b.setInt64(t, beAttrTensorUID, uid) },
			func() error { return b.setInt64(t, beAttrTensorAlignment, 16) },
			func() error {
				if virtual {
					return b.setBool(t, beAttrTensorVirtual, true)
				}
				return nil
			},
			func() error { return b.finalize(t) },
		} {
			if err := set(); err != nil {
				return beDesc{}, fmt.Errorf("tensor %d of %s: %w", uid, c.describeGraph(), err)
			}
		}
		return t, nil
	}
	x, err := tensor(uidX, xdt, false, p.N, p.C, p.H, p.W)
	if err != nil {
		return nil, err
	}
	w, err := tensor(uidW, xdt, false, p.M, p.C/g, p.KH, p.KW)
	if err != nil {
		return nil, err
	}
	y, err := tensor(uidY, ydt, false, p.N, p.M, oh, ow)
	if err != nil {
		return nil, err
	}
	// the chain conv -> (*scale) -> (+bias) -> (+z) -> (ReLU) -> (*post):
	// each operation's output is a virtual float32 tensor, except the last
	// one's, which is y
	remaining := 0
	for _, on := range []bool{q.Scale, o.Bias, o.Residual, o.ReLU, q.PostScale} {
		if on {
			remaining++
		}
	}
	next := func(uid int64) (beDesc, error) {
		if remaining == 0 {
			return y, nil
		}
		remaining--
		return tensor(uid, cudnnDataFloat, true, p.N, p.M, oh, ow)
	}
	convOut, err := next(uidConv)
	if err != nil {
		return nil, err
	}

	cd, err := b.create(beDescConvolution)
	if err != nil {
		return nil, err
	}
	c.keep = append(c.keep, cd)
	for _, set := range []func() error{
		func() error { return b.setInt64(cd, beAttrConvSpatialDims, 2) },
		func() error { return b.setEnum(cd, beAttrConvCompType, beTypeDataType, comp) },
		func() error { return b.setEnum(cd, beAttrConvMode, beTypeConvMode, cudnnCrossCorrelation) },
		func() error { return b.setInt64(cd, beAttrConvPrePad, int64(p.PadH), int64(p.PadW)) },
		func() error { return b.setInt64(cd, beAttrConvPostPad, int64(p.PadH), int64(p.PadW)) },
		func() error { return b.setInt64(cd, beAttrConvDilations, int64(p.DilH), int64(p.DilW)) },
		func() error { return b.setInt64(cd, beAttrConvStrides, int64(p.StrideH), int64(p.StrideW)) },
		func() error { return b.finalize(cd) },
	} {
		if err := set(); err != nil {
			return nil, fmt.Errorf("%s: %w", c.describeGraph(), err)
		}
	}
	conv, err := b.create(beDescOpConvForward)
	if err != nil {
		return nil, err
	}
	c.keep = append(c.keep, conv)
	for _, set := range []func() error{
		func() error { return b.setDescs(conv, beAttrConvFwdX, x) },
		func() error { return b.setDescs(conv, beAttrConvFwdW, w) },
		func() error { return b.setDescs(conv, beAttrConvFwdY, convOut) },
		func() error { return b.setDescs(conv, beAttrConvFwdConv, cd) },
		func() error { return b.setFloat(conv, beAttrConvFwdAlpha, 1) },
		func() error { return b.setFloat(conv, beAttrConvFwdBeta, 0) },
		func() error { return b.finalize(conv) },
	} {
		if err := set(); err != nil {
			return nil, fmt.Errorf("%s: %w", c.describeGraph(), err)
		}
	}
	ops := []beDesc{conv}
	// pointwise adds an operation out = mode(in, with) (with unset for ReLU)
	pointwise := func(mode int32, in, with, out beDesc) error {
		pd, err := b.create(beDescPointwise)
		if err != nil {
			return err
		}
		c.keep = append(c.keep, pd)
		if err := b.setEnum(pd, beAttrPointwiseMode, beTypePointwiseMode, mode); err != nil {
			return err
		}
		if err := b.setEnum(pd, beAttrPointwiseMathPrec, beTypeDataType, cudnnDataFloat); err != nil {
			return err
		}
		if err := b.finalize(pd); err != nil {
			return err
		}
		op, err := b.create(beDescOpPointwise)
		if err != nil {
			return err
		}
		c.keep = append(c.keep, op)
		if err := b.setDescs(op, beAttrPwDesc, pd); err != nil {
			return err
		}
		if err := b.setDescs(op, beAttrPwX, in); err != nil {
			return err
		}
		if with.p != 0 {
			if err := b.setDescs(op, beAttrPwB, with); err != nil {
				return err
			}
		}
		if err := b.setDescs(op, beAttrPwY, out); err != nil {
			return err
		}
		if err := b.finalize(op); err != nil {
			return err
		}
		ops = append(ops, op)
		return nil
	}
	cur := convOut
	// scale multiplies cur by the [1,M,1,1] float32 tensor uid
	scale := func(uid, outUID int64, what string) error {
		s, err := tensor(uid, cudnnDataFloat, false, 1, p.M, 1, 1)
		if err != nil {
			return err
		}
		out, err := next(outUID)
		if err != nil {
			return err
		}
		if err := pointwise(cudnnPointwiseMul, cur, s, out); err != nil {
			return fmt.Errorf("%s, %s: %w", c.describeGraph(), what, err)
		}
		cur = out
		return nil
	}
	if q.Scale {
		if err := scale(uidScale, uidScaled, "scale"); err != nil {
			return nil, err
		}
	}
	if o.Bias {
		bias, err := c.biasTensor(tensor, edt)
		if err != nil {
			return nil, err
		}
		out, err := next(uidBiased)
		if err != nil {
			return nil, err
		}
		if err := pointwise(cudnnPointwiseAdd, cur, bias, out); err != nil {
			return nil, fmt.Errorf("%s, bias: %w", c.describeGraph(), err)
		}
		cur = out
	}
	if o.Residual {
		z, err := tensor(uidZ, c.zType(ydt), false, p.N, p.M, oh, ow)
		if err != nil {
			return nil, err
		}
		out, err := next(uidSum)
		if err != nil {
			return nil, err
		}
		if err := pointwise(cudnnPointwiseAdd, cur, z, out); err != nil {
			return nil, fmt.Errorf("%s, residual: %w", c.describeGraph(), err)
		}
		cur = out
	}
	if o.ReLU {
		out, err := next(uidAct)
		if err != nil {
			return nil, err
		}
		if err := pointwise(cudnnPointwiseReluFwd, cur, beDesc{}, out); err != nil {
			return nil, fmt.Errorf("%s, ReLU: %w", c.describeGraph(), err)
		}
		cur = out
	}
	if q.PostScale {
		if err := scale(uidPost, 0, "post-scale"); err != nil {
			return nil, err
		}
	}
	c.op, err = b.create(beDescOpGraph)
	if err != nil {
		return nil, err
	}
	c.keep = append(c.keep, c.op)
	if err := b.setHandle(c.op, beAttrGraphHandle, h); err != nil {
		return nil, err
	}
	if err := b.setDescs(c.op, beAttrGraphOps, ops...); err != nil {
		return nil, err
	}
	if err := b.finalize(c.op); err != nil {
		return nil, fmt.Errorf("%s: %w", c.describeGraph(), err)
	}
	return c, nil
}

// biasTensor makes the [1,M,1,1] bias tensor.
func (c *GraphConv) biasTensor(tensor func(int64, int32, bool, int, int, int, int) (beDesc, error), dt int32) (beDesc, error) {
	return tensor(uidBias, dt, false, 1, c.p.M, 1, 1)
}

// heuristics returns the engine configurations list m gives (finalized
// ENGINECFG descriptors, the caller's to destroy).
func (c *GraphConv) heuristics(m HeurMode) ([]beDesc, error) {
	b := c.b
	heur, err := b.create(beDescEngineHeur)
	if err != nil {
		return nil, err
	}
	c.keep = append(c.keep, heur)
	if err := b.setDescs(heur, beAttrHeurGraph, c.op); err != nil {
		return nil, err
	}
	if err := b.setEnum(heur, beAttrHeurMode, beTypeHeurMode, int32(m)); err != nil {
		return nil, err
	}
	if err := b.finalize(heur); err != nil {
		return nil, fmt.Errorf("heuristics %s: %w", m, err)
	}
	cfgs, err := b.getDescs(heur, beAttrHeurResults, beDescEngineCfg, 0)
	if err != nil {
		return nil, fmt.Errorf("heuristics %s: %w", m, err)
	}
	return cfgs, nil
}

// describe reads an engine configuration's engine, knobs, notes and
// workspace.
func (c *GraphConv) describe(cfg beDesc) (GraphEngine, error) {
	b := c.b
	var e GraphEngine
	engs, err := b.getDescs(cfg, beAttrCfgEngine, beDescEngine, 1)
	if err != nil {
		return e, err
	}
	defer b.destroyAll(engs)
	if len(engs) != 1 {
		return e, fmt.Errorf("cuda: an engine configuration of %s has %d engines", c.describeGraph(), len(engs))
	}
	idx, err := b.getInt64(engs[0], beAttrEngineIndex)
	if err != nil {
		return e, err
	}
	e.Engine = int(idx)
	// the notes: room for more than cuDNN 9 defines, then (should a
	// library refuse that) as many as 9.6 defines
	notes, err := b.getEnums(engs[0], beAttrEngineNumNote, beTypeNumericalNote, 32)
	if err != nil {
		notes, err = b.getEnums(engs[0], beAttrEngineNumNote, beTypeNumericalNote, 10) // CUDNN_NUMERICAL_NOTE_TYPE_COUNT
	}
	if err != nil {
		return e, err
	}
	e.TensorCore = slices.Contains(notes, cudnnNoteTensorCore)
	e.ReducedPrecision = slices.Contains(notes, cudnnNoteDownConvert) || slices.Contains(notes, cudnnNoteReducedReduction)
	beh, err := b.getEnums(engs[0], beAttrEngineBehNote, beTypeBehaviorNote, 32)
	if err != nil {
		beh, err = b.getEnums(engs[0], beAttrEngineBehNote, beTypeBehaviorNote, 4) // CUDNN_BEHAVIOR_NOTE_TYPE_COUNT
	}
	if err != nil {
		return e, err
	}
	e.RuntimeCompiled = slices.Contains(beh, cudnnBehaviorRuntimeCompile)
	choices, err := b.getDescs(cfg, beAttrCfgKnobChoices, beDescKnobChoice, maxKnobChoices)
	if err != nil {
		choices, err = b.getDescs(cfg, beAttrCfgKnobChoices, beDescKnobChoice, 0) // ask for the count
	}
	if err != nil {
		return e, err
	}
	defer b.destroyAll(choices)
	for _, kc := range choices {
		ts, err := b.getEnums(kc, beAttrKnobType, beTypeKnobType, 1)
		if err != nil {
			return e, err
		}
		v, err := b.getInt64(kc, beAttrKnobValue)
		if err != nil {
			return e, err
		}
		if len(ts) == 1 {
			e.Knobs = append(e.Knobs, Knob{int64(ts[0]), v})
		}
	}
	slices.SortFunc(e.Knobs, func(a, b Knob) int { return int(a.Type - b.Type) })
	e.ID = engineID(e.Engine, e.Knobs)
	// the configuration's workspace (cuDNN 9.2 and later): lets an
	// over-limit configuration be skipped before its plan is built
	if ws, err := b.getInt64(cfg, beAttrCfgWorkspace); err == nil {
		e.Workspace = int(ws)
	}
	return e, nil
}

// plan builds e's execution plan from cfg, which it keeps (or destroys on
// failure). A plan over the workspace limit is an error wrapping
// ErrStaleEngine.
func (c *GraphConv) plan(h CUDNNHandle, e *GraphEngine, cfg beDesc) error {
	b := c.b
	pl, err := b.create(beDescPlan)
	if err != nil {
		b.destroy(cfg)
		return err
	}
	fail := func(err error) error {
		b.destroy(pl)
		b.destroy(cfg)
		return err
	}
	if err := b.setHandle(pl, beAttrPlanHandle, h); err != nil {
		return fail(err)
	}
	if err := b.setDescs(pl, beAttrPlanEngineCfg, cfg); err != nil {
		return fail(err)
	}
	start := time.Now()
	if err := b.finalize(pl); err != nil {
		return fail(err)
	}
	e.Build = time.Since(start)
	ws, err := b.getInt64(pl, beAttrPlanWorkspace)
	if err != nil {
		return fail(err)
	}
	e.Workspace = int(ws)
	if e.Workspace > c.o.MaxWorkspace {
		return fail(fmt.Errorf("%w: %s needs %d bytes of workspace, over the limit of %d", ErrStaleEngine, e.ID, e.Workspace, c.o.MaxWorkspace))
	}
	e.plan, e.cfg = pl, cfg
	return nil
}

// Engine returns the candidate Execute runs.
func (c *GraphConv) Engine() GraphEngine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Candidates[c.cur]
}

// Use makes Execute run the candidate whose ID is id.
func (c *GraphConv) Use(id string) error {
	for i, e := range c.Candidates {
		if e.ID == id {
			c.mu.Lock()
			c.cur = i
			c.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("cuda: %s has no candidate %q", c.describeGraph(), id)
}

// Keep makes Execute run the candidate whose ID is id and frees the other
// candidates' execution plans (Candidates keeps only that one).
func (c *GraphConv) Keep(id string) error {
	if err := c.Use(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropPack()
	for i, e := range c.Candidates {
		if i != c.cur {
			c.b.destroy(e.plan)
			c.b.destroy(e.cfg)
		}
	}
	c.Candidates = []GraphEngine{c.Candidates[c.cur]}
	c.cur = 0
	return nil
}

// Execute queues y = act(conv(x, w) + bias + z) on h's stream (see
// CUDNN.SetStream) with the chosen candidate; bias and z are read only
// when the graph has them (0 otherwise), workspace must hold
// Engine().Workspace bytes. Every pointer must be 16-byte aligned. Called
// again with the same pointers and candidate it reuses its variant pack
// and does not allocate. A quantized graph with scales runs with
// ExecuteQuant.
func (c *GraphConv) Execute(h CUDNNHandle, x, w, bias, z, y, workspace DevicePtr) error {
	return c.execute(h, graphPtrs{x, w, y, bias, z, 0, 0}, workspace)
}

// graphPtrs are the device pointers of a graph's tensors, in uid order
// (x, w, y, bias, z, scale, post); 0 for the tensors it does not have.
type graphPtrs [graphTensors]DevicePtr

// graphUIDs are the uids of graphPtrs' entries.
var graphUIDs = [graphTensors]int64{uidX, uidW, uidY, uidBias, uidZ, uidScale, uidPost}

// has says which of graphPtrs' tensors the graph has.
func (c *GraphConv) has() [graphTensors]bool {
	return [graphTensors]bool{true, true, true, c.o.Bias, c.o.Residual, c.o.Quant.Scale, c.o.Quant.PostScale}
}

func (c *GraphConv) execute(h CUDNNHandle, ps graphPtrs, workspace DevicePtr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.op.p == 0 {
		return fmt.Errorf("cuda: Execute of a destroyed graph convolution")
	}
	e := &c.Candidates[c.cur]
	has := c.has()
	for i, p := range ps {
		if has[i] && p == 0 {
			return c.missing(ps, workspace)
		}
	}
	if e.Workspace > 0 && workspace == 0 {
		return c.missing(ps, workspace)
	}
	uids := unsafe.Slice((*int64)(c.vpMem), graphTensors)
	ptrs := unsafe.Slice((*uint64)(unsafe.Add(c.vpMem, graphTensors*8)), graphTensors+1) // the data pointers, then the workspace
	var want [graphTensors + 1]uint64
	n := 0
	for i, p := range ps {
		if has[i] {
			want[n] = uint64(p)
			n++
		}
	}
	want[graphTensors] = uint64(workspace)
	// a variant pack names tensors and pointers, not a plan: it serves
	// every candidate
	if !c.vpValid || c.vpN != n || [graphTensors + 1]uint64(ptrs) != want {
		c.dropPack()
		if err := c.pack(want, n, uids, ptrs); err != nil {
			return err
		}
	}
	if r := callC(c.b.f.execute, uintptr(h.p), e.plan.p, c.vp.p); r != 0 {
		return c.b.fail("cudnnBackendExecute", e.plan, -1, r)
	}
	return nil
}

// pack builds the variant pack for the pointers want (the n tensors the
// graph has, in uid order, then at graphTensors the workspace), in C
// memory.
func (c *GraphConv) pack(want [graphTensors + 1]uint64, n int, uids []int64, ptrs []uint64) error {
	b := c.b
	copy(ptrs, want[:])
	has := c.has()
	i := 0
	for j, u := range graphUIDs {
		if has[j] {
			uids[i] = u
			i++
		}
	}
	vp, err := b.create(beDescVariantPack)
	if err != nil {
		return err
	}
	if err := b.setRaw(vp, beAttrVPUIDs, beTypeInt64, n, c.vpMem); err == nil {
		if err = b.setRaw(vp, beAttrVPPointers, beTypeVoidPtr, n, unsafe.Add(c.vpMem, graphTensors*8)); err == nil {
			if err = b.setRaw(vp, beAttrVPWorkspace, beTypeVoidPtr, 1, unsafe.Add(c.vpMem, 2*graphTensors*8)); err == nil {
				err = b.finalize(vp)
			}
		}
		if err != nil {
			b.destroy(vp)
			return err
		}
	} else {
		b.destroy(vp)
		return err
	}
	c.vp, c.vpN, c.vpValid = vp, n, true
	return nil
}

// dropPack destroys the cached variant pack.
func (c *GraphConv) dropPack() {
	if c.vpValid {
		c.b.destroy(c.vp)
		c.vp, c.vpValid = beDesc{}, false
	}
}

func (c *GraphConv) missing(ps graphPtrs, workspace DevicePtr) error {
	var miss []string
	has := c.has()
	for i, name := range []string{"x", "w", "y", "bias", "z", "scale", "post-scale"} {
		if has[i] && ps[i] == 0 {
			miss = append(miss, name)
		}
	}
	if workspace == 0 {
		miss = append(miss, fmt.Sprintf("workspace (%d bytes)", c.Candidates[c.cur].Workspace))
	}
	return fmt.Errorf("cuda: Execute of %s: no device pointer for %s", c.describeGraph(), strings.Join(miss, ", "))
}

// Destroy frees the plans, the graph and its descriptors.
func (c *GraphConv) Destroy() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropPack()
	for _, e := range c.Candidates {
		c.b.destroy(e.plan)
		c.b.destroy(e.cfg)
	}
	c.Candidates = nil
	for i := len(c.keep) - 1; i >= 0; i-- {
		c.b.destroy(c.keep[i])
	}
	c.keep, c.op = nil, beDesc{}
	cFree(c.vpMem)
	c.vpMem = nil
}
