package cache

import (
	"container/list"
	"sync"
)

// Key identifies a request: a SHA-256 of its model, version and inputs.
type Key [32]byte

// entryOverhead is added to each entry's size for the key, the list
// element and the map slot.
const entryOverhead = 128

// Usage are the cache's counters.
type Usage struct {
	// Entries and Bytes are what the cache holds now, MaxBytes its bound.
	Entries         int
	Bytes, MaxBytes int64
	// Evictions counts the entries dropped to make room.
	Evictions uint64
}

type entry[V any] struct {
	key  Key
	val  V
	size int64
}

// LRU is a least-recently-used cache bounded by bytes. Its methods are
// safe for concurrent use.
type LRU[V any] struct {
	mu        sync.Mutex
	max, size int64
	order     *list.List // most recent first
	items     map[Key]*list.Element
	evictions uint64
}

// New returns an empty cache that holds at most maxBytes.
func New[V any](maxBytes int64) *LRU[V] {
	return &LRU[V]{max: maxBytes, order: list.New(), items: map[Key]*list.Element{}}
}

// Get returns the value of k, and makes it the most recently used.
func (c *LRU[V]) Get(k Key) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*entry[V]).val, true
	}
	var zero V
	return zero, false
}

// Put stores v, of size bytes, under k, dropping the least recently used
// entries to make room. A value larger than the whole cache is not stored
// (Put returns false).
func (c *LRU[V]) Put(k Key, v V, size int64) bool {
	size += entryOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.max {
		return false
	}
	if e, ok := c.items[k]; ok {
		old := e.Value.(*entry[V])
		c.size += size - old.size
		old.val, old.size = v, size
		c.order.MoveToFront(e)
	} else {
		c.items[k] = c.order.PushFront(&entry[V]{key: k, val: v, size: size})
		c.size += size
	}
	for c.size > c.max {
		last := c.order.Back()
		old := last.Value.(*entry[V])
		c.order.Remove(last)
		delete(c.items, old.key)
		c.size -= old.size
		c.evictions++
	}
	return true
}

// Usage returns the cache's counters.
func (c *LRU[V]) Usage() Usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Usage{Entries: len(c.items), Bytes: c.size, MaxBytes: c.max, Evictions: c.evictions}
}
