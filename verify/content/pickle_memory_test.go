package content_test

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify/content"
)

// pickleMemoryBound is what the pickle walker may hold on hostile input
// (docs/model-gate.md states it): string arena, tuple slots, memo, dict
// records and storage references at their caps, with room for one slice
// doubling.
const pickleMemoryBound = 56 << 20

// feedPickle streams head, then reps copies of body, then tail through a
// pickle inspector in 1 MiB writes, and returns the inspector's first
// error and the largest live heap growth seen (after a forced GC every
// 16 MiB and at the end, the inspector still alive).
func feedPickle(t *testing.T, head, body, tail []byte, reps int) (error, int64) {
	t.Helper()
	opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	size := int64(len(head)) + int64(len(body))*int64(reps) + int64(len(tail))
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapAlloc)
	var peak int64
	sample := func() {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		peak = max(peak, int64(ms.HeapAlloc)-base)
	}
	in := content.NewPickleInspector(opts, size)
	per := max(1, (1<<20)/len(body))
	chunk := bytes.Repeat(body, per)
	err := func() error {
		if _, err := in.Write(head); err != nil {
			return err
		}
		fed := 0
		for left := reps; left > 0; left -= per {
			c := chunk
			if left < per {
				c = chunk[:left*len(body)]
			}
			if _, err := in.Write(c); err != nil {
				return err
			}
			if fed += len(c); fed >= 16<<20 {
				fed = 0
				sample()
			}
		}
		if _, err := in.Write(tail); err != nil {
			return err
		}
		return in.Close()
	}()
	sample()
	runtime.KeepAlive(in)
	return err, peak
}

// A hand-made pickle can number its memo entries with gaps: each PUT
// 1023 past the last used to grow the dense memo by 1023 holes for one
// counted entry (40,000 PUTs: 41M slots, 650 MB). Entries past maxMemo,
// or far past the dense memo, are now kept apart and capped.
func TestPickleWalkerStridedMemoIsBounded(t *testing.T) {
	head := []byte{0x80, 4}
	var body []byte
	const n = 40000
	for i := range n {
		body = append(body, 'N', 'r')
		body = binary.LittleEndian.AppendUint32(body, uint32(i)*1023)
		body = append(body, '0')
	}
	err, peak := feedPickle(t, head, body, []byte{'N', '.'}, 1)
	t.Logf("live heap growth %.1f MiB, err %v", float64(peak)/(1<<20), err)
	if err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("strided memo: got %v, want a refusal for memo entries out of order", err)
	}
	if peak > pickleMemoryBound {
		t.Fatalf("strided memo: live heap grew by %d bytes (bound %d)", peak, pickleMemoryBound)
	}
}

// Strings are kept for resolution up to the arena's cap; past it they are
// unknown values, so a pickle made of 320 MB of short strings is walked in
// bounded memory (it was refused at 256 MiB after holding them all).
func TestPickleWalkerStringArenaIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 320 MB")
	}
	s := strings.Repeat("w", 200)
	body := append([]byte{0x8c, byte(len(s))}, s...)
	body = append(body, '0')
	err, peak := feedPickle(t, []byte{0x80, 4}, body, []byte{'N', '.'}, 320<<20/len(body))
	t.Logf("live heap growth %.1f MiB", float64(peak)/(1<<20))
	if err != nil {
		t.Fatalf("pickle of short strings refused: %v", err)
	}
	if peak > pickleMemoryBound {
		t.Fatalf("short strings: live heap grew by %d bytes (bound %d)", peak, pickleMemoryBound)
	}
}

// A storage reference memoized once and passed to BINPERSID again and
// again recorded a storage each time, without limit.
func TestPickleWalkerStorageReferencesAreCapped(t *testing.T) {
	head := []byte{0x80, 2, 'c'}
	head = append(head, "torch\nFloatStorage\n"...)
	head = append(head, 'q', 0) // BINPUT 0: the storage class
	head = append(head, '(', 0x8c, 7)
	head = append(head, "storage"...)
	head = append(head, 'h', 0, 0x8c, 1, '0', 0x8c, 3)
	head = append(head, "cpu"...)
	head = append(head, 'K', 4, 't', 'q', 1, '0') // TUPLE, BINPUT 1, POP
	body := []byte{'h', 1, 'Q', '0'}              // BINGET 1, BINPERSID, POP
	err, peak := feedPickle(t, head, body, []byte{'N', '.'}, 1<<17)
	t.Logf("live heap growth %.1f MiB, err %v", float64(peak)/(1<<20), err)
	if err == nil || !strings.Contains(err.Error(), "torch storage references") {
		t.Fatalf("2^17 storage references: got %v, want a refusal at the cap", err)
	}
	if peak > pickleMemoryBound {
		t.Fatalf("storage references: live heap grew by %d bytes (bound %d)", peak, pickleMemoryBound)
	}
}
