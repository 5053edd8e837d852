package gateway

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"
)

// DNS resolves Name (such as a Kubernetes headless Service,
// NAME.NAMESPACE.svc) every Interval (default 5 s): each address is a
// backend with the given ports (GRPCPort and MetricsPort 0: none).
type DNS struct {
	Name                            string
	HTTPPort, GRPCPort, MetricsPort int
	Interval                        time.Duration
	// Lookup resolves a name to addresses (default net.DefaultResolver.LookupHost).
	Lookup func(ctx context.Context, name string) ([]string, error)
	Logger *slog.Logger
}

// Run resolves now (an error if that fails), then every Interval; a failed
// re-resolution keeps the last list.
func (d DNS) Run(ctx context.Context, update func([]Endpoint)) error {
	lookup := d.Lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	resolve := func() ([]Endpoint, error) {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, err := lookup(lctx, d.Name)
		if err != nil {
			return nil, err
		}
		slices.Sort(addrs)
		var eps []Endpoint
		for _, a := range slices.Compact(addrs) {
			eps = append(eps, d.endpoint(a))
		}
		return eps, nil
	}
	cur, err := resolve()
	if err != nil {
		return err
	}
	update(cur)
	iv := d.Interval
	if iv <= 0 {
		iv = 5 * time.Second
	}
	every(ctx, iv, func() {
		eps, err := resolve()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("dns", "name", d.Name, "err", err)
			}
			return
		}
		if !sameEndpoints(eps, cur) {
			cur = eps
			update(eps)
		}
	})
	return nil
}

func (d DNS) endpoint(ip string) Endpoint {
	hp := func(p int) string {
		if p <= 0 {
			return ""
		}
		return net.JoinHostPort(ip, strconv.Itoa(p))
	}
	return Endpoint{HTTP: hp(d.HTTPPort), GRPC: hp(d.GRPCPort), Metrics: hp(d.MetricsPort)}
}
