package gateway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// updates collects a Discoverer's lists.
type updates struct {
	mu    sync.Mutex
	lists [][]Endpoint
}

func (u *updates) add(eps []Endpoint) {
	u.mu.Lock()
	u.lists = append(u.lists, eps)
	u.mu.Unlock()
}

func (u *updates) wait(t *testing.T, n int) [][]Endpoint {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		u.mu.Lock()
		got := append([][]Endpoint(nil), u.lists...)
		u.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d updates, want %d: %v", len(got), n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFileDiscovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "backends")
	if err := (File{Path: path}).Run(context.Background(), func([]Endpoint) {}); err == nil {
		t.Error("a missing file: no error")
	}
	os.WriteFile(path, []byte("127.0.0.1:1\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var u updates
	done := make(chan error, 1)
	go func() { done <- File{Path: path, Interval: 10 * time.Millisecond}.Run(ctx, u.add) }()
	u.wait(t, 1)
	// The rewrites replace the file whole (as a deployment's tooling
	// does): os.WriteFile truncates first, and on a loaded machine two
	// reads 10 ms apart can both see it empty, which File publishes as
	// emptied for real (TestFileSettle covers reads of a file cut short).
	replace := func(text string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	replace("bad line\n") // kept as it was
	time.Sleep(50 * time.Millisecond)
	replace("127.0.0.1:1\n127.0.0.1:2\n")
	got := u.wait(t, 2)
	if len(got[0]) != 1 || len(got[1]) != 2 || got[1][1].HTTP != "127.0.0.1:2" {
		t.Errorf("updates %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestFileSettle: a changed list takes effect at its second read in a row,
// so a file read while being rewritten (empty, cut) is never published.
func TestFileSettle(t *testing.T) {
	a := []Endpoint{{HTTP: "127.0.0.1:1"}}
	ab := []Endpoint{{HTTP: "127.0.0.1:1"}, {HTTP: "127.0.0.1:2"}}
	for _, tt := range []struct {
		name  string
		reads [][]Endpoint
		want  []bool
	}{
		{"unchanged", [][]Endpoint{a, a}, []bool{false, false}},
		{"changed, then settled", [][]Endpoint{ab, ab, ab}, []bool{false, true, false}},
		{"truncated mid-write", [][]Endpoint{nil, ab, ab}, []bool{false, false, true}},
		{"cut, then back", [][]Endpoint{nil, a, nil, a}, []bool{false, false, false, false}},
		{"emptied for real", [][]Endpoint{nil, nil}, []bool{false, true}},
	} {
		s := settle{cur: a}
		for i, eps := range tt.reads {
			if got := s.next(eps); got != tt.want[i] {
				t.Errorf("%s: read %d (%v): %v, want %v", tt.name, i, eps, got, tt.want[i])
			}
		}
	}
}

func TestDNSDiscovery(t *testing.T) {
	var mu sync.Mutex
	answers := [][]string{{"10.0.0.2", "10.0.0.1"}, {"10.0.0.1", "10.0.0.2"}, nil, {"10.0.0.3"}}
	i := 0
	lookup := func(ctx context.Context, name string) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if name != "kiln.ns.svc" {
			return nil, errors.New("no such host")
		}
		a := answers[min(i, len(answers)-1)]
		i++
		if a == nil {
			return nil, errors.New("temporary failure")
		}
		return a, nil
	}
	d := DNS{Name: "kiln.ns.svc", HTTPPort: 8000, GRPCPort: 8001, Interval: 5 * time.Millisecond, Lookup: lookup}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var u updates
	go d.Run(ctx, u.add)
	got := u.wait(t, 2)
	want0 := []Endpoint{{HTTP: "10.0.0.1:8000", GRPC: "10.0.0.1:8001"}, {HTTP: "10.0.0.2:8000", GRPC: "10.0.0.2:8001"}}
	if !sameEndpoints(got[0], want0) || len(got[1]) != 1 || got[1][0].HTTP != "10.0.0.3:8000" {
		t.Errorf("updates %v", got)
	}
	bad := DNS{Name: "missing", HTTPPort: 8000, Lookup: lookup}
	if err := bad.Run(ctx, u.add); err == nil {
		t.Error("a name that does not resolve at the start: no error")
	}
}

// TestGatewaySetEndpoints: backends added take traffic once polled ready;
// removed ones get none.
func TestGatewaySetEndpoints(t *testing.T) {
	a, b := newFake(t, "a", "m"), newFake(t, "b", "m")
	g, url := newTestGateway(t, Options{}, a)
	g.SetEndpoints([]Endpoint{{HTTP: a.addr()}, {HTTP: b.addr()}})
	for deadline := time.Now().Add(10 * time.Second); b.count("m") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the added backend got no request")
		}
		post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody))
	}
	g.SetEndpoints([]Endpoint{{HTTP: b.addr()}})
	before := a.count("m")
	for range 20 {
		if got := post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody)); got.code != 200 || got.backend != "b" {
			t.Fatalf("%+v", got)
		}
	}
	if a.count("m") != before {
		t.Error("a removed backend got requests")
	}
}
