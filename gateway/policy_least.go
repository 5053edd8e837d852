package gateway

import "math/rand/v2"

func init() { RegisterPolicy("least", func() Policy { return leastOutstanding{} }) }

// leastOutstanding picks the backend with the fewest requests the gateway
// has in flight on it, ties broken at random.
type leastOutstanding struct{}

func (leastOutstanding) Pick(cands []*Backend) *Backend {
	start := rand.IntN(len(cands))
	best := cands[start]
	bestN := best.Outstanding()
	for i := 1; i < len(cands); i++ {
		b := cands[(start+i)%len(cands)]
		if n := b.Outstanding(); n < bestN {
			best, bestN = b, n
		}
	}
	return best
}
