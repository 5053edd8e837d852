// A fake libcudnn (9.14) for tests on machines without a GPU: the legacy
// convolution API, whose algorithm query returns a tensor-op algorithm
// (which kiln must skip in float32, and takes in half) and then algorithm 1
// in FMA math, then (when asked for 3 or more) algorithm 0 in FMA math.
// cudnnConvolutionForward fails with CUDNN_STATUS_EXECUTION_FAILED when
// $KILN_FAKE_CUDNN_FAIL is set. Built by the tests with cc.
#include <stddef.h>
#include <stdlib.h>

typedef struct {
	int algo, status;
	float time;
	size_t memory;
	int determinism, mathType, reserved[3];
} perf_t;

size_t cudnnGetVersion(void) { return 91400; }
const char *cudnnGetErrorString(int code) { return code == 8 ? "CUDNN_STATUS_EXECUTION_FAILED" : "CUDNN_STATUS_SUCCESS"; }
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
