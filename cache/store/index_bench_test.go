package store

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
)

// BenchmarkIndexBytesPerBlob reports the heap the index of a million
// blobs found by the walk at start takes, per blob (live, after a GC).
func BenchmarkIndexBytesPerBlob(b *testing.B) {
	const n = 1 << 20
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := &Store{items: map[key]*node{}, long: map[key]digest.Digest{}}
		s.lru.init()
		for j := 0; j < n; j++ {
			var k key
			binary.LittleEndian.PutUint64(k[:], uint64(j)*0x9e3779b97f4a7c15)
			binary.LittleEndian.PutUint64(k[8:], uint64(j))
			mtime := int64(j)
			s.insertLocked(k, "", 512, &mtime)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/blob")
		runtime.KeepAlive(s)
	}
}
