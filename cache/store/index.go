package store

import (
	"container/heap"
	"encoding/hex"

	"github.com/opencontainers/go-digest"
)

// The index of stored content, in two tiers:
//
//   - the LRU list of content used, committed or looked up by this process
//     (front = most recently used);
//   - the content the initial walk found and nothing used since, in a heap
//     by modification time (oldest first). It is all older than anything in
//     the list: eviction takes from it first, oldest first, then from the
//     back of the list. Using an entry moves it to the front of the list.
//
// An entry is a node of 64 bytes keyed by the 32 bytes of its digest,
// without a per-entry digest string, list element or interface value: at a
// million blobs the index holds about 64 + ~45 (map) + 8 (heap) bytes a
// blob.

// key identifies a digest in the index: the first 32 bytes of the digest
// itself, whatever its algorithm (sha256, sha512). A digest of another
// algorithm than sha256 is kept next to its key (Store.long), and a lookup
// finds a node only when the digest it names is the node's: a digest made
// up to share a stored blob's first 32 bytes (nothing in the store hashes
// to it) finds nothing. Keys of content the store holds never collide:
// that would take two hash outputs agreeing on 256 bits. (A key derived
// from the digest's text, as before, could be matched by a sha256 blob
// whose content is that text.)
type key [32]byte

// keyOf returns the key of a valid digest, and the digest itself when it
// must be kept next to the key (not sha256); ok is false for an invalid
// digest.
func keyOf(d digest.Digest) (k key, long digest.Digest, ok bool) {
	enc := d.Encoded()
	if d.Algorithm() == digest.SHA256 {
		if len(enc) != 2*len(k) || !lowerHex(enc) {
			return k, "", false
		}
	} else {
		if d.Validate() != nil || len(enc) < 2*len(k) || !lowerHex(enc) {
			return k, "", false
		}
		long = d
	}
	_, err := hex.Decode(k[:], []byte(enc[:2*len(k)]))
	return k, long, err == nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// node is one indexed blob.
type node struct {
	// prev and next link the node into the list; both nil while the
	// node is in the walk's tier (pending) or removed.
	prev, next *node
	// size < 0 marks a node removed from the index (its heap entry, if
	// any, is dead).
	size int64
	// mtime is the modification time the walk found (Unix
	// nanoseconds): the heap's order. It never changes once the node is
	// in the heap.
	mtime int64
	k     key
}

func (n *node) inList() bool  { return n.next != nil }
func (n *node) pending() bool { return n.next == nil && n.size >= 0 }

// lruList is a ring with a sentinel: root.next is the most recently used.
type lruList struct{ root node }

func (l *lruList) init() { l.root.next, l.root.prev = &l.root, &l.root }

func (l *lruList) pushFront(n *node) {
	n.prev, n.next = &l.root, l.root.next
	l.root.next.prev = n
	l.root.next = n
}

func (l *lruList) unlink(n *node) {
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = nil, nil
}

// back is the least recently used node, nil when the list is empty.
func (l *lruList) back() *node {
	if l.root.prev == &l.root {
		return nil
	}
	return l.root.prev
}

// before is the node in front of n towards the back-to-front walk (the
// next more recently used), nil at the front.
func (l *lruList) before(n *node) *node {
	if n.prev == &l.root {
		return nil
	}
	return n.prev
}

// pendingHeap holds the walk's tier, oldest modification first. Entries
// are removed lazily: an entry whose node was used (moved to the list) or
// removed stays until it surfaces or the heap is compacted.
type pendingHeap []*node

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].mtime < h[j].mtime }
func (h pendingHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)        { *h = append(*h, x.(*node)) }
func (h *pendingHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return n
}

// lookupLocked returns the node of d.
func (s *Store) lookupLocked(d digest.Digest) (*node, key, bool) {
	k, long, ok := keyOf(d)
	if !ok {
		return nil, k, false
	}
	n, ok := s.items[k]
	if ok && s.long[k] != long {
		return nil, k, false // another digest sharing the first 32 bytes
	}
	return n, k, ok
}

// digestOf is the digest of an indexed node.
func (s *Store) digestOf(n *node) digest.Digest {
	if d, ok := s.long[n.k]; ok {
		return d
	}
	return digest.NewDigestFromBytes(digest.SHA256, n.k[:])
}

// insertLocked indexes the content with key k (not indexed yet; long is
// its digest when that is not sha256): at the front of the list, or with
// mtime != nil in the walk's tier.
func (s *Store) insertLocked(k key, long digest.Digest, size int64, mtime *int64) *node {
	n := &node{size: size, k: k}
	if long != "" {
		s.long[k] = long
	}
	s.items[k] = n
	s.total += size
	if mtime != nil {
		n.mtime = *mtime
		heap.Push(&s.pend, n)
		s.pendLive++
	} else {
		s.lru.pushFront(n)
	}
	return n
}

// useLocked makes n the most recently used.
func (s *Store) useLocked(n *node) {
	switch {
	case n.inList():
		if s.lru.root.next != n {
			s.lru.unlink(n)
			s.lru.pushFront(n)
		}
	case n.pending():
		s.pendLive--
		s.lru.pushFront(n)
		s.compactPendingLocked()
	}
}

// removeLocked drops n from the index.
func (s *Store) removeLocked(n *node) {
	if n.inList() {
		s.lru.unlink(n)
	} else if n.pending() {
		s.pendLive--
	}
	s.total -= n.size
	n.size = -1
	delete(s.items, n.k)
	delete(s.long, n.k)
	s.compactPendingLocked()
}

// compactPendingLocked drops dead heap entries once they outnumber the
// live ones, so that the heap does not keep removed nodes alive.
func (s *Store) compactPendingLocked() {
	if s.pendLive == 0 {
		s.pend = nil
		return
	}
	if len(s.pend) < 1024 || len(s.pend) < 2*s.pendLive {
		return
	}
	live := make(pendingHeap, 0, s.pendLive)
	for _, n := range s.pend {
		if n.pending() {
			live = append(live, n)
		}
	}
	s.pend = live
	heap.Init(&s.pend)
}

// victimLocked picks the next entry to evict: the oldest of the walk's
// tier, then the least recently used of the list; never one that skip
// names. nil when there is none.
func (s *Store) victimLocked(skip func(*node) bool) *node {
	var held []*node
	defer func() {
		for _, n := range held {
			heap.Push(&s.pend, n)
		}
	}()
	for len(s.pend) > 0 {
		n := s.pend[0]
		if !n.pending() {
			heap.Pop(&s.pend)
			continue
		}
		if skip(n) {
			held = append(held, heap.Pop(&s.pend).(*node))
			continue
		}
		return n
	}
	for n := s.lru.back(); n != nil; n = s.lru.before(n) {
		if !skip(n) {
			return n
		}
	}
	return nil
}
