package gateway

import "sync/atomic"

func init() { RegisterPolicy("roundrobin", func() Policy { return &roundRobin{} }) }

// roundRobin takes the candidates in turn, whatever their load.
type roundRobin struct{ next atomic.Uint64 }

func (r *roundRobin) Pick(cands []*Backend) *Backend {
	return cands[r.next.Add(1)%uint64(len(cands))]
}
