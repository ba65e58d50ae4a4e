package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"90m":                       now.Add(-90 * time.Minute),
		"1h":                        now.Add(-time.Hour),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"1.5d":                      now.Add(-36 * time.Hour),
		"2w":                        now.Add(-14 * 24 * time.Hour),
		"2026-11-24":                time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		"2026-11-24 10:30":          time.Date(2026, 11, 24, 10, 30, 0, 0, time.UTC),
		"2026-11-24T10:30:00Z":      time.Date(2026, 11, 24, 10, 30, 0, 0, time.UTC),
		"2026-11-24T10:30:00+02:00": time.Date(2026, 11, 24, 8, 30, 0, 0, time.UTC),
	} {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1h", "yesterday", "d", "1x", "-2d"} {
		if _, err := ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

func TestTableIsAlignedAndSafe(t *testing.T) {
	var buf bytes.Buffer
	tw := NewTableWriter(&buf)
	es := corpus()
	es[1].Reasons = []string{"evil\x1b[31m\ttab\nnewline"}
	for _, e := range es {
		if err := tw.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	tw.Flush()
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != len(es)+1 {
		t.Fatalf("%d lines for %d events:\n%s", len(lines), len(es), buf.String())
	}
	if strings.ContainsAny(buf.String(), "\x1b\t") {
		t.Fatal("control characters reach the terminal")
	}
	if !strings.Contains(buf.String(), `evil\x1b[31m\ttab\nnewline`) {
		t.Fatalf("escaped reason missing:\n%s", buf.String())
	}
	// Columns line up: REPOSITORY starts at the same offset on every line.
	col := strings.Index(lines[0], "REPOSITORY")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Fatalf("misaligned row %q (column at %d)", l, col)
		}
	}
	if !strings.Contains(lines[6], "allow (would deny)") || !strings.Contains(lines[2], "sha256:000000000000 ") || strings.Contains(buf.String(), corpus()[1].Digest) {
		t.Fatalf("rows:\n%s", buf.String())
	}
}

func TestSummaryTableAndJSONLines(t *testing.T) {
	z := NewSummarizer()
	for _, e := range corpus() {
		z.Add(e)
	}
	var buf bytes.Buffer
	if err := WriteSummaryTable(&buf, z.Summary(), 2); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"7 decisions from 2026-11-25T10:00:00Z to 2026-11-25T10:06:00Z: 3 allowed (of them 1 would be denied by audit-mode rules), 4 denied",
		"RULE", "\nREASON ", "rule blocked: action deny", "… 3 more", "docker.io/library/evil"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	WriteSummaryTable(&buf, Summary{}, 0)
	if buf.String() != "no decisions\n" {
		t.Fatalf("%q", buf.String())
	}
	buf.Reset()
	w := WriteJSONLines(&buf)
	for _, e := range corpus()[:2] {
		w(e)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var e Event
	if len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &e) != nil || e.Rule != "blocked" {
		t.Fatalf("%q", buf.String())
	}
}
