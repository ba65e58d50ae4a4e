package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// ParseSince reads a --since value: a duration back from now ("90s", "1h",
// "36h", "7d", "2w") or a time ("2026-11-25T10:00:00Z", "2026-11-25 10:00",
// "2026-11-25", taken as UTC when no zone is given).
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if n, unit := strings.TrimRight(s, "dw"), s[len(strings.TrimRight(s, "dw")):]; (unit == "d" || unit == "w") && n != "" {
		v, err := strconv.ParseFloat(n, 64)
		if err == nil && v >= 0 {
			mult := 24 * time.Hour
			if unit == "w" {
				mult *= 7
			}
			return now.Add(-time.Duration(v * float64(mult))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("since %q: use a positive duration", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("since %q: use a duration (30m, 1h, 7d) or a time (2026-11-25T10:00:00Z, 2026-11-25)", s)
}

// clean makes an untrusted string safe for one table cell on a terminal:
// control characters (tabs, newlines, escape sequences) are written as
// \xNN or \uNNNN.
func clean(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func decisionLabel(e Event) string {
	if e.Decision == DecisionAllow && e.WouldDeny {
		return "allow (would deny)"
	}
	return e.Decision
}

// TableWriter writes events as an aligned table, one row per event.
type TableWriter struct {
	tw     *tabwriter.Writer
	header bool
}

// NewTableWriter writes to w; call Flush at the end.
func NewTableWriter(w io.Writer) *TableWriter {
	return &TableWriter{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

// Write adds one event.
func (t *TableWriter) Write(e Event) error {
	if !t.header {
		t.header = true
		if _, err := fmt.Fprintln(t.tw, "TIME\tDECISION\tKIND\tREPOSITORY\tREFERENCE\tDIGEST\tRULE\tREASONS"); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(t.tw, strings.Join(columns(e), "\t"))
	return err
}

// columns are an event's cells: time, decision, kind, repository,
// reference, digest, rule, reasons.
func columns(e Event) []string {
	rule := e.Rule
	if rule == "" {
		rule = "-"
	}
	dg := shortDigest(e.Digest)
	if dg == "" {
		dg = "-"
	}
	return []string{e.Time.UTC().Format("2006-01-02T15:04:05Z"), clean(decisionLabel(e)), clean(e.Kind), clean(e.Repository),
		clean(e.Reference), clean(dg), clean(rule), clean(strings.Join(e.Reasons, "; "))}
}

// Flush writes the table; with no event it writes nothing.
func (t *TableWriter) Flush() error { return t.tw.Flush() }

// WriteLines writes one event per line for reading as they come (the
// table's columns, without aligning them across lines).
func WriteLines(w io.Writer) func(Event) error {
	return func(e Event) error {
		c := columns(e)
		_, err := fmt.Fprintln(w, strings.Join(append(append(c[:3:3], c[3]+"@"+c[4]), c[5:]...), "  "))
		return err
	}
}

// WriteJSONLines writes one event per line, as in the audit log.
func WriteJSONLines(w io.Writer) func(Event) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return func(e Event) error { return enc.Encode(e) }
}

// WriteSummaryTable writes s as aligned tables; top bounds the rows of the
// repository and reason tables (0: all).
func WriteSummaryTable(w io.Writer, s Summary, top int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	if s.Total == 0 {
		p("no decisions\n")
		return tw.Flush()
	}
	var of []string
	if s.WouldDeny > 0 {
		of = append(of, fmt.Sprintf("%d would be denied by audit-mode rules", s.WouldDeny))
	}
	if s.Waived > 0 {
		of = append(of, fmt.Sprintf("%d denied but waived by policy exceptions", s.Waived))
	}
	would := ""
	if len(of) > 0 {
		would = " (of them " + strings.Join(of, ", ") + ")"
	}
	p("%d decisions from %s to %s: %d allowed%s, %d denied\n",
		s.Total, s.First.UTC().Format(time.RFC3339), s.Last.UTC().Format(time.RFC3339), s.Allow, would, s.Deny)
	section := func(title string, rows []Count, denialsOnly bool) {
		if denialsOnly {
			p("\n%s\tDENY\tWOULD DENY\tWAIVED\n", title)
		} else {
			p("\n%s\tTOTAL\tALLOW\tDENY\tWOULD DENY\tWAIVED\n", title)
		}
		n := len(rows)
		if top > 0 && n > top {
			n = top
		}
		for _, c := range rows[:n] {
			if denialsOnly {
				p("%s\t%d\t%d\t%d\n", clean(c.Key), c.Deny, c.WouldDeny, c.Waived)
			} else {
				p("%s\t%d\t%d\t%d\t%d\t%d\n", clean(c.Key), c.Total, c.Allow, c.Deny, c.WouldDeny, c.Waived)
			}
		}
		if n < len(rows) {
			p("… %d more\n", len(rows)-n)
		}
	}
	section("RULE", s.Rules, false)
	section("KIND", s.Kinds, false)
	section("REPOSITORY", s.Repositories, false)
	if len(s.Reasons) > 0 {
		section("REASON", s.Reasons, true)
	}
	return tw.Flush()
}
