package cache

import "testing"

func key(b byte) Key { return Key{b} }

func TestLRU(t *testing.T) {
	// room for three entries of 100 bytes
	c := New[string](3 * (100 + entryOverhead))
	steps := []struct {
		op       string // put, get
		k        byte
		size     int64
		want     string
		ok       bool
		entries  int
		evicted  uint64
		describe string
	}{
		{op: "put", k: 1, size: 100, ok: true, entries: 1, describe: "first"},
		{op: "put", k: 2, size: 100, ok: true, entries: 2},
		{op: "put", k: 3, size: 100, ok: true, entries: 3},
		{op: "get", k: 1, want: "v1", ok: true, entries: 3, describe: "1 becomes the most recent"},
		{op: "put", k: 4, size: 100, ok: true, entries: 3, evicted: 1, describe: "2, the least recent, goes"},
		{op: "get", k: 2, ok: false, entries: 3, evicted: 1},
		{op: "get", k: 1, want: "v1", ok: true, entries: 3, evicted: 1},
		{op: "put", k: 5, size: 10 * 100, ok: false, entries: 3, evicted: 1, describe: "larger than the cache: not stored"},
		{op: "put", k: 1, size: 250, ok: true, entries: 2, evicted: 2, describe: "a bigger value for 1 pushes out 3"},
		{op: "get", k: 3, ok: false, entries: 2, evicted: 2},
		{op: "get", k: 4, want: "v4", ok: true, entries: 2, evicted: 2},
	}
	for i, s := range steps {
		switch s.op {
		case "put":
			if ok := c.Put(key(s.k), "v"+string('0'+rune(s.k)), s.size); ok != s.ok {
				t.Fatalf("step %d (%s): Put = %v", i, s.describe, ok)
			}
		case "get":
			v, ok := c.Get(key(s.k))
			if ok != s.ok || v != s.want {
				t.Fatalf("step %d (%s): Get = %q %v, want %q %v", i, s.describe, v, ok, s.want, s.ok)
			}
		}
		u := c.Usage()
		if u.Entries != s.entries || u.Evictions != s.evicted || u.Bytes > u.MaxBytes {
			t.Fatalf("step %d (%s): usage %+v, want %d entries, %d evicted", i, s.describe, u, s.entries, s.evicted)
		}
	}
}
