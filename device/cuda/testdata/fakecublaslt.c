// A fake libcublasLt (13.1) for tests on machines without a GPU: the matmul
// API, whose heuristic returns algorithm 42 needing 8 KiB of workspace, then
// (when asked for more) algorithms 43 and 44 needing none; each algorithm's
// CUBLASLT_ALGO_CONFIG_ID is its number.
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
int cublasLtMatmulDescCreate(void **d, int compute, int scale) { *d = malloc(8); return compute == 68 && scale == 0 ? 0 : 7; }
int cublasLtMatmulDescDestroy(void *d) { free(d); return 0; }
int cublasLtMatmulDescSetAttribute(void *d, int attr, const void *buf, size_t n) { return ((attr == 3 || attr == 4 || attr == 7) && n == 4) || (attr == 8 && n == 8) ? 0 : 7; }
int cublasLtMatrixLayoutCreate(void **l, int t, uint64_t rows, uint64_t cols, int64_t ld) { *l = malloc(8); return ld >= (int64_t)rows ? 0 : 7; }
int cublasLtMatrixLayoutDestroy(void *l) { free(l); return 0; }
int cublasLtMatmulPreferenceCreate(void **p) { *p = malloc(8); return 0; }
int cublasLtMatmulPreferenceDestroy(void *p) { free(p); return 0; }
int cublasLtMatmulPreferenceSetAttribute(void *p, int attr, const void *buf, size_t n) { return attr == 1 && n == 8 ? 0 : 7; }
int cublasLtMatmulAlgoGetHeuristic(void *h, void *desc, void *a, void *b, void *c, void *d, void *pref, int req,
                                   unsigned char *res, int *ret) {
	memset(res, 0, 96 * (size_t)req);
	/* up to 3 results: algos 42 (8 KiB of workspace), 43 and 44 (none) */
	int n = req < 3 ? req : 3;
	for (int i = 0; i < n; i++) {
		res[96 * i] = 42 + i;                                 /* algo */
		*(uint64_t *)(res + 96 * i + 64) = i == 0 ? 8192 : 0; /* workspaceSize */
		*(int32_t *)(res + 96 * i + 72) = 0;                  /* state */
	}
	*ret = n;
	return 0;
}
int cublasLtMatmulAlgoConfigGetAttribute(const unsigned char *algo, int attr, void *buf, size_t n, size_t *written) {
	if (attr != 0 || n != 4) /* CUBLASLT_ALGO_CONFIG_ID, an int32 */
		return 7;
	*(int32_t *)buf = algo[0];
	if (written)
		*written = 4;
	return 0;
}
int cublasLtMatmul(void *h, void *desc, const float *alpha, const void *a, void *ad, const void *b, void *bd,
                   const float *beta, const void *c, void *cd, void *d, void *dd, const unsigned char *algo,
                   void *ws, size_t wsSize, void *stream) {
	return *alpha == 1 && *beta == 0 && algo && ((algo[0] == 42 && wsSize >= 8192) || algo[0] == 43 || algo[0] == 44) ? 0 : 7;
}
