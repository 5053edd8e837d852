// A fake libcublasLt (13.1) for tests on machines without a GPU: the matmul
// API, whose heuristic returns algorithm 42 needing 8 KiB of workspace, then
// (when asked for more) algorithms 43 and 44 needing none; each algorithm's
// CUBLASLT_ALGO_CONFIG_ID is its number. A matmul descriptor keeps its
// epilogue and bias pointer; fakeLtLast reports what the last cublasLtMatmul
// was given (its descriptor's epilogue and bias, beta, C and D), and the
// heuristic refuses a bias epilogue without a bias pointer. An algorithm's
// byte 1 holds its CUBLASLT_ALGO_CONFIG_SPLITK_NUM (0 read as 1) and byte 2
// its reduction scheme; cublasLtMatmulAlgoCheck accepts splits of
// algorithm 43 only, up to K/2 parts, needing 1 KiB of workspace per part
// with the float32 (COMPUTE_TYPE) scheme and none in place. For FP8
// products the descriptor also keeps TRANSA, the A/B/D scale and AMAX_D
// pointers, FAST_ACCUM and BIAS_DATA_TYPE, a layout its data type; the
// heuristic refuses FP8 A without TRANSA (the "TN" rule) and a D scale on a
// D that is not FP8, and fakeLtLastFP8 reports what the last
// cublasLtMatmul's descriptor and layouts held. INT8 products
// (CUBLAS_COMPUTE_32I with a float32 scale type): the descriptor keeps its
// compute type and POINTER_MODE, the heuristic refuses INT8 A without
// TRANSA, C or D not INT8, a bias data type set, and pointer modes other
// than HOST, ALPHA_DEVICE_VECTOR_BETA_ZERO and _BETA_HOST; cublasLtMatmul
// does not read a device alpha vector (it records its address) and
// fakeLtLastInt8 reports the compute type, pointer mode, alpha address and
// beta of the last call.
// Enumeration (fakeLtEnum* below): cublasLtMatmulAlgoGetIds lists
// algorithms 66, 42 and 7 for half and float32 products; an algorithm's
// bytes 3 to 6 hold its TILE_ID, STAGES_ID, CTA_SWIZZLING and
// CLUSTER_SHAPE_ID, which cublasLtMatmulAlgoConfigSetAttribute accepts only
// within the capabilities cublasLtMatmulAlgoCapGetAttribute reports (66:
// tiles 128x64, 128x128, 256x128, 128x256, 128x192, stages 64xAUTO, 128x4,
// 128x3, swizzling, clusters AUTO, 1x1x1, 2x1x1, 1x2x1; 42: tiles 128x128,
// 256x64, stages 8x4, 128x1, the heuristic's 42 having 128x1; 7: tile and
// stages UNDEFINED); AlgoCheck refuses
// algorithm 42 with tile 256x64, 66 with tile 256x128 in clusters 2x1x1 and
// 66 with tile 128x64 in cluster AUTO,
// and 66's 128x256 tile needs 64 MiB of workspace.
// Built by the tests with cc.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t cublasLtGetVersion(void) { return 130100; }
const char *cublasLtGetStatusName(int s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }
const char *cublasLtGetStatusString(int s) { return s ? "an invalid value was used as an argument" : "success"; }
int cublasLtCreate(void **h) { *h = malloc(8); return 0; } /* a real address: Go keeps it in an unsafe.Pointer */
int cublasLtDestroy(void *h) { free(h); return 0; }
struct desc {
	int32_t epilogue;
	uint64_t bias;
	int32_t transa, biasType, fast;
	uint64_t scale[4]; /* A, B, D scale pointers, AMAX_D pointer */
	int32_t compute, pointerMode, biasTypeSet;
};
int cublasLtMatmulDescCreate(void **d, int compute, int scale) {
	struct desc *x = calloc(1, sizeof *x);
	x->epilogue = 1; /* CUBLASLT_EPILOGUE_DEFAULT */
	x->compute = compute;
	*d = x;
	return (compute == 68 || compute == 72) && scale == 0 ? 0 : 7; /* COMPUTE_32F, COMPUTE_32I; CUDA_R_32F */
}
int cublasLtMatmulDescDestroy(void *d) { free(d); return 0; }
int cublasLtMatmulDescSetAttribute(void *d, int attr, const void *buf, size_t n) {
	struct desc *x = d;
	if (attr == 3 && n == 4)
		x->transa = *(const int32_t *)buf;
	if ((attr == 3 || attr == 4) && n == 4)
		return 0;
	if (attr == 7 && n == 4) { /* EPILOGUE: DEFAULT, RELU, BIAS, RELU_BIAS, GELU, GELU_BIAS */
		int32_t e = *(const int32_t *)buf;
		if (e != 1 && e != 2 && e != 4 && e != 6 && e != 32 && e != 36)
			return 7;
		x->epilogue = e;
		return 0;
	}
	if (attr == 8 && n == 8) { /* BIAS_POINTER */
		x->bias = *(const uint64_t *)buf;
		return 0;
	}
	if (attr == 3 && n == 4)
		x->transa = *(const int32_t *)buf;
	if ((attr == 17 || attr == 18 || attr == 20 || attr == 21) && n == 8) { /* A/B/D_SCALE_POINTER, AMAX_D_POINTER */
		x->scale[attr == 21 ? 3 : attr == 20 ? 2 : attr - 17] = *(const uint64_t *)buf;
		return 0;
	}
	if (attr == 25 && n == 1) { /* FAST_ACCUM: int8_t */
		x->fast = *(const int8_t *)buf;
		return 0;
	}
	if (attr == 26 && n == 4) { /* BIAS_DATA_TYPE */
		x->biasType = *(const int32_t *)buf;
		x->biasTypeSet = 1;
		return 0;
	}
	if (attr == 2 && n == 4) { /* POINTER_MODE */
		x->pointerMode = *(const int32_t *)buf;
		return x->pointerMode >= 0 && x->pointerMode <= 4 ? 0 : 7;
	}
	return 7;
}
int cublasLtMatrixLayoutCreate(void **l, int t, uint64_t rows, uint64_t cols, int64_t ld) {
	*l = malloc(16);
	((uint64_t *)*l)[0] = rows;
	((uint64_t *)*l)[1] = (uint64_t)t; /* data type */
	return ld >= (int64_t)rows ? 0 : 7;
}
static uint64_t layoutRows(void *l) { return *(uint64_t *)l; }
static int32_t layoutType(void *l) { return (int32_t)((uint64_t *)l)[1]; }
int cublasLtMatrixLayoutDestroy(void *l) { free(l); return 0; }
int cublasLtMatmulPreferenceCreate(void **p) { *p = malloc(8); return 0; }
int cublasLtMatmulPreferenceDestroy(void *p) { free(p); return 0; }
int cublasLtMatmulPreferenceSetAttribute(void *p, int attr, const void *buf, size_t n) { return attr == 1 && n == 8 ? 0 : 7; }
int cublasLtMatmulAlgoGetHeuristic(void *h, void *desc, void *a, void *b, void *c, void *d, void *pref, int req,
                                   unsigned char *res, int *ret) {
	struct desc *x = desc;
	if ((x->epilogue & 4) && x->bias == 0) /* a bias epilogue needs the bias */
		return 7;
	if (layoutType(a) == 28 && x->transa != 1) /* FP8: only "TN" */
		return 15;
	if (x->scale[2] && layoutType(d) != 28) /* a D scale for an FP8 D only */
		return 7;
	if (layoutType(a) == 3) { /* INT8 (CUDA_R_8I): IMMA's rules */
		if (x->compute != 72 || x->transa != 1 || layoutType(b) != 3 || layoutType(c) != 3 || layoutType(d) != 3)
			return 15;
		if (x->biasTypeSet) /* the bias is float32 (the scale type) */
			return 15;
		if (x->pointerMode != 0 && x->pointerMode != 3 && x->pointerMode != 4)
			return 15;
	} else if (x->compute == 72 || x->pointerMode != 0) {
		return 15;
	}
	memset(res, 0, 96 * (size_t)req);
	/* up to 3 results: algos 42 (8 KiB of workspace), 43 and 44 (none) */
	int n = req < 3 ? req : 3;
	for (int i = 0; i < n; i++) {
		res[96 * i] = 42 + i;                                 /* algo */
		res[96 * i + 4] = i == 0 ? 19 : 0;                    /* 42: STAGES_ID 128x1 */
		*(uint64_t *)(res + 96 * i + 64) = i == 0 ? 8192 : 0; /* workspaceSize */
		*(int32_t *)(res + 96 * i + 72) = 0;                  /* state */
	}
	*ret = n;
	return 0;
}
static int fakeLtEnumConfigGet(const unsigned char *algo, int attr, void *buf, size_t n, size_t *written);
static int fakeLtEnumConfigSet(unsigned char *algo, int attr, const void *buf, size_t n);
static int fakeLtEnumCheck(const unsigned char *algo, uint64_t *ws);
int cublasLtMatmulAlgoConfigGetAttribute(const unsigned char *algo, int attr, void *buf, size_t n, size_t *written) {
	if (attr == 1 || attr == 4 || attr == 6 || attr == 8)
		return fakeLtEnumConfigGet(algo, attr, buf, n, written);
	if (attr < 0 || attr > 3 || attr == 1 || n != 4) /* ID, SPLITK_NUM, REDUCTION_SCHEME: 4 bytes */
		return 7;
	*(int32_t *)buf = attr == 0 ? algo[0] : attr == 2 ? (algo[1] ? algo[1] : 1) : algo[2];
	if (written)
		*written = 4;
	return 0;
}
int cublasLtMatmulAlgoConfigSetAttribute(unsigned char *algo, int attr, const void *buf, size_t n) {
	if (attr == 1 || attr == 4 || attr == 6 || attr == 8)
		return fakeLtEnumConfigSet(algo, attr, buf, n);
	uint32_t v = *(const uint32_t *)buf;
	if ((attr != 2 && attr != 3) || n != 4 || v > 255)
		return 7;
	algo[attr == 2 ? 1 : 2] = (unsigned char)v;
	return 0;
}
static uint64_t layoutRows(void *l);
int cublasLtMatmulAlgoCheck(void *h, void *desc, void *a, void *b, void *c, void *d, const unsigned char *algo, unsigned char *res) {
	int parts = algo[1] ? algo[1] : 1;
	uint64_t k = layoutRows(b); /* cuBLASLt's B is kiln's A: K x M column-major */
	if (parts > 1 && (algo[0] != 43 || (algo[2] != 1 && algo[2] != 2) || (uint64_t)parts > k / 2))
		return 15; /* CUBLAS_STATUS_NOT_SUPPORTED */
	uint64_t ews = 0;
	int r = fakeLtEnumCheck(algo, &ews);
	if (r)
		return r;
	memset(res, 0, 96);
	memcpy(res, algo, 64);
	*(uint64_t *)(res + 64) = parts > 1 && algo[2] == 2 ? 1024 * (uint64_t)parts : algo[0] == 42 ? 8192 : ews;
	return 0;
}
static struct {
	int32_t types[4]; /* A, B, C, D layouts' data types */
	uint64_t scale[4];
	int32_t biasType, fast, transa;
	int32_t epilogue;
	uint64_t bias;
	float beta;
	const void *c, *d;
	const void *cd, *dd;
	unsigned char algo[64];
	int32_t compute, pointerMode;
	uint64_t alpha;
} last;
/* fakeLtLastInt8 reports the last cublasLtMatmul's compute type, pointer
   mode, alpha (the address with a device vector, else the host value's
   bits) and beta. */
void fakeLtLastInt8(int32_t *compute, int32_t *pointerMode, uint64_t *alpha, float *beta) {
	*compute = last.compute;
	*pointerMode = last.pointerMode;
	*alpha = last.alpha;
	*beta = last.beta;
}
/* fakeLtLastAlgo copies the algorithm the last cublasLtMatmul ran. */
void fakeLtLastAlgo(unsigned char *out) { memcpy(out, last.algo, 64); }
/* fakeLtLast reports the last cublasLtMatmul's epilogue, bias, beta, C and
   D, and whether C and D had the same layout descriptor. */
void fakeLtLast(int32_t *epi, uint64_t *bias, float *beta, uint64_t *c, uint64_t *d, int32_t *sameLayout) {
	*epi = last.epilogue;
	*bias = last.bias;
	*beta = last.beta;
	*c = (uint64_t)(uintptr_t)last.c;
	*d = (uint64_t)(uintptr_t)last.d;
	*sameLayout = last.cd == last.dd;
}
/* fakeLtLastFP8 reports the last cublasLtMatmul's layouts' data types (A,
   B, C, D), its descriptor's scale pointers (A, B, D, AMAX_D), bias data
   type, FAST_ACCUM and TRANSA. */
void fakeLtLastFP8(int32_t *types, uint64_t *scale, int32_t *biasType, int32_t *fast, int32_t *transa) {
	memcpy(types, last.types, sizeof last.types);
	memcpy(scale, last.scale, sizeof last.scale);
	*biasType = last.biasType;
	*fast = last.fast;
	*transa = last.transa;
}
int cublasLtMatmul(void *h, void *desc, const float *alpha, const void *a, void *ad, const void *b, void *bd,
                   const float *beta, const void *c, void *cd, void *d, void *dd, const unsigned char *algo,
                   void *ws, size_t wsSize, void *stream) {
	struct desc *x = desc;
	last.types[0] = layoutType(ad);
	last.types[1] = layoutType(bd);
	last.types[2] = layoutType(cd);
	last.types[3] = layoutType(dd);
	memcpy(last.scale, x->scale, sizeof last.scale);
	last.biasType = x->biasType;
	last.fast = x->fast;
	last.transa = x->transa;
	last.epilogue = x->epilogue;
	last.bias = x->bias;
	last.compute = x->compute;
	last.pointerMode = x->pointerMode;
	if (x->pointerMode == 3 || x->pointerMode == 4) { /* alpha a device vector: not read here */
		last.alpha = (uint64_t)(uintptr_t)alpha;
		last.beta = x->pointerMode == 3 ? 0 : *beta;
	} else {
		uint32_t bits;
		memcpy(&bits, alpha, 4);
		last.alpha = bits;
		last.beta = *beta;
	}
	last.c = c;
	last.d = d;
	last.cd = cd;
	last.dd = dd;
	if (algo)
		memcpy(last.algo, algo, 64);
	if (x->compute == 72)
		return algo && ((algo[0] == 42 && wsSize >= 8192) || algo[0] == 43 || algo[0] == 44) ? 0 : 7;
	if (algo && (algo[0] == 66 || algo[0] == 7)) { /* enumerated: as checked */
		uint64_t need = 0;
		return *alpha == 1 && (*beta == 0 || *beta == 1) && fakeLtEnumCheck(algo, &need) == 0 && wsSize >= need ? 0 : 7;
	}
	return *alpha == 1 && (*beta == 0 || *beta == 1) && algo && ((algo[0] == 42 && wsSize >= 8192) || algo[0] == 43 || algo[0] == 44) ? 0 : 7;
}

/* Enumeration: algorithms 66, 42, 7 and their capabilities. */
struct fakeLtEnumAlgo {
	int id;
	uint32_t tiles[8], ntiles, stages[4], nstages;
	uint32_t swizzle, splitk;
	uint16_t clusters[4];
	int nclusters;
};
static const struct fakeLtEnumAlgo fakeLtEnumAlgos[] = {
	{66, {18, 20, 24, 23, 32}, 5, {35, 22, 21}, 3, 1, 1, {0, 2, 3, 5}, 4},
	{42, {20, 21}, 2, {26, 19}, 2, 0, 0, {0}, 1},
	{7, {0}, 1, {0}, 1, 0, 0, {0}, 1},
};
static const struct fakeLtEnumAlgo *fakeLtEnumFind(int id) {
	for (size_t i = 0; i < sizeof fakeLtEnumAlgos / sizeof fakeLtEnumAlgos[0]; i++)
		if (fakeLtEnumAlgos[i].id == id)
			return &fakeLtEnumAlgos[i];
	return NULL;
}
int cublasLtMatmulAlgoGetIds(void *h, int compute, int scale, int at, int bt, int ct, int dt, int req, int *ids, int *ret) {
	if (compute != 68 || scale != 0 || req < 0 || !ids || !ret)
		return 7;
	*ret = 0;
	if ((at != 2 && at != 0) || bt != at || ct != at || dt != at) /* half or float32 */
		return 0;
	int n = 0;
	for (size_t i = 0; i < sizeof fakeLtEnumAlgos / sizeof fakeLtEnumAlgos[0] && n < req; i++)
		ids[n++] = fakeLtEnumAlgos[i].id;
	*ret = n;
	return 0;
}
int cublasLtMatmulAlgoInit(void *h, int compute, int scale, int at, int bt, int ct, int dt, int id, unsigned char *algo) {
	if (compute != 68 || scale != 0 || !fakeLtEnumFind(id) || (at != 2 && at != 0) || bt != at || ct != at || dt != at)
		return 7;
	memset(algo, 0, 64);
	algo[0] = (unsigned char)id;
	return 0;
}
int cublasLtMatmulAlgoCapGetAttribute(const unsigned char *algo, int attr, void *buf, size_t n, size_t *written) {
	const struct fakeLtEnumAlgo *a = fakeLtEnumFind(algo[0]);
	if (!a || !written)
		return 7;
	const uint32_t *arr = NULL;
	uint32_t one;
	size_t need = 4;
	switch (attr) {
	case 0: /* SPLITK_SUPPORT */
		one = a->splitk;
		arr = &one;
		break;
	case 2: /* CTA_SWIZZLING_SUPPORT */
		one = a->swizzle;
		arr = &one;
		break;
	case 6: /* TILE_IDS */
		arr = a->tiles;
		need = 4 * a->ntiles;
		break;
	case 13: /* STAGES_IDS */
		arr = a->stages;
		need = 4 * a->nstages;
		break;
	default:
		return 7;
	}
	*written = need;
	if (n == 0) /* the size asked */
		return 0;
	if (n < need || !buf)
		return 7;
	memcpy(buf, arr, need);
	return 0;
}
static int fakeLtEnumConfigGet(const unsigned char *algo, int attr, void *buf, size_t n, size_t *written) {
	size_t want = attr == 8 ? 2 : 4;
	if (n != want)
		return 7;
	uint32_t v = algo[attr == 1 ? 3 : attr == 6 ? 4 : attr == 4 ? 5 : 6];
	if (want == 2)
		*(uint16_t *)buf = (uint16_t)v;
	else
		*(uint32_t *)buf = v;
	if (written)
		*written = want;
	return 0;
}
static int fakeLtEnumConfigSet(unsigned char *algo, int attr, const void *buf, size_t n) {
	const struct fakeLtEnumAlgo *a = fakeLtEnumFind(algo[0]);
	size_t want = attr == 8 ? 2 : 4;
	if (n != want)
		return 7;
	uint32_t v = want == 2 ? *(const uint16_t *)buf : *(const uint32_t *)buf;
	int ok = 0;
	if (!a) /* the heuristic's 43 and 44: nothing to configure */
		ok = v == 0;
	else if (attr == 1)
		for (uint32_t i = 0; i < a->ntiles; i++)
			ok |= a->tiles[i] == v;
	else if (attr == 6)
		for (uint32_t i = 0; i < a->nstages; i++)
			ok |= a->stages[i] == v;
	else if (attr == 4)
		ok = v == 0 || (v == 1 && a->swizzle);
	else
		for (int i = 0; i < a->nclusters; i++)
			ok |= a->clusters[i] == v;
	if (!ok)
		return 15;
	algo[attr == 1 ? 3 : attr == 6 ? 4 : attr == 4 ? 5 : 6] = (unsigned char)v;
	return 0;
}
static int fakeLtEnumCheck(const unsigned char *algo, uint64_t *ws) {
	*ws = 0;
	if (algo[0] == 42 && algo[3] == 21)
		return 15;
	if (algo[0] == 66 && algo[3] == 24 && algo[6] == 3)
		return 15;
	if (algo[0] == 66 && algo[3] == 18 && algo[6] == 0) /* 128x64 only in explicit clusters */
		return 15;
	if (algo[0] == 66 && algo[3] == 23)
		*ws = 64u << 20;
	return 0;
}
