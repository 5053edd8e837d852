package gateway

import (
	"strings"
	"testing"
	"time"
)

func backends(loads ...[2]int64) []*Backend {
	var bs []*Backend
	for i, l := range loads {
		b := newBackend(Endpoint{HTTP: "b" + string(rune('0'+i)) + ":1"}, time.Now())
		b.outstanding.Store(l[0])
		b.queue.Store(l[1])
		bs = append(bs, b)
	}
	return bs
}

func TestPolicies(t *testing.T) {
	tests := []struct {
		policy string
		loads  [][2]int64 // outstanding, queue
		picks  int
		check  func(t *testing.T, counts map[string]int)
	}{
		{"least", [][2]int64{{5, 0}, {1, 0}, {3, 0}}, 100, func(t *testing.T, c map[string]int) {
			if c["b1:1"] != 100 {
				t.Errorf("least outstanding: %v, want every pick on b1", c)
			}
		}},
		{"least", [][2]int64{{2, 0}, {2, 0}}, 400, func(t *testing.T, c map[string]int) {
			if c["b0:1"] < 100 || c["b1:1"] < 100 {
				t.Errorf("ties not spread: %v", c)
			}
		}},
		{"least", [][2]int64{{1, 50}, {2, 0}}, 50, func(t *testing.T, c map[string]int) {
			if c["b0:1"] != 50 {
				t.Errorf("least counts the gateway's requests only: %v", c)
			}
		}},
		{"p2c", [][2]int64{{1, 50}, {2, 0}}, 50, func(t *testing.T, c map[string]int) {
			if c["b1:1"] != 50 {
				t.Errorf("p2c of two counts the backends' queues: %v, want b1 always", c)
			}
		}},
		{"p2c", [][2]int64{{9, 9}, {0, 0}, {0, 1}, {0, 2}}, 1000, func(t *testing.T, c map[string]int) {
			if c["b0:1"] != 0 {
				t.Errorf("p2c picked the most loaded backend: %v", c)
			}
			if c["b1:1"] <= c["b3:1"] {
				t.Errorf("p2c: the least loaded not favoured: %v", c)
			}
		}},
		{"roundrobin", [][2]int64{{9, 0}, {0, 0}, {0, 0}}, 300, func(t *testing.T, c map[string]int) {
			if c["b0:1"] != 100 || c["b1:1"] != 100 || c["b2:1"] != 100 {
				t.Errorf("round robin: %v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			p, err := NewPolicy(tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			bs := backends(tt.loads...)
			counts := map[string]int{}
			for range tt.picks {
				counts[p.Pick(bs).Name()]++
			}
			tt.check(t, counts)
		})
	}
}

func TestPolicyRegistry(t *testing.T) {
	if _, err := NewPolicy("fastest"); err == nil || !strings.Contains(err.Error(), "least, p2c, roundrobin") {
		t.Errorf("unknown policy: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("a policy registered twice did not panic")
		}
	}()
	RegisterPolicy("least", func() Policy { return leastOutstanding{} })
}

// TestGatewayRoundRobin: through the gateway, round robin takes the
// backends in turn (the candidates come in a fixed order), and the other
// policies spread requests over all of them.
func TestGatewayRoundRobin(t *testing.T) {
	a, b, c := newFake(t, "a", "m"), newFake(t, "b", "m"), newFake(t, "c", "m")
	g, _ := newTestGateway(t, Options{Policy: "roundrobin"}, a, b, c)
	var seq []string
	for range 30 {
		be, err := g.pick(route{model: "m"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, be.Name())
	}
	for i := 3; i < len(seq); i++ {
		if seq[i] != seq[i-3] {
			t.Fatalf("round robin over three backends: %q is not a cycle of three", seq)
		}
	}
	if seq[0] == seq[1] || seq[1] == seq[2] || seq[0] == seq[2] {
		t.Errorf("round robin: %q does not take each backend once in three", seq[:3])
	}
}

// BenchmarkPick: one routing decision among three ready backends.
func BenchmarkPick(b *testing.B) {
	g, err := New(Options{SlowStart: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	now := time.Now()
	eps := []Endpoint{{HTTP: "a:1"}, {HTTP: "b:1"}, {HTTP: "c:1"}}
	g.SetEndpoints(nil)
	g.mu.Lock()
	for _, e := range eps {
		be := newBackend(e, now)
		be.ready, be.healthySince = true, now.Add(-time.Hour)
		be.models = map[string]map[string]bool{"m": {"1": true}}
		g.backends[e.HTTP] = be
	}
	g.relist()
	g.mu.Unlock()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.pick(route{model: "m"}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
