package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Kubernetes watches the EndpointSlices of a Service through a client-go
// informer: each ready endpoint address is a backend. Its ports are the
// slice's ports named "http", "grpc" and "metrics", else Ports' numbers.
type Kubernetes struct {
	Client             kubernetes.Interface
	Namespace, Service string
	// Ports are the ports by name ("http", "grpc", "metrics") used when a
	// slice has no port of that name.
	Ports  map[string]int
	Logger *slog.Logger
}

// Run starts the informer, reports the backends once its cache has synced
// (an error if ctx ends first), then on every change until ctx ends.
func (k Kubernetes) Run(ctx context.Context, update func([]Endpoint)) error {
	log := k.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(k.Client, 0, informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=" + k.Service
		}))
	inf := factory.Discovery().V1().EndpointSlices()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, n any) { poke(n) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return fmt.Errorf("EndpointSlices of %s/%s: the informer did not sync", k.Namespace, k.Service)
	}
	var cur []Endpoint
	first := true
	for {
		list, err := inf.Lister().EndpointSlices(k.Namespace).List(labels.Everything())
		if err != nil {
			log.Warn("endpointslices", "err", err)
		} else if eps := k.endpoints(list); first || !sameEndpoints(eps, cur) {
			cur, first = eps, false
			update(eps)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// endpoints lists the ready addresses of the slices, once each.
func (k Kubernetes) endpoints(ss []*discoveryv1.EndpointSlice) []Endpoint {
	seen := map[string]bool{}
	var out []Endpoint
	for _, s := range ss {
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		ports := map[string]int{}
		for n, p := range k.Ports {
			ports[n] = p
		}
		for _, p := range s.Ports {
			if p.Name != nil && p.Port != nil {
				ports[*p.Name] = int(*p.Port)
			}
		}
		if ports["http"] == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, ip := range e.Addresses {
				if seen[ip] {
					continue
				}
				seen[ip] = true
				hp := func(name string) string {
					if ports[name] == 0 {
						return ""
					}
					return net.JoinHostPort(ip, strconv.Itoa(ports[name]))
				}
				out = append(out, Endpoint{HTTP: hp("http"), GRPC: hp("grpc"), Metrics: hp("metrics")})
			}
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		if a.HTTP < b.HTTP {
			return -1
		}
		if a.HTTP > b.HTTP {
			return 1
		}
		return 0
	})
	return out
}
