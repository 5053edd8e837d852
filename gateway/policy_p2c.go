package gateway

import "math/rand/v2"

func init() { RegisterPolicy("p2c", func() Policy { return powerOfTwo{} }) }

// powerOfTwo picks two backends at random and takes the less loaded, where
// load is the gateway's requests in flight plus the backend's own queue
// depth (its nv_inference_pending_request_count), as Kubernetes' Gateway API
// Inference Extension does with the model servers' metrics.
type powerOfTwo struct{}

func (powerOfTwo) Pick(cands []*Backend) *Backend {
	if len(cands) == 1 {
		return cands[0]
	}
	i := rand.IntN(len(cands))
	j := rand.IntN(len(cands) - 1)
	if j >= i {
		j++
	}
	a, b := cands[i], cands[j]
	if b.Load() < a.Load() {
		return b
	}
	return a
}
