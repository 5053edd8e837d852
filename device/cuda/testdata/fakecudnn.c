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
