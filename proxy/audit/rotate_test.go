package audit

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The current log file removed under a running writer (an operator's rm,
// a log shipper): the next rotation starts a new current file. (It used to
// shift the rotated files up and remove the oldest before failing to rename
// the missing file, so the whole history went in MaxFiles writes, and every
// new event went to the unlinked file.)
func TestRotatorCurrentFileRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		l.Write(ev(i, "deny", "b", "up/x", strings.Repeat("h", 1500)))
	}
	before, _ := filepath.Glob(path + ".*")
	if len(before) != 3 {
		t.Fatalf("setup: %d rotated files", len(before))
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for i := 12; i < 20; i++ {
		l.Write(ev(i, "deny", "b", "up/x", strings.Repeat("h", 1500)))
	}
	l.Close()
	var refs []string
	for _, e := range readAll(t, path, Query{}) {
		refs = append(refs, e.Reference)
	}
	t.Logf("events on disk after the removal and 8 more writes: %v", refs)
	after, _ := filepath.Glob(path + ".*")
	_, cerr := os.Stat(path)
	if len(after) < len(before) || cerr != nil {
		t.Fatalf("rotated files %v -> %v, current file: %v: the history was deleted and new events were written to an unlinked file", before, after, cerr)
	}
}

// One failed rotation (here: the oldest name cannot be removed for a
// while) keeps the event in the current file and retries at the next
// limit; the events after it are written. (The rotator reports the failure
// as the Write's error, and a json.Encoder on the file kept that error and
// refused every later event until a restart.)
func TestRotationFailureStopsTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	blocker := RotatedName(path, 3)
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		_ = l.Write(ev(i, "deny", "b", "up/x", strings.Repeat("h", 1500)))
	}
	if err := os.RemoveAll(blocker); err != nil { // the fault clears
		t.Fatal(err)
	}
	for i := 4; i < 10; i++ {
		if err := l.Write(ev(i, "deny", "b", "up/x", strings.Repeat("h", 1500))); err != nil {
			t.Logf("write v%d: %v", i, err)
		}
	}
	l.Close()
	var refs []string
	for _, e := range readAll(t, path, Query{}) {
		refs = append(refs, e.Reference)
	}
	if len(refs) == 0 || refs[len(refs)-1] != "v9" {
		t.Fatalf("events on disk: %v; v4..v9 were written after the fault cleared", refs)
	}
}

// A write of the waiting events that the disk cut exactly at the end of a
// line, then the file removed: the events still waiting are all written
// to the new file. (The rotator took any partial write for a line cut in
// the middle, and dropped the first waiting event, whole, on reopening.)
func TestRotatorPartialWriteAtLineEndThenRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r, err := openRotator(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// room is how many more bytes the "disk" takes (-1: unlimited).
	room := 0
	smallDisk(t, &room)

	lines := []string{"{\"event\":\"a\"}\n", "{\"event\":\"b\"}\n", "{\"event\":\"c\"}\n", "{\"event\":\"d\"}\n"}
	for _, l := range lines[:2] { // the disk is full: both wait
		if _, err := r.Write([]byte(l)); err == nil {
			t.Fatalf("write %q to a full disk succeeded", l)
		}
	}
	room = len(lines[0]) // room for exactly the first waiting line
	if _, err := r.Write([]byte(lines[2])); err == nil {
		t.Fatal("write to a full disk succeeded")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	room = -1
	if _, err := r.Write([]byte(lines[3])); err != nil {
		t.Fatalf("write once space is free: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(lines[1:], ""); string(got) != want {
		t.Errorf("new file holds %q, want %q (dropped: %d)", got, want, r.Dropped())
	}
}

// Events past maxPending are dropped oldest first, but never the tail of
// a line the full disk cut: the file holds whole JSON lines once space
// is free, the cut event among them.
func TestRotatorDropsWholeEventsAfterACutLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r, err := openRotator(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	room := 5 // the disk takes the first 5 bytes of the first event
	smallDisk(t, &room)

	pad := strings.Repeat("x", 1000)
	event := func(i int) []byte { return []byte(fmt.Sprintf("{\"event\":%d,\"pad\":%q}\n", i, pad)) }
	n := maxPending/len(event(0)) + 100
	for i := range n {
		if _, err := r.Write(event(i)); err == nil {
			t.Fatalf("event %d: write to a full disk succeeded", i)
		}
	}
	if r.Dropped() == 0 {
		t.Fatalf("%d events of %d bytes kept past maxPending: nothing dropped", n, len(event(0)))
	}
	room = -1
	if _, err := r.Write(event(n)); err != nil {
		t.Fatalf("write once space is free: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	for i, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %d of %d is not one JSON event (%v): %.80q", i+1, len(lines), err, l)
		}
	}
	if !strings.HasPrefix(lines[0], `{"event":0,`) {
		t.Errorf("the cut event is not the first line: %.40q", lines[0])
	}
	if want := uint64(n+1) - uint64(len(lines)); r.Dropped() != want {
		t.Errorf("dropped %d, want %d (%d events, %d lines)", r.Dropped(), want, n+1, len(lines))
	}
}

// smallDisk makes the rotator's file writes take *room more bytes (-1:
// unlimited), then fail with ENOSPC after writing what fits.
func smallDisk(t *testing.T, room *int) {
	fileWrite = func(f *os.File, p []byte) (int, error) {
		if *room < 0 || len(p) <= *room {
			if *room >= 0 {
				*room -= len(p)
			}
			return f.Write(p)
		}
		n, _ := f.Write(p[:*room])
		*room = 0
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	t.Cleanup(func() { fileWrite = (*os.File).Write })
}
