// Package verdict is a bounded, expiring cache of decisions (golang-lru/v2).
// Each entry carries its own time to live, so denials can expire sooner than
// allows. Keys include the policy revision, so a reload takes effect at once.
package verdict

import (
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Cache maps keys to values with per-entry expiry.
type Cache[V any] struct {
	c      *lru.Cache[string, entry[V]]
	now    func() time.Time
	hits   atomic.Int64
	misses atomic.Int64
}

type entry[V any] struct {
	v       V
	expires time.Time
}

// New makes a cache of at most size entries.
func New[V any](size int) *Cache[V] {
	if size <= 0 {
		size = 1
	}
	c, _ := lru.New[string, entry[V]](size)
	return &Cache[V]{c: c, now: time.Now}
}

// Get returns a live entry.
func (c *Cache[V]) Get(key string) (V, bool) {
	e, ok := c.c.Get(key)
	if !ok || !c.now().Before(e.expires) {
		if ok {
			c.c.Remove(key)
		}
		c.misses.Add(1)
		var zero V
		return zero, false
	}
	c.hits.Add(1)
	return e.v, true
}

// Add stores v for ttl (ttl <= 0 stores nothing).
func (c *Cache[V]) Add(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.c.Add(key, entry[V]{v: v, expires: c.now().Add(ttl)})
}

// Remove drops a key.
func (c *Cache[V]) Remove(key string) { c.c.Remove(key) }

// Purge drops everything.
func (c *Cache[V]) Purge() { c.c.Purge() }

// Len is the number of entries (live or not yet noticed as expired).
func (c *Cache[V]) Len() int { return c.c.Len() }

// Stats returns hit and miss counts.
func (c *Cache[V]) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

// SetClock replaces the time source (tests).
func (c *Cache[V]) SetClock(now func() time.Time) { c.now = now }
