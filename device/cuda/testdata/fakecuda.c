// A fake libcuda for tests on machines without a GPU: one device, "Fake
// GPU", compute capability 9.0, driver 13.0. cuMemAlloc fails with
// CUDA_ERROR_OUT_OF_MEMORY above 1 GiB; cuLaunchKernel fails with
// CUDA_ERROR_INVALID_HANDLE for a null function, which cuModuleGetFunction
// returns for the kernel named by $KILN_FAKE_BAD_KERNEL. Page-locked host
// memory is malloc'd. Events measure 1.5 ms, or, with $KILN_FAKE_EVENT_SHRINK
// set, 1 ms less at each measurement from 1000 ms. Built by the tests with cc.
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *names[] = {[0] = "CUDA_SUCCESS", [2] = "CUDA_ERROR_OUT_OF_MEMORY", [100] = "CUDA_ERROR_NO_DEVICE", [400] = "CUDA_ERROR_INVALID_HANDLE"};
static const char *descs[] = {[0] = "no error", [2] = "out of memory", [100] = "no CUDA-capable device is detected", [400] = "invalid resource handle"};

int cuInit(unsigned flags) { return flags == 0 ? 0 : 1; }
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuGetErrorName(int code, const char **s) {
	if (code < 0 || code > 400 || !names[code]) return 1;
	*s = names[code];
	return 0;
}
int cuGetErrorString(int code, const char **s) {
	if (code < 0 || code > 400 || !descs[code]) return 1;
	*s = descs[code];
	return 0;
}
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int i) { if (i != 0) return 101; *d = 0; return 0; }
int cuDeviceGetName(char *s, int n, int d) { strncpy(s, "Fake GPU", n); return 0; }
int cuDeviceGetAttribute(int *v, int attr, int d) { *v = attr == 75 ? 9 : attr == 76 ? 0 : 132; return 0; }
int cuDeviceTotalMem_v2(size_t *n, int d) { *n = (size_t)1 << 30; return 0; }
int cuDevicePrimaryCtxRetain(void **c, int d) { *c = (void *)1; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { return 0; }
int cuCtxSetCurrent(void *c) { return 0; }
int cuCtxSynchronize(void) { return 0; }
int cuMemAlloc_v2(unsigned long long *p, size_t n) { if (n > ((size_t)1 << 30)) return 2; *p = 0x10000; return 0; }
int cuMemFree_v2(unsigned long long p) { return 0; }
int cuMemcpyHtoD_v2(void) { return 0; }
int cuMemcpyDtoH_v2(void) { return 0; }
int cuMemcpyHtoDAsync_v2(void) { return 0; }
int cuMemcpyDtoHAsync_v2(void) { return 0; }
int cuMemAllocHost_v2(void **p, size_t n) { *p = malloc(n); return *p ? 0 : 2; }
int cuMemFreeHost(void *p) { free(p); return 0; }
int cuStreamCreate(void) { return 0; }
int cuStreamSynchronize(void) { return 0; }
int cuStreamDestroy_v2(void) { return 0; }
int cuEventCreate(void) { return 0; }
int cuEventRecord(void) { return 0; }
int cuEventSynchronize(void) { return 0; }
int cuEventElapsedTime(float *ms, void *a, void *b) {
	static int n;
	*ms = getenv("KILN_FAKE_EVENT_SHRINK") ? 1000.0f - (float)(n++) : 1.5f;
	return 0;
}
int cuEventDestroy_v2(void) { return 0; }
int cuModuleLoadData(void) { return 0; }
int cuModuleUnload(void) { return 0; }
int cuModuleGetFunction(void **f, void *m, const char *name) {
	const char *bad = getenv("KILN_FAKE_BAD_KERNEL");
	*f = bad && strcmp(bad, name) == 0 ? 0 : (void *)1;
	return 0;
}
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned sh, void *s, void **params, void **extra) {
	return f == 0 ? 400 : 0;
}
int cuStreamBeginCapture_v2(void) { return 0; }
int cuStreamEndCapture(void) { return 0; }
int cuGraphInstantiateWithFlags(void) { return 0; }
int cuGraphLaunch(void) { return 0; }
int cuGraphDestroy(void) { return 0; }
int cuGraphExecDestroy(void) { return 0; }
