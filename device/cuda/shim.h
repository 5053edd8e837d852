// shim.h declares the C side of the run-time-loaded CUDA bindings: dlopen
// helpers and one wrapper per CUDA function that calls through a function
// pointer found with dlsym. No CUDA header is used: the prototypes are
// written here by hand, with opaque handles as void*.
#ifndef KILN_CUDA_SHIM_H
#define KILN_CUDA_SHIM_H

#include <stddef.h>
#include <stdint.h>

void *kiln_dlopen(const char *path);
const char *kiln_dlerror(void);
void *kiln_dlsym(void *h, const char *name);
int kiln_dlclose(void *h);

/* CUDA driver API. CUdeviceptr is unsigned long long; CUdevice is int. */
int kiln_cuInit(void *fn, unsigned flags);
int kiln_cuDriverGetVersion(void *fn, int *v);
int kiln_cuGetErrorName(void *fn, int code, const char **s);
int kiln_cuDeviceGetCount(void *fn, int *n);
int kiln_cuDeviceGet(void *fn, int *dev, int ordinal);
int kiln_cuDeviceGetName(void *fn, char *name, int len, int dev);
int kiln_cuDeviceGetAttribute(void *fn, int *v, int attr, int dev);
int kiln_cuDeviceTotalMem(void *fn, size_t *bytes, int dev);
int kiln_cuDevicePrimaryCtxRetain(void *fn, void **ctx, int dev);
int kiln_cuDevicePrimaryCtxRelease(void *fn, int dev);
int kiln_cuCtxSetCurrent(void *fn, void *ctx);
int kiln_cuCtxSynchronize(void *fn);
int kiln_cuMemAlloc(void *fn, unsigned long long *p, size_t n);
int kiln_cuMemFree(void *fn, unsigned long long p);
int kiln_cuMemcpyHtoD(void *fn, unsigned long long dst, const void *src, size_t n);
int kiln_cuMemcpyDtoH(void *fn, void *dst, unsigned long long src, size_t n);
int kiln_cuMemcpyHtoDAsync(void *fn, unsigned long long dst, const void *src, size_t n, void *stream);
int kiln_cuMemcpyDtoHAsync(void *fn, void *dst, unsigned long long src, size_t n, void *stream);
int kiln_cuMemAllocHost(void *fn, void **p, size_t n);
int kiln_cuMemFreeHost(void *fn, void *p);
int kiln_cuStreamCreate(void *fn, void **s, unsigned flags);
int kiln_cuStreamSynchronize(void *fn, void *s);
int kiln_cuStreamDestroy(void *fn, void *s);
int kiln_cuEventCreate(void *fn, void **e, unsigned flags);
int kiln_cuEventRecord(void *fn, void *e, void *s);
int kiln_cuEventSynchronize(void *fn, void *e);
int kiln_cuEventElapsedTime(void *fn, float *ms, void *start, void *end);
int kiln_cuEventDestroy(void *fn, void *e);
int kiln_cuModuleLoadData(void *fn, void **m, const void *image);
int kiln_cuModuleUnload(void *fn, void *m);
int kiln_cuModuleGetFunction(void *fn, void **f, void *m, const char *name);
int kiln_cuLaunchKernel(void *fn, void *f, unsigned gx, unsigned gy, unsigned gz,
                        unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                        void *stream, void **params);
int kiln_cuStreamBeginCapture(void *fn, void *s, int mode);
int kiln_cuStreamEndCapture(void *fn, void *s, void **graph);
int kiln_cuGraphInstantiate(void *fn, void **exec, void *graph, unsigned long long flags);
int kiln_cuGraphLaunch(void *fn, void *exec, void *s);
int kiln_cuGraphDestroy(void *fn, void *g);
int kiln_cuGraphExecDestroy(void *fn, void *e);

/* NVRTC. */
int kiln_nvrtcVersion(void *fn, int *major, int *minor);
const char *kiln_nvrtcGetErrorString(void *fn, int code);
int kiln_nvrtcCreateProgram(void *fn, void **prog, const char *src, const char *name);
int kiln_nvrtcCompileProgram(void *fn, void *prog, int n, const char *const *opts);
int kiln_nvrtcGetSize(void *fn, void *prog, size_t *n);
int kiln_nvrtcGetBytes(void *fn, void *prog, char *out);
int kiln_nvrtcDestroyProgram(void *fn, void **prog);
int kiln_nvrtcGetNumSupportedArchs(void *fn, int *n);
int kiln_nvrtcGetSupportedArchs(void *fn, int *archs);

/* cuBLASLt, cuDNN: handle creation and versions. */
size_t kiln_getVersion(void *fn);
int kiln_createHandle(void *fn, void **h);
int kiln_destroyHandle(void *fn, void *h);
const char *kiln_statusString(void *fn, int code);

/* NVML. nvmlDevice_t is opaque. */
int kiln_nvmlCall0(void *fn);
const char *kiln_nvmlErrorString(void *fn, int code);
int kiln_nvmlDeviceGetHandleByIndex(void *fn, unsigned i, void **dev);
int kiln_nvmlDeviceGetUtilizationRates(void *fn, void *dev, unsigned *gpu, unsigned *mem);
int kiln_nvmlDeviceGetMemoryInfo(void *fn, void *dev, unsigned long long *total,
                                 unsigned long long *free, unsigned long long *used);
int kiln_nvmlSystemGetDriverVersion(void *fn, char *out, unsigned len);

#endif

/* cuDNN legacy convolution API (cuDNN 9 still exports it). Descriptors are
   created and destroyed with kiln_createHandle / kiln_destroyHandle. */
int kiln_cudnnSetStream(void *fn, void *h, void *stream);
int kiln_cudnnSetTensor4d(void *fn, void *d, int format, int dtype, int n, int c, int h, int w);
int kiln_cudnnSetFilter4d(void *fn, void *d, int dtype, int format, int k, int c, int h, int w);
int kiln_cudnnSetConv2d(void *fn, void *d, int ph, int pw, int u, int v, int dh, int dw, int mode, int dtype);
int kiln_cudnnSetInt(void *fn, void *d, int v);
int kiln_cudnnGetConvFwdAlgos(void *fn, void *h, void *x, void *w, void *conv, void *y, int req, int *ret,
                              int *algo, int *status, float *time, size_t *memory, int *mathType);
int kiln_cudnnGetConvFwdWorkspace(void *fn, void *h, void *x, void *w, void *conv, void *y, int algo, size_t *size);
int kiln_cudnnConvFwd(void *fn, void *h, float alpha, void *xd, unsigned long long x, void *wd, unsigned long long w,
                      void *conv, int algo, unsigned long long ws, size_t wsSize, float beta, void *yd, unsigned long long y);

/* cuBLASLt matmul. Descriptors, layouts and preferences are destroyed with
   kiln_destroyHandle; preferences are created with kiln_createHandle. */
int kiln_ltMatmulDescCreate(void *fn, void **d, int computeType, int scaleType);
int kiln_ltSetAttr(void *fn, void *d, int attr, const void *buf, size_t size);
int kiln_ltLayoutCreate(void *fn, void **l, int dtype, unsigned long long rows, unsigned long long cols, long long ld);
int kiln_ltHeuristic(void *fn, void *h, void *desc, void *a, void *b, void *c, void *d, void *pref, int req,
                     void *results, int *ret);
int kiln_ltMatmul(void *fn, void *h, void *desc, float alpha, unsigned long long a, void *ad, unsigned long long b, void *bd,
                  float beta, unsigned long long c, void *cd, unsigned long long d, void *dd, const void *algo,
                  unsigned long long ws, size_t wsSize, void *stream);
