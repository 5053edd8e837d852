// A fake libcudnn (9.14) for tests on machines without a GPU: the legacy
// convolution API, whose algorithm query returns a tensor-op algorithm
// (which kiln must skip in float32, and takes in half) and then algorithm 1
// in FMA math, then (when asked for 3 or more) algorithm 0 in FMA math.
// cudnnConvolutionForward fails with CUDNN_STATUS_EXECUTION_FAILED when
// $KILN_FAKE_CUDNN_FAIL is set. Built by the tests with cc.
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	int algo, status;
	float time;
	size_t memory;
	int determinism, mathType, reserved[3];
} perf_t;

size_t cudnnGetVersion(void) { return 91400; }
const char *cudnnGetErrorString(int code) {
	switch (code) {
	case 8: case 5000: return "CUDNN_STATUS_EXECUTION_FAILED";
	case 2000: return "CUDNN_STATUS_BAD_PARAM";
	case 2004: return "CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED";
	case 2010: return "CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE";
	case 2012: return "CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE";
	case 3000: return "CUDNN_STATUS_NOT_SUPPORTED";
	}
	return "CUDNN_STATUS_SUCCESS";
}
int cudnnCreate(void **h) { *h = malloc(8); return 0; } /* a real address: Go keeps it in an unsafe.Pointer */
int cudnnDestroy(void *h) { free(h); return 0; }
int cudnnSetStream(void *h, void *s) { return 0; }
int cudnnCreateTensorDescriptor(void **d) { *d = malloc(8); return 0; }
int cudnnDestroyTensorDescriptor(void *d) { free(d); return 0; }
int cudnnSetTensor4dDescriptor(void *d, int f, int t, int n, int c, int h, int w) { return n > 0 && c > 0 && h > 0 && w > 0 ? 0 : 3; }
int cudnnCreateFilterDescriptor(void **d) { *d = malloc(8); return 0; }
int cudnnDestroyFilterDescriptor(void *d) { free(d); return 0; }
int cudnnSetFilter4dDescriptor(void *d, int t, int f, int k, int c, int h, int w) { return 0; }
int cudnnCreateConvolutionDescriptor(void **d) { *d = malloc(8); return 0; }
int cudnnDestroyConvolutionDescriptor(void *d) { free(d); return 0; }
int cudnnSetConvolution2dDescriptor(void *d, int ph, int pw, int u, int v, int dh, int dw, int mode, int t) { return mode == 1 ? 0 : 3; }
int cudnnSetConvolutionGroupCount(void *d, int g) { return g > 0 ? 0 : 3; }
int cudnnSetConvolutionMathType(void *d, int m) { return m == 3 || m == 1 ? 0 : 3; }
int cudnnGetConvolutionForwardAlgorithm_v7(void *h, void *x, void *w, void *c, void *y, int req, int *ret, perf_t *p) {
	if (req < 2) return 3;
	p[0] = (perf_t){.algo = 6, .status = 0, .memory = 0, .mathType = 1};
	p[1] = (perf_t){.algo = 1, .status = 0, .memory = 4096, .mathType = 3};
	*ret = 2;
	if (req >= 3) {
		p[2] = (perf_t){.algo = 0, .status = 0, .memory = 0, .mathType = 3};
		*ret = 3;
	}
	return 0;
}
int cudnnGetConvolutionForwardWorkspaceSize(void *h, void *x, void *w, void *c, void *y, int algo, size_t *n) {
	*n = algo == 1 ? 4096 : 0;
	return 0;
}
int cudnnConvolutionForward(void *h, const float *alpha, void *xd, const void *x, void *wd, const void *w, void *cd, int algo,
                            void *ws, size_t wsSize, const float *beta, void *yd, void *y) {
	if (getenv("KILN_FAKE_CUDNN_FAIL")) return 8;
	return *alpha == 1 && *beta == 0 && ((algo == 1 && wsSize >= 4096) || algo == 6 || algo == 0) ? 0 : 3;
}

// The fused convolution: the activation descriptor remembers its mode and
// coefficient (a double, passed in a floating-point register), and the
// forward call checks its 18 arguments' positions: the scales, the
// descriptors it was given (z and y share y's), the activation.
typedef struct { int mode, nan; double coef; } act_t;
int cudnnCreateActivationDescriptor(void **d) { *d = calloc(1, sizeof(act_t)); return 0; }
int cudnnDestroyActivationDescriptor(void *d) { free(d); return 0; }
int cudnnSetActivationDescriptor(void *d, int mode, int nan, double coef) {
	if ((mode != 1 && mode != 5) || nan != 0 || coef != 0.0) return 3;
	((act_t *)d)->mode = mode;
	((act_t *)d)->nan = nan;
	((act_t *)d)->coef = coef;
	return 0;
}
int cudnnConvolutionBiasActivationForward(void *h, const float *alpha1, void *xd, const void *x, void *wd, const void *w, void *cd,
                                          int algo, void *ws, size_t wsSize, const float *alpha2, void *zd, const void *z,
                                          void *bd, const void *bias, act_t *ad, void *yd, void *y) {
	if (getenv("KILN_FAKE_CUDNN_FAIL")) return 8;
	if (*alpha1 != 1 || (*alpha2 != 0 && *alpha2 != 1) || zd != yd || bd == NULL || bd == yd || ad == NULL) return 3;
	if (ad->mode != 1 && ad->mode != 5) return 3;
	if (*alpha2 == 0 && z != y) return 3;
	return (algo == 1 && wsSize >= 4096) || algo == 6 || algo == 0 ? 0 : 3;
}

// ---------------------------------------------------------------------------
// The graph (backend) API. Descriptors remember the attributes set on them;
// cudnnBackendSetAttribute checks that the attribute belongs to the
// descriptor's type and has the attribute type cuDNN 9 expects for it, and
// that descriptor arguments are finalized descriptors of the right type;
// cudnnBackendFinalize checks the required attributes and the shapes (the
// convolution's output size, pointwise broadcasting, the graph's virtual
// tensors each produced and consumed). The heuristics return fixed lists
// of engine configurations (see heur_list); engine 6's plan does not
// finalize; engines 8 and above do not exist. cudnnBackendExecute checks
// that the variant pack gives a pointer for exactly the graph's non-virtual
// tensors and a workspace when the plan needs one; it fails with
// CUDNN_STATUS_EXECUTION_FAILED when $KILN_FAKE_CUDNN_FAIL is set.
// $KILN_FAKE_CUDNN_TRACE names a file that receives one line per backend
// call (descriptors numbered from 1 in creation order after the file is
// named; the creation and destruction of knob choice descriptors, 64 per
// engine configuration read, are left out). Nothing is computed.

enum { T_HANDLE = 0, T_DATA_TYPE = 1, T_BOOLEAN = 2, T_INT64 = 3, T_FLOAT = 4, T_DOUBLE = 5, T_VOID_PTR = 6,
       T_CONV_MODE = 7, T_HEUR_MODE = 8, T_KNOB_TYPE = 9, T_NUMERICAL_NOTE = 11, T_POINTWISE_MODE = 14,
       T_DESCRIPTOR = 15, T_BEHAVIOR_NOTE = 19 };
enum { D_POINTWISE = 0, D_CONVOLUTION = 1, D_ENGINE = 2, D_ENGINECFG = 3, D_ENGINEHEUR = 4, D_PLAN = 5,
       D_KNOB_CHOICE = 7, D_OP_CONV_FWD = 10, D_OP_POINTWISE = 13, D_GRAPH = 15, D_VARIANT_PACK = 16, D_TENSOR = 17 };
static const char *dname(int t) {
	switch (t) {
	case D_POINTWISE: return "POINTWISE";
	case D_CONVOLUTION: return "CONVOLUTION";
	case D_ENGINE: return "ENGINE";
	case D_ENGINECFG: return "ENGINECFG";
	case D_ENGINEHEUR: return "ENGINEHEUR";
	case D_PLAN: return "EXECUTION_PLAN";
	case D_KNOB_CHOICE: return "KNOB_CHOICE";
	case D_OP_CONV_FWD: return "OPERATION_CONVOLUTION_FORWARD";
	case D_OP_POINTWISE: return "OPERATION_POINTWISE";
	case D_GRAPH: return "OPERATIONGRAPH";
	case D_VARIANT_PACK: return "VARIANT_PACK";
	case D_TENSOR: return "TENSOR";
	}
	return "?";
}

enum { MAXV = 16, MAXA = 16 };
typedef struct attr { int name, type; int64_t n; int64_t v[MAXV]; } attr_t;
typedef struct desc {
	int type, id, finalized;
	attr_t a[MAXA];
	int na;
	// engine configurations (and engines): what they hold once finalized
	int64_t engine;
	struct desc *graph;
	int nknob;
	int64_t ktype[8], kval[8];
	// graphs: their tensors
	struct desc *tensors[16];
	int ntensors;
} desc_t;

static int live, next_id = 1, trace_base = 1;
static char last_err[256];
int fakeCudnnLiveDescriptors(void) { return live; }
void cudnnGetLastErrorString(char *msg, size_t n) {
	if (n == 0) return;
	strncpy(msg, last_err, n - 1);
	msg[n - 1] = 0;
	last_err[0] = 0;
}
static int fail(int code, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_err, sizeof last_err, fmt, ap);
	va_end(ap);
	return code;
}

static FILE *trace_file;
static char trace_path[512];
// trace_open (re)opens the trace file when $KILN_FAKE_CUDNN_TRACE changed.
static void trace_open(void) {
	const char *p = getenv("KILN_FAKE_CUDNN_TRACE");
	if (!p || !*p) {
		if (trace_file) fclose(trace_file);
		trace_file = NULL;
		trace_path[0] = 0;
		return;
	}
	if (!trace_file || strcmp(p, trace_path) != 0) {
		if (trace_file) fclose(trace_file);
		trace_file = fopen(p, "a");
		snprintf(trace_path, sizeof trace_path, "%s", p);
		trace_base = next_id;
	}
}
static void trace(const char *fmt, ...) {
	trace_open();
	if (!trace_file) return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(trace_file, fmt, ap);
	va_end(ap);
	fputc('\n', trace_file);
	fflush(trace_file);
}
static int ord(desc_t *d) { return d ? d->id - trace_base + 1 : 0; }

int cudnnBackendCreateDescriptor(int type, desc_t **out) {
	if (!out) return fail(2002, "null output");
	if (strcmp(dname(type), "?") == 0) return fail(2000, "descriptor type %d not in the fake", type);
	trace_open();
	desc_t *d = calloc(1, sizeof *d);
	d->type = type;
	d->id = next_id++;
	d->engine = -1;
	live++;
	*out = d;
	if (type != D_KNOB_CHOICE) trace("create #%d %s", ord(d), dname(type));
	return 0;
}
int cudnnBackendDestroyDescriptor(desc_t *d) {
	if (!d) return fail(2002, "null descriptor");
	if (d->type != D_KNOB_CHOICE) trace("destroy #%d %s", ord(d), dname(d->type));
	live--;
	free(d);
	return 0;
}

// the attribute type each attribute takes, and the descriptor type it belongs to
static int attr_type(int name) {
	switch (name) {
	case 0: return T_POINTWISE_MODE;
	case 1: return T_DATA_TYPE;
	case 3: return T_DOUBLE; // CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP
	case 100: return T_DATA_TYPE;
	case 101: return T_CONV_MODE;
	case 102: case 103: case 104: case 105: case 106: return T_INT64;
	case 200: return T_HEUR_MODE;
	case 201: case 202: return T_DESCRIPTOR;
	case 300: case 302: return T_DESCRIPTOR;
	case 303: return T_INT64;
	case 400: return T_HANDLE;
	case 401: return T_DESCRIPTOR;
	case 402: return T_INT64;
	case 600: return T_KNOB_TYPE;
	case 601: return T_INT64;
	case 700: case 701: return T_FLOAT;
	case 702: case 703: case 704: case 705: return T_DESCRIPTOR;
	case 750: case 751: case 752: case 753: return T_DESCRIPTOR;
	case 800: return T_HANDLE;
	case 801: return T_DESCRIPTOR;
	case 802: return T_INT64;
	case 900: case 902: case 903: case 906: return T_INT64;
	case 901: return T_DATA_TYPE;
	case 907: return T_BOOLEAN;
	case 1000: return T_INT64;
	case 1001: case 1003: return T_VOID_PTR;
	case 1300: return T_DESCRIPTOR;
	case 1301: return T_INT64;
	case 1303: return T_NUMERICAL_NOTE;
	case 1305: return T_BEHAVIOR_NOTE;
	}
	return -1;
}
static int attr_owner(int name) {
	if (name < 100) return D_POINTWISE;
	if (name < 200) return D_CONVOLUTION;
	if (name < 300) return D_ENGINEHEUR;
	if (name < 400) return D_ENGINECFG;
	if (name < 500) return D_PLAN;
	if (name >= 600 && name < 700) return D_KNOB_CHOICE;
	if (name >= 700 && name < 750) return D_OP_CONV_FWD;
	if (name >= 750 && name < 770) return D_OP_POINTWISE;
	if (name >= 800 && name < 900) return D_GRAPH;
	if (name >= 900 && name < 1000) return D_TENSOR;
	if (name >= 1000 && name < 1100) return D_VARIANT_PACK;
	if (name >= 1300 && name < 1400) return D_ENGINE;
	return -1;
}
// the descriptor type a descriptor-valued attribute points to (-1: any operation)
static int attr_target(int name) {
	switch (name) {
	case 201: case 1300: return D_GRAPH;
	case 300: return D_ENGINE;
	case 302: return D_KNOB_CHOICE;
	case 401: return D_ENGINECFG;
	case 702: return D_CONVOLUTION;
	case 703: case 704: case 705: case 751: case 752: case 753: return D_TENSOR;
	case 750: return D_POINTWISE;
	case 801: return -1;
	}
	return -2;
}

static attr_t *find(desc_t *d, int name) {
	for (int i = 0; i < d->na; i++)
		if (d->a[i].name == name) return &d->a[i];
	return NULL;
}
static int64_t val(desc_t *d, int name, int i) {
	attr_t *a = find(d, name);
	return a && i < a->n ? a->v[i] : -1;
}
static desc_t *dval(desc_t *d, int name) {
	attr_t *a = find(d, name);
	return a && a->n > 0 ? (desc_t *)(intptr_t)a->v[0] : NULL;
}

int cudnnBackendSetAttribute(desc_t *d, int name, int type, int64_t n, const void *arr) {
	if (!d) return fail(2002, "null descriptor");
	char buf[400];
	int k = snprintf(buf, sizeof buf, "set #%d %s %d type %d n %lld [", ord(d), dname(d->type), name, type, (long long)n);
	if (d->finalized) return fail(2000, "%s is finalized", dname(d->type));
	if (attr_owner(name) != d->type) return fail(2000, "attribute %d does not belong to %s", name, dname(d->type));
	if (attr_type(name) != type) return fail(2010, "attribute %d takes type %d, not %d", name, attr_type(name), type);
	if (n < 1 || n > MAXV || !arr) return fail(2000, "attribute %d: %lld elements at %p", name, (long long)n, arr);
	attr_t a = {.name = name, .type = type, .n = n};
	for (int64_t i = 0; i < n; i++) {
		switch (type) {
		case T_INT64: a.v[i] = ((const int64_t *)arr)[i]; k += snprintf(buf + k, sizeof buf - k, "%s%lld", i ? " " : "", (long long)a.v[i]); break;
		case T_BOOLEAN: a.v[i] = ((const unsigned char *)arr)[i]; k += snprintf(buf + k, sizeof buf - k, "%s%s", i ? " " : "", a.v[i] ? "true" : "false"); break;
		case T_FLOAT: a.v[i] = (int64_t)(((const float *)arr)[i] * 1000); k += snprintf(buf + k, sizeof buf - k, "%s%g", i ? " " : "", ((const float *)arr)[i]); break;
		case T_DOUBLE: a.v[i] = (int64_t)(((const double *)arr)[i] * 1000); k += snprintf(buf + k, sizeof buf - k, "%s%g", i ? " " : "", ((const double *)arr)[i]); break;
		case T_HANDLE:
			a.v[i] = (intptr_t)((void *const *)arr)[i];
			if (!a.v[i]) return fail(2002, "null handle");
			k += snprintf(buf + k, sizeof buf - k, "handle");
			break;
		case T_VOID_PTR: a.v[i] = (intptr_t)((void *const *)arr)[i]; k += snprintf(buf + k, sizeof buf - k, "%s%#llx", i ? " " : "", (long long)a.v[i]); break;
		case T_DESCRIPTOR: {
			desc_t *x = ((desc_t *const *)arr)[i];
			int want = attr_target(name);
			if (!x) return fail(2002, "attribute %d: null descriptor", name);
			if (want >= 0 && x->type != want) return fail(2012, "attribute %d wants a %s, got a %s", name, dname(want), dname(x->type));
			if (want == -1 && x->type != D_OP_CONV_FWD && x->type != D_OP_POINTWISE) return fail(2012, "attribute %d wants operations, got a %s", name, dname(x->type));
			if (!x->finalized) return fail(2004, "attribute %d: %s #%d is not finalized", name, dname(x->type), ord(x));
			a.v[i] = (intptr_t)x;
			k += snprintf(buf + k, sizeof buf - k, "%s#%d", i ? " " : "", ord(x));
			break;
		}
		default: a.v[i] = ((const int32_t *)arr)[i]; k += snprintf(buf + k, sizeof buf - k, "%s%lld", i ? " " : "", (long long)a.v[i]);
		}
		if (k >= (int)sizeof buf) k = sizeof buf - 1;
	}
	trace("%s]", buf);
	attr_t *old = find(d, name);
	if (old) *old = a;
	else if (d->na < MAXA) d->a[d->na++] = a;
	else return fail(2000, "too many attributes");
	return 0;
}

// engine properties: workspace, notes, knobs
static int64_t engine_workspace(int64_t e) { return e == 0 ? 4096 : e == 2 ? 256 : e == 3 ? 1 << 20 : e == 5 ? 1 << 30 : 0; }
static int engine_knob_ok(int64_t e, int64_t type, int64_t value) {
	if (e != 0) return 0;
	return (type == 2 && (value == 0 || value == 1)) || (type == 14 && value >= 1 && value <= 4);
}

static int has(desc_t *d, int name) { return find(d, name) != NULL; }
static int need(desc_t *d, int n, const int *names) {
	for (int i = 0; i < n; i++)
		if (!has(d, names[i])) return fail(2000, "%s: attribute %d not set", dname(d->type), names[i]);
	return 0;
}
#define NEED(d, ...) do { static const int ns_[] = {__VA_ARGS__}; int r_ = need(d, sizeof ns_ / sizeof ns_[0], ns_); if (r_) return r_; } while (0)
static int virt(desc_t *t) { return val(t, 907, 0) == 1; }

static void add_tensor(desc_t *g, desc_t *t) {
	for (int i = 0; i < g->ntensors; i++)
		if (g->tensors[i] == t) return;
	if (g->ntensors < 16) g->tensors[g->ntensors++] = t;
}

static int finalize(desc_t *d) {
	switch (d->type) {
	case D_TENSOR: {
		NEED(d, 901, 902, 903, 906, 900);
		attr_t *dims = find(d, 902), *str = find(d, 903);
		if (dims->n != 4 || str->n != 4) return fail(2000, "tensor: %lld dims, %lld strides", (long long)dims->n, (long long)str->n);
		for (int i = 0; i < 4; i++)
			if (dims->v[i] < 1 || str->v[i] < 1) return fail(2000, "tensor: dimension %d is %lld, stride %lld", i, (long long)dims->v[i], (long long)str->v[i]);
		if (val(d, 900, 0) < 2) return fail(2000, "tensor: alignment %lld", (long long)val(d, 900, 0));
		return 0;
	}
	case D_CONVOLUTION:
		NEED(d, 106, 100, 101, 102, 103, 104, 105);
		if (val(d, 106, 0) != 2) return fail(3000, "convolution: %lld spatial dimensions", (long long)val(d, 106, 0));
		for (int a = 102; a <= 105; a++)
			if (find(d, a)->n != 2) return fail(2000, "convolution: attribute %d has %lld values", a, (long long)find(d, a)->n);
		// compute types: FLOAT, or INT32 for INT8 inputs (checked by the operation)
		if (val(d, 101, 0) != 1 || (val(d, 100, 0) != 0 && val(d, 100, 0) != 4)) return fail(3000, "convolution: mode %lld, compute type %lld", (long long)val(d, 101, 0), (long long)val(d, 100, 0));
		return 0;
	case D_POINTWISE:
		NEED(d, 0, 1);
		if (val(d, 0, 0) != 0 && val(d, 0, 0) != 1 && val(d, 0, 0) != 100) return fail(3000, "pointwise mode %lld not in the fake", (long long)val(d, 0, 0));
		return 0;
	case D_OP_CONV_FWD: {
		NEED(d, 704, 703, 705, 702, 700, 701);
		if (val(d, 700, 0) != 1000 || val(d, 701, 0) != 0) return fail(2000, "convolution: alpha %lld/1000, beta %lld/1000", (long long)val(d, 700, 0), (long long)val(d, 701, 0));
		desc_t *x = dval(d, 704), *w = dval(d, 703), *y = dval(d, 705), *c = dval(d, 702);
		if (x == w || x == y || w == y) return fail(2000, "convolution: x, w and y are not three tensors");
		int64_t n = val(x, 902, 0), ci = val(x, 902, 1), m = val(w, 902, 0), cg = val(w, 902, 1);
		if (val(y, 902, 0) != n || val(y, 902, 1) != m || ci % cg != 0 || m % (ci / cg) != 0)
			return fail(2008, "convolution: x [%lld,%lld], w [%lld,%lld], y [%lld,%lld]", (long long)n, (long long)ci, (long long)m, (long long)cg, (long long)val(y, 902, 0), (long long)val(y, 902, 1));
		for (int i = 0; i < 2; i++) {
			int64_t in = val(x, 902, 2 + i), k = val(w, 902, 2 + i), pre = val(c, 105, i), post = val(c, 104, i), dil = val(c, 102, i), s = val(c, 103, i);
			int64_t out = (in + pre + post - dil * (k - 1) - 1) / s + 1;
			if (val(y, 902, 2 + i) != out) return fail(2008, "convolution: output dimension %d is %lld, want %lld", 2 + i, (long long)val(y, 902, 2 + i), (long long)out);
		}
		if (val(x, 901, 0) != val(w, 901, 0)) return fail(3003, "convolution: x and w differ in type");
		// INT8 (3) accumulates in INT32 (4), the others in FLOAT; FP8 E4M3 is 12
		int64_t xt = val(x, 901, 0), ct = val(c, 100, 0);
		if ((xt == 3) != (ct == 4)) return fail(3000, "convolution: inputs of type %lld with compute type %lld", (long long)xt, (long long)ct);
		if (xt != 0 && xt != 2 && xt != 3 && xt != 12) return fail(3000, "convolution: input type %lld not in the fake", (long long)xt);
		if (virt(x) || virt(w)) return fail(2000, "convolution: virtual input");
		return 0;
	}
	case D_OP_POINTWISE: {
		NEED(d, 750, 751, 753);
		desc_t *pw = dval(d, 750), *x = dval(d, 751), *y = dval(d, 753), *b = dval(d, 752);
		int binary = val(pw, 0, 0) == 0 || val(pw, 0, 0) == 1; // ADD, MUL
		if (binary != (b != NULL)) return fail(2000, "pointwise mode %lld with%s a B tensor", (long long)val(pw, 0, 0), b ? "" : "out");
		for (int i = 0; i < 4; i++) {
			if (val(y, 902, i) != val(x, 902, i)) return fail(2008, "pointwise: y and x differ in dimension %d", i);
			if (b && val(b, 902, i) != 1 && val(b, 902, i) != val(x, 902, i)) return fail(2008, "pointwise: b does not broadcast in dimension %d", i);
		}
		return 0;
	}
	case D_GRAPH: {
		NEED(d, 800, 801);
		attr_t *ops = find(d, 801);
		d->ntensors = 0;
		int produced[16] = {0}, consumed[16] = {0};
		for (int i = 0; i < ops->n; i++) {
			desc_t *op = (desc_t *)(intptr_t)ops->v[i];
			int ins[2] = {op->type == D_OP_CONV_FWD ? 704 : 751, op->type == D_OP_CONV_FWD ? 703 : 752};
			int out = op->type == D_OP_CONV_FWD ? 705 : 753;
			for (int j = 0; j < 2; j++)
				if (dval(op, ins[j])) add_tensor(d, dval(op, ins[j]));
			add_tensor(d, dval(op, out));
			for (int t = 0; t < d->ntensors; t++) {
				if (d->tensors[t] == dval(op, out)) produced[t]++;
				for (int j = 0; j < 2; j++)
					if (d->tensors[t] == dval(op, ins[j])) consumed[t]++;
			}
		}
		for (int t = 0; t < d->ntensors; t++) {
			for (int u = 0; u < t; u++)
				if (val(d->tensors[t], 906, 0) == val(d->tensors[u], 906, 0)) return fail(2009, "graph: two tensors have uid %lld", (long long)val(d->tensors[t], 906, 0));
			if (virt(d->tensors[t]) && (produced[t] != 1 || consumed[t] < 1))
				return fail(2000, "graph: virtual tensor %lld produced %d times, consumed %d times", (long long)val(d->tensors[t], 906, 0), produced[t], consumed[t]);
			if (produced[t] > 1) return fail(2000, "graph: tensor %lld written twice", (long long)val(d->tensors[t], 906, 0));
		}
		return 0;
	}
	case D_ENGINEHEUR:
		NEED(d, 201, 200);
		if (val(d, 200, 0) < 0 || val(d, 200, 0) > 3) return fail(2000, "heuristics mode %lld", (long long)val(d, 200, 0));
		return 0;
	case D_ENGINE:
		NEED(d, 1300, 1301);
		d->engine = val(d, 1301, 0);
		d->graph = dval(d, 1300);
		if (d->engine >= 8 || d->engine < 0) return fail(2005, "engine %lld out of range", (long long)d->engine);
		if (d->engine == 7) return fail(3000, "engine 7 does not run this graph");
		return 0;
	case D_KNOB_CHOICE:
		NEED(d, 600, 601);
		return 0;
	case D_ENGINECFG: {
		NEED(d, 300);
		desc_t *e = dval(d, 300);
		d->engine = e->engine;
		d->graph = e->graph;
		attr_t *kc = find(d, 302);
		d->nknob = 0;
		for (int i = 0; kc && i < kc->n && i < 8; i++) {
			desc_t *c = (desc_t *)(intptr_t)kc->v[i];
			if (!engine_knob_ok(d->engine, val(c, 600, 0), val(c, 601, 0)))
				return fail(3000, "engine %lld has no knob %lld = %lld", (long long)d->engine, (long long)val(c, 600, 0), (long long)val(c, 601, 0));
			d->ktype[d->nknob] = val(c, 600, 0);
			d->kval[d->nknob++] = val(c, 601, 0);
		}
		return 0;
	}
	case D_PLAN: {
		NEED(d, 400, 401);
		desc_t *c = dval(d, 401);
		if (c->engine == 6) return fail(3000, "engine 6: no kernel for this graph");
		d->engine = c->engine;
		d->graph = c->graph;
		return 0;
	}
	case D_VARIANT_PACK:
		NEED(d, 1000, 1001, 1003);
		if (find(d, 1000)->n != find(d, 1001)->n) return fail(2000, "variant pack: %lld uids, %lld pointers", (long long)find(d, 1000)->n, (long long)find(d, 1001)->n);
		return 0;
	}
	return fail(2000, "finalize of a %s", dname(d->type));
}

int cudnnBackendFinalize(desc_t *d) {
	if (!d) return fail(2002, "null descriptor");
	if (d->finalized) return fail(2000, "%s #%d finalized twice", dname(d->type), ord(d));
	int r = finalize(d);
	trace("finalize #%d %s -> %d", ord(d), dname(d->type), r);
	if (r == 0) d->finalized = 1;
	return r;
}

// heur_list is what the heuristics return: A: engine 0 (knobs 2=1, 14=3),
// 3, 5 (1 GiB of workspace); B: 3 again, 6 (whose plan fails), 2, 4
// (which accumulates in half);
// fallback: 1, and engine 0 with the same knobs again; instant: 1.
typedef struct { int64_t engine; int nknob; int64_t kt[2], kv[2]; } cfg_t;
static int heur_list(int64_t mode, const cfg_t **out) {
	static const cfg_t a[] = {{0, 2, {2, 14}, {1, 3}}, {3, 0}, {5, 0}};
	static const cfg_t b[] = {{3, 0}, {6, 0}, {2, 0}, {4, 0}};
	static const cfg_t f[] = {{1, 0}, {0, 2, {2, 14}, {1, 3}}};
	static const cfg_t i[] = {{1, 0}};
	switch (mode) {
	case 3: *out = a; return 3;
	case 1: *out = b; return 4;
	case 2: *out = f; return 2;
	}
	*out = i;
	return 1;
}

int cudnnBackendGetAttribute(desc_t *d, int name, int type, int64_t req, int64_t *n, void *arr) {
	if (!d) return fail(2002, "null descriptor");
	trace("get #%d %s %d type %d n %lld", ord(d), dname(d->type), name, type, (long long)req);
	if (!d->finalized) return fail(2004, "get from %s #%d, not finalized", dname(d->type), ord(d));
	if (attr_owner(name) != d->type) return fail(2000, "attribute %d does not belong to %s", name, dname(d->type));
	if (attr_type(name) != type) return fail(2010, "attribute %d has type %d, not %d", name, attr_type(name), type);
	if (req < 0 || (req > 0 && !arr)) return fail(2000, "get: %lld elements into %p", (long long)req, arr);
	// $KILN_FAKE_CUDNN_STRICT_COUNTS: refuse to fill more elements than
	// cuDNN 9.6 has types of knobs (37), numerical notes (10), behavior notes (4)
	if (getenv("KILN_FAKE_CUDNN_STRICT_COUNTS") && ((name == 302 && req > 37) || (name == 1303 && req > 10) || (name == 1305 && req > 4)))
		return fail(2005, "attribute %d: %lld elements requested", name, (long long)req);
	int64_t got = 0;
	switch (d->type * 10000 + name) {
	case D_ENGINEHEUR * 10000 + 202: {
		const cfg_t *l;
		int cnt = heur_list(val(d, 200, 0), &l);
		got = cnt;
		for (int64_t i = 0; i < req && i < cnt; i++) {
			desc_t *c = ((desc_t **)arr)[i];
			if (!c || c->type != D_ENGINECFG || c->finalized) return fail(2012, "heuristics results need created engine configurations");
			c->engine = l[i].engine;
			c->graph = dval(d, 201);
			c->nknob = l[i].nknob;
			for (int k = 0; k < l[i].nknob; k++) c->ktype[k] = l[i].kt[k], c->kval[k] = l[i].kv[k];
			c->finalized = 1;
		}
		break;
	}
	case D_ENGINECFG * 10000 + 300: {
		desc_t *e = req >= 1 ? ((desc_t **)arr)[0] : NULL;
		if (e && (e->type != D_ENGINE || e->finalized)) return fail(2012, "an engine configuration's engine goes into a created engine descriptor");
		if (e) e->engine = d->engine, e->graph = d->graph, e->finalized = 1;
		got = 1;
		break;
	}
	case D_ENGINECFG * 10000 + 302:
		got = d->nknob;
		for (int64_t i = 0; i < req && i < d->nknob; i++) {
			desc_t *c = ((desc_t **)arr)[i];
			if (!c || c->type != D_KNOB_CHOICE || c->finalized) return fail(2012, "knob choices go into created knob choice descriptors");
			attr_t t = {.name = 600, .type = T_KNOB_TYPE, .n = 1, .v = {d->ktype[i]}}, v = {.name = 601, .type = T_INT64, .n = 1, .v = {d->kval[i]}};
			c->a[0] = t, c->a[1] = v, c->na = 2, c->finalized = 1;
		}
		break;
	case D_ENGINECFG * 10000 + 303:
		if (req >= 1) *(int64_t *)arr = engine_workspace(d->engine);
		got = 1;
		break;
	case D_ENGINE * 10000 + 1301:
		if (req >= 1) *(int64_t *)arr = d->engine;
		got = 1;
		break;
	case D_ENGINE * 10000 + 1303: { // engines 0 and 3 run on tensor cores, 4 also in reduced precision
		int32_t notes[2] = {0, 2};
		got = d->engine == 0 || d->engine == 3 ? 1 : d->engine == 4 ? 2 : 0;
		for (int64_t i = 0; i < req && i < got; i++) ((int32_t *)arr)[i] = notes[i];
		break;
	}
	case D_ENGINE * 10000 + 1305: // engines 3 and 5 compile their kernel at run time
		got = d->engine == 3 || d->engine == 5 ? 1 : 0;
		if (req >= 1 && got) ((int32_t *)arr)[0] = 0;
		break;
	case D_KNOB_CHOICE * 10000 + 600:
		if (req >= 1) *(int32_t *)arr = (int32_t)val(d, 600, 0);
		got = 1;
		break;
	case D_KNOB_CHOICE * 10000 + 601:
		if (req >= 1) *(int64_t *)arr = val(d, 601, 0);
		got = 1;
		break;
	case D_PLAN * 10000 + 402:
		if (req >= 1) *(int64_t *)arr = engine_workspace(d->engine);
		got = 1;
		break;
	case D_GRAPH * 10000 + 802:
		if (req >= 1) *(int64_t *)arr = 8;
		got = 1;
		break;
	default:
		return fail(2000, "get of attribute %d from %s not in the fake", name, dname(d->type));
	}
	if (n) *n = got;
	return 0;
}

int cudnnBackendExecute(void *h, desc_t *plan, desc_t *vp) {
	trace("execute #%d %s #%d %s", ord(plan), plan ? dname(plan->type) : "-", ord(vp), vp ? dname(vp->type) : "-");
	if (!h) return fail(2002, "null handle");
	if (!plan || plan->type != D_PLAN || !plan->finalized) return fail(2012, "execute needs a finalized plan");
	if (!vp || vp->type != D_VARIANT_PACK || !vp->finalized) return fail(2012, "execute needs a finalized variant pack");
	if (getenv("KILN_FAKE_CUDNN_FAIL")) return fail(5000, "KILN_FAKE_CUDNN_FAIL is set");
	attr_t *uids = find(vp, 1000), *ptrs = find(vp, 1001);
	desc_t *g = plan->graph;
	int want = 0;
	for (int t = 0; t < g->ntensors; t++) {
		if (virt(g->tensors[t])) continue;
		want++;
		int64_t uid = val(g->tensors[t], 906, 0);
		int found = 0;
		for (int i = 0; i < uids->n; i++)
			if (uids->v[i] == uid) found = ptrs->v[i] != 0;
		if (!found) return fail(2000, "execute: no pointer for tensor %lld", (long long)uid);
	}
	if (uids->n != want) return fail(2000, "execute: %lld pointers for %d tensors", (long long)uids->n, want);
	if (engine_workspace(plan->engine) > 0 && val(vp, 1003, 0) == 0) return fail(2000, "execute: no workspace");
	return 0;
}
