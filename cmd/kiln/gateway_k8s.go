package main

import (
	"log/slog"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kilnai/kiln/gateway"
)

// k8sDiscoverer watches a Service's EndpointSlices in the cluster kiln runs
// in, with the pod's service account (which needs list and watch on
// endpointslices.discovery.k8s.io in the namespace).
func k8sDiscoverer(ns, name string, ports map[string]int, log *slog.Logger) (gateway.Discoverer, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return gateway.Kubernetes{Client: cs, Namespace: ns, Service: name, Ports: ports, Logger: log}, nil
}
