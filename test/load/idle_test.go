package load

import (
	"strings"
	"testing"
	"time"
)

// TestIdleCheck pins the idle tolerances: the upstream keep-alive pool
// (up to 64 connections, two goroutines each) is allowed, anything else
// beyond a small constant is a leak.
func TestIdleCheck(t *testing.T) {
	before := Sample{Goroutines: 20, FDs: 16, UpstreamConns: 3}
	for _, c := range []struct {
		name  string
		after Sample
		want  string // "" = idle
	}{
		{"same", before, ""},
		{"pool grew", Sample{Goroutines: 20 + 2*61, FDs: 13 + 64, UpstreamConns: 64}, ""},
		{"slack", Sample{Goroutines: 20 + goroutineSlack, FDs: 16 + fdSlack, UpstreamConns: 3}, ""},
		{"client left", Sample{Goroutines: 22, FDs: 17, ClientConns: 1, UpstreamConns: 3}, "registry API connections"},
		{"pool too big", Sample{Goroutines: 20 + 2*62, FDs: 13 + 65, UpstreamConns: 65}, "idle pool"},
		{"fd leak", Sample{Goroutines: 20, FDs: 16 + fdSlack + 1, UpstreamConns: 3}, "file descriptors"},
		{"goroutine leak", Sample{Goroutines: 20 + goroutineSlack + 1, FDs: 16, UpstreamConns: 3}, "goroutines"},
		{"goroutines beyond the pool", Sample{Goroutines: 20 + 2*10 + goroutineSlack + 1, FDs: 13 + 13, UpstreamConns: 13}, "goroutines"},
	} {
		err := idleCheck(&before, c.after)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error about %s", c.name, err, c.want)
		}
	}
}

// TestTrend: a steady series has no slope, a growing one its rate.
func TestTrend(t *testing.T) {
	r := &Result{}
	for i := range 60 {
		r.Series = append(r.Series, Sample{At: time.Duration(i) * time.Minute, RSS: int64(100+i) << 20, Goroutines: 50, FDs: 30})
	}
	tr, ok := r.Trend()
	if !ok {
		t.Fatal("no trend")
	}
	if d := tr.RSSMiBPerHour - 60; d > 0.01 || d < -0.01 {
		t.Errorf("RSS slope %.2f MiB/h, want 60", tr.RSSMiBPerHour)
	}
	if tr.GoroutinesPerHour != 0 || tr.FDsPerHour != 0 {
		t.Errorf("flat series have slopes %.2f, %.2f", tr.GoroutinesPerHour, tr.FDsPerHour)
	}
	if tr.Last.RSS <= tr.First.RSS {
		t.Errorf("thirds: %d then %d", tr.First.RSS, tr.Last.RSS)
	}
}
