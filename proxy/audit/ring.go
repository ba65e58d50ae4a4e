package audit

import "sync"

// Entry is an event held by a Ring, with the sequence number the ring gave
// it (stable while the event is held; the admin page links to it).
type Entry struct {
	ID uint64 `json:"id"`
	Event
}

// Ring keeps the last N events in memory for the admin page. Safe for
// concurrent use; feed it from Log.OnEvent.
type Ring struct {
	mu   sync.RWMutex
	buf  []Entry
	next int
	n    int
	seq  uint64
}

// NewRing holds the last n events (n < 1 is taken as 1).
func NewRing(n int) *Ring {
	if n < 1 {
		n = 1
	}
	return &Ring{buf: make([]Entry, n)}
}

// Add records an event and returns its ID (IDs start at 1).
func (r *Ring) Add(e Event) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	r.buf[r.next] = Entry{ID: r.seq, Event: e}
	r.next = (r.next + 1) % len(r.buf)
	if r.n < len(r.buf) {
		r.n++
	}
	return r.seq
}

// Cap is how many events the ring holds at most.
func (r *Ring) Cap() int { return len(r.buf) }

// Len is how many events the ring holds.
func (r *Ring) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// Total is how many events were ever added.
func (r *Ring) Total() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.seq
}

// each calls fn for the held entries, newest first, until fn returns false.
func (r *Ring) each(fn func(Entry) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for i := 0; i < r.n; i++ {
		idx := (r.next - 1 - i + len(r.buf)) % len(r.buf)
		if !fn(r.buf[idx]) {
			return
		}
	}
}

// Recent returns the held events that q selects, newest first, at most
// q.Limit of them (0: all held).
func (r *Ring) Recent(q Query) ([]Entry, error) {
	m, err := q.Compile()
	if err != nil {
		return nil, err
	}
	var out []Entry
	r.each(func(e Entry) bool {
		if m.Match(e.Event) {
			out = append(out, e)
		}
		return q.Limit <= 0 || len(out) < q.Limit
	})
	return out, nil
}

// Get returns the held entry with the given ID.
func (r *Ring) Get(id uint64) (Entry, bool) {
	var got Entry
	found := false
	r.each(func(e Entry) bool {
		if e.ID == id {
			got, found = e, true
			return false
		}
		return e.ID > id // IDs decrease from newest to oldest
	})
	return got, found
}

// Summary counts the held events that q selects (Limit is ignored).
func (r *Ring) Summary(q Query) (Summary, error) {
	q.Limit = 0
	m, err := q.Compile()
	if err != nil {
		return Summary{}, err
	}
	z := NewSummarizer()
	r.each(func(e Entry) bool {
		if m.Match(e.Event) {
			z.Add(e.Event)
		}
		return true
	})
	return z.Summary(), nil
}
