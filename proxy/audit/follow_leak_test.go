package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// Follow with FromStart+Rotated (Tail) whose context ends before its first
// loop: the files of its first scan must be closed.
func TestFollowCancelledLeaksNoFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		l.Write(ev(i, "deny", "b", "up/x", strings.Repeat("h", 1500)))
	}
	l.Close()
	before := openFDs(t)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		// Started runs after the first scan; the caller gives up there
		// (or the context was already done).
		o := FollowOptions{FromStart: true, Rotated: true, Interval: time.Millisecond, Started: cancel}
		if err := Follow(ctx, path, o, func(Event) {}); err != nil {
			t.Fatal(err)
		}
	}
	if after := openFDs(t); after > before {
		t.Fatalf("%d file descriptors leaked by 20 cancelled Follows", after-before)
	}
}
