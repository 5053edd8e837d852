/* A fake libnvidia-ml with two GPUs, for testing the NVML GPU metrics
 * without a GPU. Built by the tests with cc -shared. Their UUIDs are those
 * of device/cuda/testdata/fakecuda.c's devices 0 and 1. */
#include <stdio.h>
#include <string.h>

typedef struct { unsigned gpu, memory; } util_t;
typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned util; unsigned long long total, used; } dev_t_;

static dev_t_ devs[2] = {{37, 16ULL << 30, 3ULL << 30}, {100, 80ULL << 30, 80ULL << 30}};

int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int r) { return r == 2 ? "Invalid Argument" : "Unknown Error"; }
int nvmlSystemGetDriverVersion(char *out, unsigned len) {
	strncpy(out, "999.1.2", len);
	return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **dev) {
	if (i >= 2) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
	*dev = &devs[i];
	return 0;
}
int nvmlDeviceGetUtilizationRates(void *dev, util_t *u) {
	u->gpu = ((dev_t_ *)dev)->util;
	u->memory = 5;
	return 0;
}
int nvmlDeviceGetMemoryInfo(void *dev, mem_t *m) {
	dev_t_ *d = dev;
	m->total = d->total;
	m->used = d->used;
	m->free = d->total - d->used;
	return 0;
}
int nvmlDeviceGetUUID(void *dev, char *out, unsigned len) {
	snprintf(out, len, "GPU-fa4e0000-0000-0000-0000-0000000000%02x", (unsigned)((dev_t_ *)dev - devs));
	return 0;
}
