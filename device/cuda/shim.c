// shim.c: see shim.h.
#include <dlfcn.h>
#include "shim.h"

void *kiln_dlopen(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
const char *kiln_dlerror(void) { return dlerror(); }
void *kiln_dlsym(void *h, const char *name) { return dlsym(h, name); }
int kiln_dlclose(void *h) { return dlclose(h); }

typedef unsigned long long dptr;

int kiln_cuInit(void *fn, unsigned flags) { return ((int (*)(unsigned))fn)(flags); }
int kiln_cuDriverGetVersion(void *fn, int *v) { return ((int (*)(int *))fn)(v); }
int kiln_cuGetErrorName(void *fn, int code, const char **s) { return ((int (*)(int, const char **))fn)(code, s); }
int kiln_cuDeviceGetCount(void *fn, int *n) { return ((int (*)(int *))fn)(n); }
int kiln_cuDeviceGet(void *fn, int *dev, int ordinal) { return ((int (*)(int *, int))fn)(dev, ordinal); }
int kiln_cuDeviceGetName(void *fn, char *name, int len, int dev) { return ((int (*)(char *, int, int))fn)(name, len, dev); }
int kiln_cuDeviceGetAttribute(void *fn, int *v, int attr, int dev) { return ((int (*)(int *, int, int))fn)(v, attr, dev); }
int kiln_cuDeviceTotalMem(void *fn, size_t *bytes, int dev) { return ((int (*)(size_t *, int))fn)(bytes, dev); }
int kiln_cuDevicePrimaryCtxRetain(void *fn, void **ctx, int dev) { return ((int (*)(void **, int))fn)(ctx, dev); }
int kiln_cuDevicePrimaryCtxRelease(void *fn, int dev) { return ((int (*)(int))fn)(dev); }
int kiln_cuCtxSetCurrent(void *fn, void *ctx) { return ((int (*)(void *))fn)(ctx); }
int kiln_cuCtxSynchronize(void *fn) { return ((int (*)(void))fn)(); }
int kiln_cuMemAlloc(void *fn, dptr *p, size_t n) { return ((int (*)(dptr *, size_t))fn)(p, n); }
int kiln_cuMemFree(void *fn, dptr p) { return ((int (*)(dptr))fn)(p); }
int kiln_cuMemcpyHtoD(void *fn, dptr dst, const void *src, size_t n) { return ((int (*)(dptr, const void *, size_t))fn)(dst, src, n); }
int kiln_cuMemcpyDtoH(void *fn, void *dst, dptr src, size_t n) { return ((int (*)(void *, dptr, size_t))fn)(dst, src, n); }
int kiln_cuMemcpyHtoDAsync(void *fn, dptr dst, const void *src, size_t n, void *s) { return ((int (*)(dptr, const void *, size_t, void *))fn)(dst, src, n, s); }
int kiln_cuMemcpyDtoHAsync(void *fn, void *dst, dptr src, size_t n, void *s) { return ((int (*)(void *, dptr, size_t, void *))fn)(dst, src, n, s); }
int kiln_cuMemAllocHost(void *fn, void **p, size_t n) { return ((int (*)(void **, size_t))fn)(p, n); }
int kiln_cuMemFreeHost(void *fn, void *p) { return ((int (*)(void *))fn)(p); }
int kiln_cuStreamCreate(void *fn, void **s, unsigned flags) { return ((int (*)(void **, unsigned))fn)(s, flags); }
int kiln_cuStreamSynchronize(void *fn, void *s) { return ((int (*)(void *))fn)(s); }
int kiln_cuStreamDestroy(void *fn, void *s) { return ((int (*)(void *))fn)(s); }
int kiln_cuEventCreate(void *fn, void **e, unsigned flags) { return ((int (*)(void **, unsigned))fn)(e, flags); }
int kiln_cuEventRecord(void *fn, void *e, void *s) { return ((int (*)(void *, void *))fn)(e, s); }
int kiln_cuEventSynchronize(void *fn, void *e) { return ((int (*)(void *))fn)(e); }
int kiln_cuEventElapsedTime(void *fn, float *ms, void *a, void *b) { return ((int (*)(float *, void *, void *))fn)(ms, a, b); }
int kiln_cuEventDestroy(void *fn, void *e) { return ((int (*)(void *))fn)(e); }
int kiln_cuModuleLoadData(void *fn, void **m, const void *image) { return ((int (*)(void **, const void *))fn)(m, image); }
int kiln_cuModuleUnload(void *fn, void *m) { return ((int (*)(void *))fn)(m); }
int kiln_cuModuleGetFunction(void *fn, void **f, void *m, const char *name) { return ((int (*)(void **, void *, const char *))fn)(f, m, name); }
int kiln_cuLaunchKernel(void *fn, void *f, unsigned gx, unsigned gy, unsigned gz,
                        unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                        void *stream, void **params) {
	return ((int (*)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
	                 unsigned, void *, void **, void **))fn)(f, gx, gy, gz, bx, by, bz, shmem, stream, params, 0);
}
int kiln_cuStreamBeginCapture(void *fn, void *s, int mode) { return ((int (*)(void *, int))fn)(s, mode); }
int kiln_cuStreamEndCapture(void *fn, void *s, void **g) { return ((int (*)(void *, void **))fn)(s, g); }
int kiln_cuGraphInstantiate(void *fn, void **e, void *g, unsigned long long flags) { return ((int (*)(void **, void *, unsigned long long))fn)(e, g, flags); }
int kiln_cuGraphLaunch(void *fn, void *e, void *s) { return ((int (*)(void *, void *))fn)(e, s); }
int kiln_cuGraphDestroy(void *fn, void *g) { return ((int (*)(void *))fn)(g); }
int kiln_cuGraphExecDestroy(void *fn, void *e) { return ((int (*)(void *))fn)(e); }

int kiln_nvrtcVersion(void *fn, int *major, int *minor) { return ((int (*)(int *, int *))fn)(major, minor); }
const char *kiln_nvrtcGetErrorString(void *fn, int code) { return ((const char *(*)(int))fn)(code); }
int kiln_nvrtcCreateProgram(void *fn, void **prog, const char *src, const char *name) {
	return ((int (*)(void **, const char *, const char *, int, const char *const *, const char *const *))fn)(prog, src, name, 0, 0, 0);
}
int kiln_nvrtcCompileProgram(void *fn, void *prog, int n, const char *const *opts) { return ((int (*)(void *, int, const char *const *))fn)(prog, n, opts); }
int kiln_nvrtcGetSize(void *fn, void *prog, size_t *n) { return ((int (*)(void *, size_t *))fn)(prog, n); }
int kiln_nvrtcGetBytes(void *fn, void *prog, char *out) { return ((int (*)(void *, char *))fn)(prog, out); }
int kiln_nvrtcDestroyProgram(void *fn, void **prog) { return ((int (*)(void **))fn)(prog); }
int kiln_nvrtcGetNumSupportedArchs(void *fn, int *n) { return ((int (*)(int *))fn)(n); }
int kiln_nvrtcGetSupportedArchs(void *fn, int *archs) { return ((int (*)(int *))fn)(archs); }

size_t kiln_getVersion(void *fn) { return ((size_t (*)(void))fn)(); }
int kiln_createHandle(void *fn, void **h) { return ((int (*)(void **))fn)(h); }
int kiln_destroyHandle(void *fn, void *h) { return ((int (*)(void *))fn)(h); }
const char *kiln_statusString(void *fn, int code) { return ((const char *(*)(int))fn)(code); }

typedef struct { unsigned gpu, memory; } kiln_nvmlUtilization;
typedef struct { unsigned long long total, free, used; } kiln_nvmlMemory;
int kiln_nvmlCall0(void *fn) { return ((int (*)(void))fn)(); }
const char *kiln_nvmlErrorString(void *fn, int code) { return ((const char *(*)(int))fn)(code); }
int kiln_nvmlDeviceGetHandleByIndex(void *fn, unsigned i, void **dev) { return ((int (*)(unsigned, void **))fn)(i, dev); }
int kiln_nvmlDeviceGetUtilizationRates(void *fn, void *dev, unsigned *gpu, unsigned *mem) {
	kiln_nvmlUtilization u = {0, 0};
	int r = ((int (*)(void *, kiln_nvmlUtilization *))fn)(dev, &u);
	*gpu = u.gpu;
	*mem = u.memory;
	return r;
}
int kiln_nvmlDeviceGetMemoryInfo(void *fn, void *dev, unsigned long long *total,
                                 unsigned long long *free, unsigned long long *used) {
	kiln_nvmlMemory m = {0, 0, 0};
	int r = ((int (*)(void *, kiln_nvmlMemory *))fn)(dev, &m);
	*total = m.total;
	*free = m.free;
	*used = m.used;
	return r;
}
int kiln_nvmlSystemGetDriverVersion(void *fn, char *out, unsigned len) { return ((int (*)(char *, unsigned))fn)(out, len); }

typedef struct {
	int algo, status;
	float time;
	size_t memory;
	int determinism, mathType, reserved[3];
} kiln_cudnnConvFwdAlgoPerf;

int kiln_cudnnSetStream(void *fn, void *h, void *s) { return ((int (*)(void *, void *))fn)(h, s); }
int kiln_cudnnSetTensor4d(void *fn, void *d, int format, int dtype, int n, int c, int h, int w) {
	return ((int (*)(void *, int, int, int, int, int, int))fn)(d, format, dtype, n, c, h, w);
}
int kiln_cudnnSetFilter4d(void *fn, void *d, int dtype, int format, int k, int c, int h, int w) {
	return ((int (*)(void *, int, int, int, int, int, int))fn)(d, dtype, format, k, c, h, w);
}
int kiln_cudnnSetConv2d(void *fn, void *d, int ph, int pw, int u, int v, int dh, int dw, int mode, int dtype) {
	return ((int (*)(void *, int, int, int, int, int, int, int, int))fn)(d, ph, pw, u, v, dh, dw, mode, dtype);
}
int kiln_cudnnSetInt(void *fn, void *d, int v) { return ((int (*)(void *, int))fn)(d, v); }
int kiln_cudnnGetConvFwdAlgos(void *fn, void *h, void *x, void *w, void *conv, void *y, int req, int *ret,
                              int *algo, int *status, float *time, size_t *memory, int *mathType) {
	kiln_cudnnConvFwdAlgoPerf perf[16];
	if (req > 16) req = 16;
	*ret = 0;
	int r = ((int (*)(void *, void *, void *, void *, void *, int, int *, kiln_cudnnConvFwdAlgoPerf *))fn)(h, x, w, conv, y, req, ret, perf);
	for (int i = 0; r == 0 && i < *ret && i < req; i++) {
		algo[i] = perf[i].algo;
		status[i] = perf[i].status;
		time[i] = perf[i].time;
		memory[i] = perf[i].memory;
		mathType[i] = perf[i].mathType;
	}
	return r;
}
int kiln_cudnnGetConvFwdWorkspace(void *fn, void *h, void *x, void *w, void *conv, void *y, int algo, size_t *size) {
	return ((int (*)(void *, void *, void *, void *, void *, int, size_t *))fn)(h, x, w, conv, y, algo, size);
}
int kiln_cudnnConvFwd(void *fn, void *h, float alpha, void *xd, dptr x, void *wd, dptr w,
                      void *conv, int algo, dptr ws, size_t wsSize, float beta, void *yd, dptr y) {
	return ((int (*)(void *, const void *, void *, const void *, void *, const void *, void *, int, void *, size_t,
	                 const void *, void *, void *))fn)(h, &alpha, xd, (const void *)x, wd, (const void *)w, conv, algo,
	                                                   (void *)ws, wsSize, &beta, yd, (void *)y);
}

int kiln_ltMatmulDescCreate(void *fn, void **d, int computeType, int scaleType) {
	return ((int (*)(void **, int, int))fn)(d, computeType, scaleType);
}
int kiln_ltSetAttr(void *fn, void *d, int attr, const void *buf, size_t size) {
	return ((int (*)(void *, int, const void *, size_t))fn)(d, attr, buf, size);
}
int kiln_ltLayoutCreate(void *fn, void **l, int dtype, unsigned long long rows, unsigned long long cols, long long ld) {
	return ((int (*)(void **, int, uint64_t, uint64_t, int64_t))fn)(l, dtype, rows, cols, ld);
}
int kiln_ltHeuristic(void *fn, void *h, void *desc, void *a, void *b, void *c, void *d, void *pref, int req,
                     void *results, int *ret) {
	return ((int (*)(void *, void *, void *, void *, void *, void *, void *, int, void *, int *))fn)(h, desc, a, b, c, d, pref, req, results, ret);
}
int kiln_ltMatmul(void *fn, void *h, void *desc, float alpha, dptr a, void *ad, dptr b, void *bd,
                  float beta, dptr c, void *cd, dptr d, void *dd, const void *algo,
                  dptr ws, size_t wsSize, void *stream) {
	return ((int (*)(void *, void *, const void *, const void *, void *, const void *, void *, const void *,
	                 const void *, void *, void *, void *, const void *, void *, size_t, void *))fn)(
	    h, desc, &alpha, (const void *)a, ad, (const void *)b, bd, &beta, (const void *)c, cd, (void *)d, dd, algo,
	    (void *)ws, wsSize, stream);
}
