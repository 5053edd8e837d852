package serve

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/kilnai/kiln/serve/cache"
	"github.com/kilnai/kiln/tensor"
)

// The response cache (Triton's response_cache): a model opts in with
// response_cache { enable: true } in its config, and the server bounds the
// bytes of all cached responses (Options.CacheBytes, kiln serve
// --cache-size). A request's key hashes its model, the loaded version
// (a reload never answers from the previous weights), its inputs (names,
// datatypes, shapes, bytes), the outputs it asks for and their
// classification. Stateful models (sequence_batching) never cache.

// CacheUsage are the response cache's counters.
type CacheUsage = cache.Usage

// cacheGen numbers the loaded model versions, for cache keys.
var cacheGen atomic.Uint64

// cachedResponse is a response's outputs; the cache keeps its own copies,
// and each request it answers gets copies of them.
type cachedResponse struct{ outputs []NamedTensor }

// cacheProbe is a request's passage through the cache.
type cacheProbe struct {
	use   bool
	key   cache.Key
	took  time.Duration // lookup (and insertion) time
	batch int
}

// CacheUsage returns the response cache's counters; ok is false when the
// server has no cache.
func (s *Server) CacheUsage() (u CacheUsage, ok bool) {
	if s.cache == nil {
		return u, false
	}
	return s.cache.Usage(), true
}

// cacheLookup looks req up in the cache when m caches. On a hit it
// returns the response, with the request counted.
func (s *Server) cacheLookup(m *model, v *version, req *InferRequest, start time.Time) (*InferResponse, cacheProbe, error) {
	var p cacheProbe
	if s.cache == nil || v.seq != nil || !m.repo.Config.Raw.GetResponseCache().GetEnable() {
		return nil, p, nil
	}
	t0 := time.Now()
	p.key, p.use = requestKey(m.name, v, req)
	if !p.use {
		return nil, p, nil
	}
	c, hit := s.cache.Get(p.key)
	p.took = time.Since(t0)
	if !hit {
		return nil, p, nil
	}
	p.batch = requestBatch(m, req)
	// copies: a response's buffers are the front end's once it has them
	resp := &InferResponse{Model: m.name, Version: v.stats.Version, ID: req.ID, Outputs: make([]NamedTensor, len(c.outputs))}
	for i, o := range c.outputs {
		resp.Outputs[i] = NamedTensor{Name: o.Name, Tensor: o.Tensor.Clone()}
	}
	var err error
	if len(req.OutputShm) > 0 {
		err = s.writeShmOutputs(resp, req)
	}
	total := time.Since(start)
	v.mu.Lock()
	if err == nil {
		v.stats.SuccessCount++
		v.stats.SuccessNs += uint64(total)
		v.stats.LastInference = time.Now()
		v.stats.CacheHitCount++
		v.stats.CacheHitNs += uint64(p.took)
	} else {
		v.stats.FailCount++
		v.stats.FailNs += uint64(total)
	}
	v.mu.Unlock()
	if s.opts.Observer != nil {
		reason := ""
		if err != nil {
			reason = FailureReason(err)
		}
		s.opts.Observer.RequestDone(m.name, v.stats.Version, p.batch, reason, Times{Total: total})
	}
	if err != nil {
		return nil, p, err
	}
	return resp, p, nil
}

// cacheStore stores a computed response and counts the miss.
func (s *Server) cacheStore(v *version, p cacheProbe, resp *InferResponse) {
	if !p.use {
		return
	}
	t0 := time.Now()
	outs := make([]NamedTensor, len(resp.Outputs))
	size := int64(0)
	for i, o := range resp.Outputs {
		// a copy: the response's buffers may be reused once it is sent
		outs[i] = NamedTensor{Name: o.Name, Tensor: o.Tensor.Clone()}
		size += int64(len(o.Name) + len(o.Tensor.Data) + 8*len(o.Tensor.Shape))
		for _, s := range o.Tensor.Strings {
			size += int64(len(s)) + 16
		}
	}
	s.cache.Put(p.key, cachedResponse{outs}, size)
	took := p.took + time.Since(t0)
	v.mu.Lock()
	v.stats.CacheMissCount++
	v.stats.CacheMissNs += uint64(took)
	v.mu.Unlock()
}

// requestBatch is the batch size of req (1 for a model without batching).
func requestBatch(m *model, req *InferRequest) int {
	if m.repo.Config.MaxBatchSize > 0 {
		for _, t := range req.Inputs {
			if t != nil && len(t.Shape) > 0 {
				return t.Shape[0]
			}
		}
	}
	return 1
}

// requestKey hashes what decides req's answer; ok is false for a request
// that cannot be keyed (a nil input: it fails anyway).
func requestKey(model string, v *version, req *InferRequest) (k cache.Key, ok bool) {
	h := sha256.New()
	str := func(s string) {
		writeUint(h, uint64(len(s)))
		h.Write([]byte(s))
	}
	str(model)
	writeUint(h, v.cacheGen)
	names := make([]string, 0, len(req.Inputs))
	for n := range req.Inputs {
		names = append(names, n)
	}
	slices.Sort(names)
	writeUint(h, uint64(len(names)))
	for _, n := range names {
		t := req.Inputs[n]
		if t == nil {
			return k, false
		}
		str(n)
		writeUint(h, uint64(t.DType))
		writeUint(h, uint64(len(t.Shape)))
		for _, d := range t.Shape {
			writeUint(h, uint64(d))
		}
		if t.DType == tensor.String {
			writeUint(h, uint64(len(t.Strings)))
			for _, s := range t.Strings {
				str(s)
			}
		} else {
			writeUint(h, uint64(len(t.Data)))
			h.Write(t.Data)
		}
	}
	// the outputs asked for, then each output's classification (an output
	// may be classified without being named: all outputs asked)
	named := func(names []string, val func(string) uint64) {
		slices.Sort(names)
		writeUint(h, uint64(len(names)))
		for _, n := range names {
			str(n)
			writeUint(h, val(n))
		}
	}
	named(slices.Clone(req.Outputs), func(string) uint64 { return 0 })
	named(slices.Collect(maps.Keys(req.Classes)), func(o string) uint64 { return uint64(req.Classes[o]) })
	h.Sum(k[:0])
	return k, true
}

func writeUint(h hash.Hash, n uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	h.Write(b[:])
}
