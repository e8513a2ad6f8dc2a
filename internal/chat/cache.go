package chat

import "sync"

// Cache sizes: each bounds the entries of one in-process cache on the
// ingress path. An entry is a few dozen bytes, so each cache stays under a
// few MiB at its bound; a miss costs one query, as it did without a cache.
const (
	// maxCachedConnections is connection id → user: one per open WebSocket
	// connection this process serves, and some that closed elsewhere.
	maxCachedConnections = 50_000
	// maxCachedDirect is user pair → direct conversation id.
	maxCachedDirect = 100_000
	// maxCachedMembers is conversation id → its participants.
	maxCachedMembers = 100_000
	// maxCachedGroups is the ids of conversations known to be groups.
	maxCachedGroups = 100_000
)

// boundedCache is a concurrency-safe map that holds at most max entries.
// It keeps two generations: entries go into the young one; when that holds
// max/2 entries the old generation is dropped and the young one becomes
// old. A hit in the old generation moves the entry back to the young one,
// so entries in use survive and the rest age out, without the bookkeeping
// of an exact LRU.
//
// Only facts that never change may go in: a cached value must be as true
// as the database's answer for as long as it is cached.
type boundedCache[K comparable, V any] struct {
	mu       sync.Mutex
	half     int
	young    map[K]V
	old      map[K]V
	disabled bool
}

func newBoundedCache[K comparable, V any](max int) *boundedCache[K, V] {
	half := max / 2
	return &boundedCache[K, V]{half: half, young: make(map[K]V), old: map[K]V{}, disabled: half <= 0}
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.young[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		delete(c.old, k)
		c.putLocked(k, v)
	}
	return v, ok
}

func (c *boundedCache[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.old, k)
	c.putLocked(k, v)
}

func (c *boundedCache[K, V]) putLocked(k K, v V) {
	if c.disabled {
		return
	}
	if _, ok := c.young[k]; !ok && len(c.young) >= c.half {
		c.old, c.young = c.young, make(map[K]V, c.half)
	}
	c.young[k] = v
}

func (c *boundedCache[K, V]) remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.young, k)
	delete(c.old, k)
}
