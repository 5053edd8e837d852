// A fake libcuda for tests on machines without a GPU: one device, "Fake
// GPU", compute capability 9.0, driver 13.0. cuMemAlloc fails with
// CUDA_ERROR_OUT_OF_MEMORY above 1 GiB; cuLaunchKernel fails with
// CUDA_ERROR_INVALID_HANDLE for a null function, which cuModuleGetFunction
// returns for the kernel named by $KILN_FAKE_BAD_KERNEL. Page-locked host
// memory is malloc'd. Events measure 1.5 ms, or, with $KILN_FAKE_EVENT_SHRINK
// set, 1 ms less at each measurement from 1000 ms. Built by the tests with cc.
//
// Several GPUs: $KILN_FAKE_GPUS devices (default 1), named by the
// comma-separated $KILN_FAKE_GPU_NAMES ("Fake GPU" for those it does not
// name); CUDA_VISIBLE_DEVICES is honoured as the real driver honours it (a
// list of device indices, cut at the first one that is not a device), and
// device ordinals count the visible devices only. cuDeviceGetUuid gives
// device i the UUID fa4e0000-0000-0000-0000-0000000000ii (i hexadecimal).
// With $KILN_FAKE_SYNC_US set, cuStreamSynchronize sleeps that many
// microseconds (a run that takes time, so that concurrent runs overlap).
//
// Interprocess memory: a fake CUipcMemHandle is the magic "kilnipc1", the
// allocation's size (8 bytes, little-endian), the name of a POSIX shared
// memory object (40 bytes, NUL-padded, under /dev/shm) and the check bytes
// 0xc0..0xc7. cuIpcOpenMemHandle_v2 takes the handle by value, as the real
// one: it checks the magic, the check bytes and the flags (1,
// CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS), and returns CUDA_ERROR_INVALID_VALUE
// for anything else, so an argument passed in the wrong place fails. It
// maps the object (which must hold the size), and the synchronous copies
// (cuMemcpyHtoD_v2, cuMemcpyDtoH_v2) then copy from and to the mapping;
// copies to other addresses do nothing, as before. cuMemGetAddressRange_v2
// and cuIpcGetMemHandle answer for the opened mappings only;
// cuIpcCloseMemHandle unmaps. With $KILN_FAKE_IPC_ALLOC set, cuMemAlloc_v2
// makes such an object (kiln-fake-alloc-<pid>-<n>) and maps it, so that
// the handle cuIpcGetMemHandle gives opens in another process; cuMemFree_v2
// removes it.
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXGPUS 16
static int visible[MAXGPUS], nvisible = -1;

// gpus fills visible from the environment once and returns their count.
static int gpus(void) {
	if (nvisible >= 0) return nvisible;
	int n = 1;
	const char *e = getenv("KILN_FAKE_GPUS");
	if (e && atoi(e) >= 0) n = atoi(e) > MAXGPUS ? MAXGPUS : atoi(e);
	const char *v = getenv("CUDA_VISIBLE_DEVICES");
	nvisible = 0;
	if (!v) {
		for (int i = 0; i < n; i++) visible[nvisible++] = i;
		return nvisible;
	}
	while (*v && nvisible < MAXGPUS) {
		char *end;
		long i = strtol(v, &end, 10);
		if (end == v || i < 0 || i >= n) break;
		visible[nvisible++] = (int)i;
		if (*end != ',') break;
		v = end + 1;
	}
	return nvisible;
}

// gpuName copies the name of physical device d into s.
static void gpuName(char *s, int n, int d) {
	const char *names = getenv("KILN_FAKE_GPU_NAMES");
	strncpy(s, "Fake GPU", n);
	if (!names) return;
	for (int i = 0; i < d && names; i++) {
		names = strchr(names, ',');
		if (names) names++;
	}
	if (!names || !*names || *names == ',') return;
	size_t len = strcspn(names, ",");
	if ((int)len >= n) len = n - 1;
	memcpy(s, names, len);
	s[len] = 0;
}

static const char *names[] = {[0] = "CUDA_SUCCESS", [1] = "CUDA_ERROR_INVALID_VALUE", [2] = "CUDA_ERROR_OUT_OF_MEMORY", [100] = "CUDA_ERROR_NO_DEVICE", [400] = "CUDA_ERROR_INVALID_HANDLE"};
static const char *descs[] = {[0] = "no error", [1] = "invalid argument", [2] = "out of memory", [100] = "no CUDA-capable device is detected", [400] = "invalid resource handle"};

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
int cuDeviceGetCount(int *n) { *n = gpus(); return 0; }
int cuDeviceGet(int *d, int i) { if (i < 0 || i >= gpus()) return 101; *d = visible[i]; return 0; }
int cuDeviceGetName(char *s, int n, int d) { gpuName(s, n, d); return 0; }
int cuDeviceGetUuid(unsigned char *u, int d) {
	memset(u, 0, 16);
	u[0] = 0xfa, u[1] = 0x4e, u[15] = (unsigned char)d;
	return 0;
}
int cuDeviceGetAttribute(int *v, int attr, int d) { *v = attr == 75 ? 9 : attr == 76 ? 0 : 132; return 0; }
int cuDeviceTotalMem_v2(size_t *n, int d) { *n = (size_t)1 << 30; return 0; }
// The context is the address of a static, not a small integer: Go keeps it
// in an unsafe.Pointer, which must not hold an address below 4096.
static char primaryCtx[MAXGPUS];
int cuDevicePrimaryCtxRetain(void **c, int d) { *c = &primaryCtx[d % MAXGPUS]; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { return 0; }
int cuCtxSetCurrent(void *c) { return 0; }
int cuCtxSynchronize(void) { return 0; }
static int fakeAlloc(unsigned long long *p, size_t n);
static int fakeFree(unsigned long long p);
int cuIpcCloseMemHandle(unsigned long long p);
int cuMemAlloc_v2(unsigned long long *p, size_t n) {
	if (n > ((size_t)1 << 30)) return 2;
	if (getenv("KILN_FAKE_IPC_ALLOC")) return fakeAlloc(p, n);
	*p = 0x10000;
	return 0;
}
int cuMemFree_v2(unsigned long long p) { return getenv("KILN_FAKE_IPC_ALLOC") ? fakeFree(p) : 0; }

// The opened interprocess mappings, guarded by a spin lock.
typedef struct { char reserved[64]; } CUipcMemHandle;
#define MAXIPC 64
static struct {
	char *p;
	size_t n;
	CUipcMemHandle h;
} ipc[MAXIPC];
static int ipcLock;
static void lock(void) { while (__atomic_exchange_n(&ipcLock, 1, __ATOMIC_ACQUIRE)) {} }
static void unlock(void) { __atomic_store_n(&ipcLock, 0, __ATOMIC_RELEASE); }

// ipcFind returns the mapping that holds [p, p+n), -1 if p lies in none,
// -2 if p lies in one that does not hold n bytes from it. Call it locked.
static int ipcFind(unsigned long long p, size_t n) {
	for (int i = 0; i < MAXIPC; i++) {
		unsigned long long b = (unsigned long long)(size_t)ipc[i].p;
		if (ipc[i].p && p >= b && p < b + ipc[i].n) return n <= b + ipc[i].n - p ? i : -2;
	}
	return -1;
}

int cuIpcOpenMemHandle_v2(unsigned long long *p, CUipcMemHandle h, unsigned flags) {
	const unsigned char *b = (const unsigned char *)h.reserved;
	if (flags != 1 || memcmp(b, "kilnipc1", 8) != 0) return 1;
	for (int i = 0; i < 8; i++)
		if (b[56 + i] != 0xc0 + i) return 1;
	unsigned long long n = 0;
	for (int i = 0; i < 8; i++) n |= (unsigned long long)b[8 + i] << (8 * i);
	char name[64] = "/dev/shm/";
	memcpy(name + 9, b + 16, 40);
	name[sizeof name - 1] = 0;
	if (n == 0 || strchr(name + 9, '/')) return 1;
	int fd = open(name, O_RDWR);
	if (fd < 0) return 1;
	struct stat st;
	if (fstat(fd, &st) != 0 || (unsigned long long)st.st_size < n) {
		close(fd);
		return 1;
	}
	void *m = mmap(0, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) return 2;
	lock();
	for (int i = 0; i < MAXIPC; i++)
		if (!ipc[i].p) {
			ipc[i].p = m, ipc[i].n = n, ipc[i].h = h;
			unlock();
			*p = (unsigned long long)(size_t)m;
			return 0;
		}
	unlock();
	munmap(m, n);
	return 2;
}
// With $KILN_FAKE_IPC_ALLOC set, cuMemAlloc_v2 allocates a new shared
// memory object, opened as by a handle, so that cuIpcGetMemHandle gives a
// handle that another process opens; cuMemFree_v2 removes it.
static int fakeAlloc(unsigned long long *p, size_t n) {
	static int count;
	CUipcMemHandle h;
	unsigned char *b = (unsigned char *)h.reserved;
	memset(b, 0, 64);
	memcpy(b, "kilnipc1", 8);
	for (int i = 0; i < 8; i++) b[8 + i] = (unsigned char)((unsigned long long)n >> (8 * i));
	// the name: kiln-fake-alloc-<pid>-<count>, the numbers in hexadecimal
	char name[40] = "kiln-fake-alloc-", path[64];
	int j = 16;
	unsigned long nums[2] = {(unsigned long)getpid(), (unsigned long)__atomic_fetch_add(&count, 1, __ATOMIC_RELAXED)};
	for (int k = 0; k < 2; k++) {
		if (k) name[j++] = '-';
		int start = j;
		do name[j++] = "0123456789abcdef"[nums[k] % 16]; while ((nums[k] /= 16) && j < 38);
		for (int l = start, r = j - 1; l < r; l++, r--) {
			char c = name[l];
			name[l] = name[r], name[r] = c;
		}
	}
	name[j] = 0;
	memcpy(b + 16, name, j);
	for (int i = 0; i < 8; i++) b[56 + i] = 0xc0 + i;
	memcpy(path, "/dev/shm/", 9);
	memcpy(path + 9, name, j + 1);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) return 2;
	int bad = ftruncate(fd, (off_t)n);
	close(fd);
	if (bad) return 2;
	return cuIpcOpenMemHandle_v2(p, h, 1);
}
static int fakeFree(unsigned long long p) {
	char path[64] = "/dev/shm/";
	lock();
	int i = ipcFind(p, 1);
	if (i >= 0) memcpy(path + 9, ipc[i].h.reserved + 16, 40);
	unlock();
	path[63] = 0;
	if (i < 0) return 1;
	unlink(path);
	return cuIpcCloseMemHandle(p);
}

int cuIpcCloseMemHandle(unsigned long long p) {
	lock();
	for (int i = 0; i < MAXIPC; i++)
		if (ipc[i].p && (unsigned long long)(size_t)ipc[i].p == p) {
			munmap(ipc[i].p, ipc[i].n);
			ipc[i].p = 0;
			unlock();
			return 0;
		}
	unlock();
	return 400;
}
int cuIpcGetMemHandle(CUipcMemHandle *h, unsigned long long p) {
	lock();
	int i = ipcFind(p, 1);
	if (i >= 0) *h = ipc[i].h;
	unlock();
	return i >= 0 ? 0 : 1;
}
int cuMemGetAddressRange_v2(unsigned long long *base, size_t *n, unsigned long long p) {
	lock();
	int i = ipcFind(p, 1);
	if (i >= 0) {
		if (base) *base = (unsigned long long)(size_t)ipc[i].p;
		if (n) *n = ipc[i].n;
	}
	unlock();
	return i >= 0 ? 0 : 1;
}
int cuMemcpyHtoD_v2(unsigned long long dst, const void *src, size_t n) {
	lock();
	int i = ipcFind(dst, n);
	if (i >= 0) memcpy((void *)(size_t)dst, src, n);
	unlock();
	return i == -2 ? 1 : 0;
}
int cuMemcpyDtoH_v2(void *dst, unsigned long long src, size_t n) {
	lock();
	int i = ipcFind(src, n);
	if (i >= 0) memcpy(dst, (const void *)(size_t)src, n);
	unlock();
	return i == -2 ? 1 : 0;
}
int cuMemcpyHtoDAsync_v2(void) { return 0; }
int cuMemcpyDtoHAsync_v2(void) { return 0; }
int cuMemAllocHost_v2(void **p, size_t n) { *p = malloc(n); return *p ? 0 : 2; }
int cuMemFreeHost(void *p) { free(p); return 0; }
int cuStreamCreate(void) { return 0; }
int cuStreamSynchronize(void) {
	const char *us = getenv("KILN_FAKE_SYNC_US");
	if (us) usleep((useconds_t)atoi(us));
	return 0;
}
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
/* A function is the address of a static, not a small integer: Go keeps it
   in an unsafe.Pointer, and a stack copy (growth, or the shrink a garbage
   collection may make at any time) throws "invalid pointer found on stack"
   for a value below 4096 in a pointer slot. */
static char fakeFunction;
int cuModuleGetFunction(void **f, void *m, const char *name) {
	const char *bad = getenv("KILN_FAKE_BAD_KERNEL");
	*f = bad && strcmp(bad, name) == 0 ? 0 : (void *)&fakeFunction;
	return 0;
}
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned sh, void *s, void **params, void **extra) {
	return f == 0 ? 400 : 0;
}
/* cuLaunchKernelEx accepts the one attribute LaunchPDL gives
   (PROGRAMMATIC_STREAM_SERIALIZATION = 1) and counts the launches;
   fakeLastLaunchEx reports the count and the last grid, block, shared
   memory and stream. */
struct fakeLaunchConfig {
	unsigned gx, gy, gz, bx, by, bz, sh;
	void *s;
	struct { int id, pad; int value[16]; } *attrs;
	unsigned nattrs;
};
static struct fakeLaunchConfig lastEx;
static int launchesEx;
int cuLaunchKernelEx(const struct fakeLaunchConfig *c, void *f, void **params, void **extra) {
	if (f == 0) return 400;
	if (c->nattrs != 1 || c->attrs[0].id != 6 || c->attrs[0].value[0] != 1) return 1;
	lastEx = *c;
	launchesEx++;
	return 0;
}
void fakeLastLaunchEx(int *n, unsigned *dims, void **s) {
	*n = launchesEx;
	unsigned v[7] = {lastEx.gx, lastEx.gy, lastEx.gz, lastEx.bx, lastEx.by, lastEx.bz, lastEx.sh};
	memcpy(dims, v, sizeof v);
	*s = lastEx.s;
}
/* cuTensorMapEncodeTiled writes what it was given into the map's 16 words
   (word 0: rank | swizzle << 8 | L2 promotion << 16 | interleave << 24 |
   oob fill << 32; 1: the address; 2-6: the dimensions; 7-10: the strides;
   11-15: box | element stride << 32), so that a test can read it back;
   a map not 64-byte aligned or a type other than UINT8 (0) is invalid (1). */
int cuTensorMapEncodeTiled(unsigned long long *m, int type, unsigned rank, void *addr,
                           const unsigned long long *dims, const unsigned long long *strides,
                           const unsigned *box, const unsigned *elem, int interleave, int swizzle,
                           int l2, int oob) {
	if (((size_t)m & 63) != 0 || type != 0 || rank < 1 || rank > 5) return 1;
	memset(m, 0, 128);
	m[0] = rank | (unsigned long long)swizzle << 8 | (unsigned long long)l2 << 16 |
	       (unsigned long long)interleave << 24 | (unsigned long long)oob << 32;
	m[1] = (unsigned long long)(size_t)addr;
	for (unsigned i = 0; i < rank; i++) {
		m[2 + i] = dims[i];
		if (i > 0) m[6 + i] = strides[i - 1];
		m[11 + i] = box[i] | (unsigned long long)elem[i] << 32;
	}
	return 0;
}
/* cuTensorMapEncodeIm2col writes what it was given into the map's 16 words
   as cuTensorMapEncodeTiled does, with word 0 also holding pixels a column
   << 40 and channels a pixel << 52, and words 11-15 element stride |
   (lower corner & 0xffff) << 32 | (upper corner & 0xffff) << 48, the
   corners of spatial dimension i (1 to rank - 2) in word 11 + i; rank 3-5,
   64-byte aligned, UINT8 only, else invalid (1). */
int cuTensorMapEncodeIm2col(unsigned long long *m, int type, unsigned rank, void *addr,
                            const unsigned long long *dims, const unsigned long long *strides,
                            const int *lower, const int *upper, unsigned cpp, unsigned ppc,
                            const unsigned *elem, int interleave, int swizzle, int l2, int oob) {
	if (((size_t)m & 63) != 0 || type != 0 || rank < 3 || rank > 5) return 1;
	memset(m, 0, 128);
	m[0] = rank | (unsigned long long)swizzle << 8 | (unsigned long long)l2 << 16 |
	       (unsigned long long)interleave << 24 | (unsigned long long)oob << 32 |
	       (unsigned long long)ppc << 40 | (unsigned long long)cpp << 52;
	m[1] = (unsigned long long)(size_t)addr;
	for (unsigned i = 0; i < rank; i++) {
		m[2 + i] = dims[i];
		if (i > 0) m[6 + i] = strides[i - 1];
		m[11 + i] = elem[i];
		if (i >= 1 && i <= rank - 2)
			m[11 + i] |= (unsigned long long)(lower[i - 1] & 0xffff) << 32 |
			             (unsigned long long)(upper[i - 1] & 0xffff) << 48;
	}
	return 0;
}
int cuStreamBeginCapture_v2(void) { return 0; }
int cuStreamEndCapture(void) { return 0; }
int cuGraphInstantiateWithFlags(void) { return 0; }
int cuGraphLaunch(void) { return 0; }
int cuGraphDestroy(void) { return 0; }
int cuGraphExecDestroy(void) { return 0; }
