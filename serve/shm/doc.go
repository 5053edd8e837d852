// Package shm keeps the system shared memory regions of Triton's shared
// memory extension: a client creates a POSIX shared memory object (shm_open,
// a file under /dev/shm), registers a region of it by name, key, offset and
// size, and then names the region in inference requests, for inputs read
// from it and outputs written into it instead of carrying their bytes.
//
// A region is mapped (mmap, MAP_SHARED) when registered and unmapped when
// unregistered. Every access is checked against the region's bounds, and a
// fault while copying (the client shrank the object under a mapping) is an
// error, never a crash.
package shm
