package verdict

import (
	"testing"
	"time"
)

func TestTTLAndBound(t *testing.T) {
	c := New[string](2)
	now := time.Unix(1000, 0)
	c.SetClock(func() time.Time { return now })
	c.Add("allow", "a", 10*time.Minute)
	c.Add("deny", "d", 30*time.Second)
	c.Add("never", "n", 0)
	if _, ok := c.Get("never"); ok {
		t.Fatal("ttl 0 was stored")
	}
	now = now.Add(time.Minute)
	if _, ok := c.Get("deny"); ok {
		t.Fatal("deny outlived its ttl")
	}
	if v, ok := c.Get("allow"); !ok || v != "a" {
		t.Fatal("allow expired early")
	}
	c.Add("x", "x", time.Hour)
	c.Add("y", "y", time.Hour)
	if c.Len() > 2 {
		t.Fatalf("Len = %d, bound is 2", c.Len())
	}
	if _, ok := c.Get("allow"); ok {
		t.Fatal("least recently used entry survived past the bound")
	}
	h, m := c.Stats()
	if h != 1 || m != 3 {
		t.Fatalf("stats = %d hits %d misses", h, m)
	}
}
