package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One failed rotation (here: the oldest name cannot be removed for a
// while) is meant to keep the event in the current file and retry at the
// next limit; but the rotator reports the failure as the Write's error,
// json.Encoder keeps that error and refuses every later Encode, so no
// event is written again until a restart, although rotation works again.
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
