package load

import (
	"fmt"
	"strings"
	"time"
)

// Trend is a least-squares slope of a resource over the run, per hour,
// fitted to the samples after the first tenth of the run (warm-up).
type Trend struct {
	RSSMiBPerHour, GoroutinesPerHour, FDsPerHour float64
	// First and Last are the means of the first and last thirds of the
	// fitted samples.
	First, Last Sample
	Samples     int
}

// Trend fits the series; ok is false with fewer than 6 samples.
func (r *Result) Trend() (Trend, bool) {
	s := r.Series
	s = s[len(s)/10:]
	if len(s) < 6 {
		return Trend{}, false
	}
	slope := func(f func(Sample) float64) float64 {
		var n, sx, sy, sxx, sxy float64
		for _, x := range s {
			h := x.At.Hours()
			y := f(x)
			n++
			sx += h
			sy += y
			sxx += h * h
			sxy += h * y
		}
		d := n*sxx - sx*sx
		if d == 0 {
			return 0
		}
		return (n*sxy - sx*sy) / d
	}
	mean := func(part []Sample) Sample {
		var m Sample
		for _, x := range part {
			m.RSS += x.RSS
			m.Goroutines += x.Goroutines
			m.FDs += x.FDs
			m.UpstreamConns += x.UpstreamConns
			m.ClientConns += x.ClientConns
		}
		n := len(part)
		m.RSS /= int64(n)
		m.Goroutines /= n
		m.FDs /= n
		m.UpstreamConns /= n
		m.ClientConns /= n
		return m
	}
	third := len(s) / 3
	return Trend{
		RSSMiBPerHour:     slope(func(x Sample) float64 { return float64(x.RSS) / (1 << 20) }),
		GoroutinesPerHour: slope(func(x Sample) float64 { return float64(x.Goroutines) }),
		FDsPerHour:        slope(func(x Sample) float64 { return float64(x.FDs) }),
		First:             mean(s[:third]),
		Last:              mean(s[len(s)-third:]),
		Samples:           len(s),
	}, true
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return d.Round(time.Second).String()
	}
}

// Markdown is the report of one run: a table per request kind and the
// resource samples before, during and after.
func (r *Result) Markdown() string {
	var b strings.Builder
	o := r.Options
	rate := "unpaced"
	if o.Rate > 0 {
		rate = fmt.Sprintf("paced at %.0f ops/s", o.Rate)
	}
	auth := "client auth off"
	if r.Phase == PhaseToken {
		auth = fmt.Sprintf("client auth on (htpasswd + token endpoint, %.0f%% of clients a guest limited to open/**, tokens of %s)", o.GuestShare*100, TokenTTL)
	}
	fmt.Fprintf(&b, "### Phase %s: %s\n\n", r.Phase, auth)
	fmt.Fprintf(&b, "%d clients, %s, %d operations in %s (%.0f ops/s), each client on %d of the artifacts.\n\n",
		o.Clients, rate, r.Ops, r.Elapsed.Round(100*time.Millisecond), float64(r.Ops)/r.Elapsed.Seconds(), o.WorkingSet)
	b.WriteString("| request | count | denied (expected) | unexpected | p50 | p99 |\n|---|---:|---:|---:|---:|---:|\n")
	var total, denied int64
	for _, k := range kindOrder {
		s, ok := r.Kinds[k]
		if !ok {
			continue
		}
		total += s.Count
		denied += s.Denied
		p50, p99 := ms(s.Percentile(50)), ms(s.Percentile(99))
		if k == KindChallenge {
			p50, p99 = "", "" // recorded inside the operation that met it
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s |\n", k, s.Count, s.Denied, s.Unexpected, p50, p99)
	}
	fmt.Fprintf(&b, "| **all** | %d | %d | **%d** | | |\n\n", total, denied, r.Unexpected)
	b.WriteString("| pullgate | RSS | goroutines | fds (of which client / upstream connections) |\n|---|---:|---:|---:|\n")
	row := func(name string, s Sample, rss int64) {
		fmt.Fprintf(&b, "| %s | %s | %d | %d (%d / %d) |\n", name, mib(rss), s.Goroutines, s.FDs, s.ClientConns, s.UpstreamConns)
	}
	row("before (idle, primed)", r.Before, r.Before.RSS)
	row("during (peak; RSS = VmHWM)", r.Peak, r.Peak.HWM)
	row("after (idle)", r.After, r.After.RSS)
	if r.Leak != nil {
		fmt.Fprintf(&b, "\n**Not back to idle:** %v\n", r.Leak)
	} else {
		fmt.Fprintf(&b, "\nBack to idle: no client connection left, descriptors besides connections %d → %d, goroutines %d → %d "+
			"(the upstream keep-alive pool went %d → %d connections).\n",
			r.Before.Others(), r.After.Others(), r.Before.Goroutines, r.After.Goroutines, r.Before.UpstreamConns, r.After.UpstreamConns)
	}
	if len(r.Errors) > 0 {
		b.WriteString("\nFirst unexpected outcomes:\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	if tr, ok := r.Trend(); ok && r.Elapsed >= 5*time.Minute {
		fmt.Fprintf(&b, "\nTrend over %d samples (after the first tenth): RSS %+.1f MiB/h, goroutines %+.1f/h, fds %+.1f/h; "+
			"means of the first and last thirds: RSS %s → %s, goroutines %d → %d, fds %d → %d.\n",
			tr.Samples, tr.RSSMiBPerHour, tr.GoroutinesPerHour, tr.FDsPerHour,
			mib(tr.First.RSS), mib(tr.Last.RSS), tr.First.Goroutines, tr.Last.Goroutines, tr.First.FDs, tr.Last.FDs)
		b.WriteString("\n| t | RSS | goroutines | fds | client conns | upstream conns |\n|---:|---:|---:|---:|---:|---:|\n")
		step := max(1, len(r.Series)/40)
		for i := 0; i < len(r.Series); i += step {
			s := r.Series[i]
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d |\n", s.At.Round(time.Second), mib(s.RSS), s.Goroutines, s.FDs, s.ClientConns, s.UpstreamConns)
		}
	}
	return b.String()
}
