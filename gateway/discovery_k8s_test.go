package gateway

import (
	"context"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
)

func slice(name, service string, ports map[string]int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "ml", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: &n, Port: &p})
	}
	return s
}

func endpoint(ready bool, ips ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: ips, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
}

// TestKubernetesDiscovery: EndpointSlices of the Service, through an
// informer on client-go's fake clientset: ready addresses with the named
// ports; changes, other Services' slices and not-ready endpoints.
func TestKubernetesDiscovery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := k8sfake.NewClientset(
		slice("kiln-a", "kiln", map[string]int32{"http": 8000, "grpc": 8001}, endpoint(true, "10.0.0.1"), endpoint(false, "10.0.0.9")),
		slice("other", "other", map[string]int32{"http": 8000}, endpoint(true, "10.9.9.9")),
	)
	k := Kubernetes{Client: cs, Namespace: "ml", Service: "kiln", Ports: map[string]int{"metrics": 8002}}
	var u updates
	go k.Run(ctx, u.add)
	got := u.wait(t, 1)
	want := []Endpoint{{HTTP: "10.0.0.1:8000", GRPC: "10.0.0.1:8001", Metrics: "10.0.0.1:8002"}}
	if !sameEndpoints(got[0], want) {
		t.Fatalf("first list %v, want %v", got[0], want)
	}
	sl := cs.DiscoveryV1().EndpointSlices("ml")
	if _, err := sl.Create(ctx, slice("kiln-b", "kiln", map[string]int32{"http": 9000}, endpoint(true, "10.0.0.2")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got = u.wait(t, 2)
	want = append(want, Endpoint{HTTP: "10.0.0.2:9000", Metrics: "10.0.0.2:8002"})
	if !sameEndpoints(got[1], want) {
		t.Fatalf("after a slice added: %v, want %v", got[1], want)
	}
	if _, err := sl.Update(ctx, slice("kiln-a", "kiln", map[string]int32{"http": 8000, "grpc": 8001}, endpoint(false, "10.0.0.1")), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got = u.wait(t, 3)
	if !sameEndpoints(got[2], want[1:]) {
		t.Fatalf("after 10.0.0.1 turned not ready: %v", got[2])
	}
	if err := sl.Delete(ctx, "kiln-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got = u.wait(t, 4); len(got[3]) != 0 {
		t.Fatalf("after the slices went: %v", got[3])
	}
}
