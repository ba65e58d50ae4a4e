package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The current log file removed under a running writer (an operator's rm,
// a log shipper): the next rotations fail at renaming path, but each one
// first shifts the rotated files up and removes the oldest, so the whole
// rotated history is gone after MaxFiles writes, and every new event goes
// to the unlinked file.
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
