package grpcapi

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"google.golang.org/grpc/mem"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// A ModelInferRequest's raw_input_contents are most of its bytes (tinycnn:
// 12,288 of about 12,400), and proto.Unmarshal copies them into fresh
// slices: half of what kiln serve allocated per gRPC request, and so half
// of what made its garbage collector run. unmarshalInferRequest copies
// them instead into buffers of a pool (aligned as tensors are, so that the
// inputs use them in place), leased to the request message; Service.infer
// gives them back once the request has succeeded, when nothing refers to
// them any more (the scheduler has run the model; the response cache and
// the traffic recorder keep copies). A request that fails, or never reaches
// the Service (a client without credentials), keeps its buffers: the
// garbage collector takes them with it, as it took proto's.

// maxPooledRaw is the largest raw input kept in the pool: larger ones are
// allocated as proto.Unmarshal would.
const maxPooledRaw = 1 << 20

// rawGrain rounds the pooled buffers' sizes, so that inputs of nearly the
// same size share them.
const rawGrain = 4 << 10

// rawBufs holds *[]byte of length = capacity, aligned to tensor.Alignment.
var rawBufs sync.Pool

// getRaw returns a pooled buffer for n bytes (0 < n <= maxPooledRaw) and
// the slice of n bytes of it.
func getRaw(n int) (*[]byte, []byte) {
	p, _ := rawBufs.Get().(*[]byte)
	if p == nil || len(*p) < n {
		size := (n + rawGrain - 1) / rawGrain * rawGrain
		words := make([]uint64, (size+tensor.Alignment)/8)
		b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
		off := int((tensor.Alignment - uintptr(unsafe.Pointer(&b[0]))%tensor.Alignment) % tensor.Alignment)
		b = b[off : off+size : off+size]
		p = &b
	}
	return p, (*p)[:n:n]
}

// lease is the pooled buffers of one request message.
type lease struct {
	key     uintptr // the message's address
	bufs    []*[]byte
	few     [2]*[]byte // bufs' storage for up to 2 inputs
	cleanup runtime.Cleanup
}

// leases maps a request message's address to its lease. A message that
// never reaches Service.infer is dropped from it by a cleanup once the
// garbage collector finds the message unreachable (keyed by address, not
// pointer, so that the map does not keep the message alive).
var leases struct {
	sync.Mutex
	m map[uintptr]*lease
}

func dropLease(l *lease) {
	leases.Lock()
	if leases.m[l.key] == l {
		delete(leases.m, l.key)
	}
	leases.Unlock()
}

// takeLease removes and returns the lease of r (nil: none).
func takeLease(r *inference.ModelInferRequest) *lease {
	key := uintptr(unsafe.Pointer(r))
	leases.Lock()
	l := leases.m[key]
	if l != nil {
		delete(leases.m, key)
	}
	leases.Unlock()
	if l != nil {
		l.cleanup.Stop()
	}
	return l
}

// overlaps reports whether b shares memory with one of l's buffers.
func (l *lease) overlaps(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	hi := lo + uintptr(len(b))
	for _, p := range l.bufs {
		s := uintptr(unsafe.Pointer(unsafe.SliceData(*p)))
		if lo < s+uintptr(len(*p)) && s < hi {
			return true
		}
	}
	return false
}

// release gives r's pooled buffers back when no output shares memory with
// them (a model that answers an input as it is), and empties r's raw
// contents: they may then serve another request. Call it once r's request
// has succeeded and its response is built.
func release(r *inference.ModelInferRequest, outputs []serve.NamedTensor) {
	l := takeLease(r)
	if l == nil {
		return
	}
	for _, o := range outputs {
		if o.Tensor != nil && l.overlaps(o.Tensor.Data) {
			return // the garbage collector takes them
		}
	}
	clear(r.RawInputContents)
	for _, p := range l.bufs {
		rawBufs.Put(p)
	}
	rawReleased.Add(int64(len(l.bufs)))
}

// rawReleased counts the buffers given back (for tests).
var rawReleased atomic.Int64

// unmarshalInferRequest decodes a ModelInferRequest as proto.Unmarshal
// does (see decodeRequest: without the allocations a repeated field of
// many small entries costs proto.Unmarshal), its raw_input_contents
// (field 7) from 1 KiB to maxPooledRaw into pooled buffers leased to r,
// the smaller ones into one aligned buffer of their own.
func unmarshalInferRequest(data mem.BufferSlice, r *inference.ModelInferRequest) error {
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	pooled, err := decodeRequest(b, r)
	if err != nil || len(pooled) == 0 {
		return err
	}
	l := &lease{key: uintptr(unsafe.Pointer(r))}
	l.bufs = append(l.few[:0], pooled...)
	l.cleanup = runtime.AddCleanup(r, dropLease, l)
	leases.Lock()
	if leases.m == nil {
		leases.m = map[uintptr]*lease{}
	}
	leases.m[l.key] = l
	leases.Unlock()
	return nil
}
