package gateway

import (
	"context"
	"slices"
	"time"
)

// Discoverer reports the backends: Run calls update with the whole list
// each time it changes (and once at the start), until ctx ends.
type Discoverer interface {
	Run(ctx context.Context, update func([]Endpoint)) error
}

// Run runs d, feeding its lists to the gateway, until ctx ends; then the
// gateway stops polling.
func (g *Gateway) Run(ctx context.Context, d Discoverer) error {
	return d.Run(ctx, g.SetEndpoints)
}

// sameEndpoints reports whether a and b hold the same endpoints in any order.
func sameEndpoints(a, b []Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(e Endpoint) string { return e.String() }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i], kb[i] = key(a[i]), key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// every calls f at once and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
