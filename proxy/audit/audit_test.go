package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func ev(i int, decision, rule, repo string, reasons ...string) Event {
	return Event{
		Time: t0.Add(time.Duration(i) * time.Minute), Client: "10.0.0.1:1234", Method: "GET",
		Upstream: strings.SplitN(repo, "/", 2)[0], Repository: repo, Reference: fmt.Sprintf("v%d", i),
		Digest: fmt.Sprintf("sha256:%064x", i), Kind: "manifest", Rule: rule, Decision: decision,
		Reasons: reasons, LatencyMS: 1.5,
	}
}

func readAll(t *testing.T, path string, q Query) []Event {
	t.Helper()
	var got []Event
	bad, err := Scan(path, q, func(e Event) error { got = append(got, e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Fatalf("%d malformed lines", bad)
	}
	return got
}

func refs(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Reference)
	}
	return out
}

func TestRotationKeepsMaxFilesAndReaderSeesAllInOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "audit.jsonl") // parent is created
	const maxSize = 4 << 10
	l, err := OpenWith(Options{Path: path, MaxSize: maxSize, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	var hooked int
	l.OnEvent = func(Event) { hooked++ }
	// Each event is ~400 bytes: 10 per file, 4 files kept (current + 3).
	reason := strings.Repeat("x", 200)
	const n = 100
	for i := 0; i < n; i++ {
		if err := l.Write(ev(i, "deny", "blocked", "up/blocked/a", reason)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if hooked != n {
		t.Fatalf("OnEvent saw %d events, want %d", hooked, n)
	}
	matches, _ := filepath.Glob(path + "*")
	slices.Sort(matches)
	want := []string{path, path + ".1", path + ".2", path + ".3"}
	if !slices.Equal(matches, want) {
		t.Fatalf("files %v, want %v", matches, want)
	}
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxSize || st.Size() == 0 {
			t.Fatalf("%s: %d bytes, want 1..%d", m, st.Size(), maxSize)
		}
		// Every file holds whole lines.
		b, _ := os.ReadFile(m)
		if !strings.HasSuffix(string(b), "\n") {
			t.Fatalf("%s does not end with a newline", m)
		}
	}
	got := readAll(t, path, Query{})
	if len(got) == 0 || len(got) >= n {
		t.Fatalf("read %d events; rotation should have dropped the oldest of %d", len(got), n)
	}
	// The newest events survive, contiguous and in order.
	first := n - len(got)
	for i, e := range got {
		if want := fmt.Sprintf("v%d", first+i); e.Reference != want {
			t.Fatalf("event %d is %s, want %s (order %v)", i, e.Reference, want, refs(got))
		}
	}
	if got[len(got)-1].Reference != fmt.Sprintf("v%d", n-1) {
		t.Fatal("last event missing")
	}

	// Reopening appends to the current file and continues rotating.
	l, err = OpenWith(Options{Path: path, MaxSize: maxSize, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := n; i < n+30; i++ {
		if err := l.Write(ev(i, "allow", "open", "up/app")); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	got = readAll(t, path, Query{})
	if got[len(got)-1].Reference != fmt.Sprintf("v%d", n+29) {
		t.Fatalf("last event %s", got[len(got)-1].Reference)
	}
	for i := 1; i < len(got); i++ {
		if !got[i].Time.After(got[i-1].Time) {
			t.Fatalf("events out of order at %d: %v", i, refs(got))
		}
	}
	if _, err := os.Stat(path + ".4"); !os.IsNotExist(err) {
		t.Fatalf("a fourth rotated file exists: %v", err)
	}
}

func TestNoRotationWithoutMaxSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		l.Write(ev(i, "allow", "open", "up/app", strings.Repeat("y", 200)))
	}
	l.Close()
	if m, _ := filepath.Glob(path + ".*"); len(m) != 0 {
		t.Fatalf("rotated files without maxSize: %v", m)
	}
	if got := readAll(t, path, Query{}); len(got) != 50 {
		t.Fatalf("%d events", len(got))
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{Path: "-", MaxSize: 1 << 20},
		{Path: "stdout", MaxFiles: 2},
		{Path: "a.jsonl", MaxSize: 100},
		{Path: "a.jsonl", MaxSize: -1},
		{Path: "a.jsonl", MaxSize: 1 << 20, MaxFiles: -1},
	} {
		if _, err := OpenWith(o); err == nil {
			t.Errorf("OpenWith(%+v) accepted", o)
		}
	}
}

func TestStdout(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	l, err := OpenWith(Options{Path: "stdout"})
	os.Stdout = old
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(ev(1, "deny", "blocked", "up/blocked/x", "rule blocked: action deny")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil { // must not close os.Stdout
		t.Fatal(err)
	}
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatal(err)
	}
	if e.Repository != "up/blocked/x" || e.Reasons[0] != "rule blocked: action deny" {
		t.Fatalf("%+v", e)
	}
	if _, err := OpenReader("-"); err == nil {
		t.Fatal("reading stdout accepted")
	}
}

func TestReaderSkipsMalformedAndTornLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	line := func(e Event) string { b, _ := json.Marshal(e); return string(b) + "\n" }
	os.WriteFile(path+".1", []byte(line(ev(1, "allow", "open", "up/a"))+"{not json\n\n"+line(ev(2, "deny", "blocked", "up/b"))), 0o644)
	torn := line(ev(4, "deny", "blocked", "up/b"))
	os.WriteFile(path, []byte(line(ev(3, "allow", "open", "up/a"))+torn[:len(torn)/2]), 0o644)
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []Event
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if !slices.Equal(refs(got), []string{"v1", "v2", "v3"}) {
		t.Fatalf("got %v", refs(got))
	}
	if r.Malformed() != 1 || r.LastMalformed() == nil || !strings.Contains(r.LastMalformed().Error(), "audit.jsonl.1:2") {
		t.Fatalf("malformed %d %v", r.Malformed(), r.LastMalformed())
	}
	if _, err := OpenReader(filepath.Join(dir, "missing.jsonl")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing log: %v", err)
	}
	// Only rotated files left (the current one not yet recreated): still read.
	os.Remove(path)
	var only []Event
	bad, err := Scan(path, Query{}, func(e Event) error { only = append(only, e); return nil })
	if err != nil || bad != 1 || !slices.Equal(refs(only), []string{"v1", "v2"}) {
		t.Fatalf("rotated only: %v, %d malformed, %v", refs(only), bad, err)
	}
}

func writeLog(t *testing.T, events ...Event) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := l.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return path
}

func corpus() []Event {
	aud := ev(5, "allow", "models", "hf.local/models/llama", "rule models: no signature by release")
	aud.WouldDeny, aud.Mode = true, "audit"
	blob := ev(6, "deny", "blocked", "docker.io/library/evil", "rule blocked: action deny")
	blob.Kind = "blob"
	return []Event{
		ev(0, "allow", "open", "docker.io/library/nginx", "rule open: allowed"),
		ev(1, "deny", "blocked", "docker.io/library/evil", "rule blocked: action deny"),
		ev(2, "deny", "apps", "ghcr.io/acme/app", "rule apps: no signature by release", "rule apps: attestation missing"),
		ev(3, "allow", "apps", "ghcr.io/acme/app", "rule apps: allowed"),
		ev(4, "deny", "", "quay.io/other/x", "no policy rule matches quay.io/other/x"),
		aud,
		blob,
	}
}

func TestQueryFilters(t *testing.T) {
	path := writeLog(t, corpus()...)
	cases := []struct {
		name string
		q    Query
		want []string
	}{
		{"all", Query{}, []string{"v0", "v1", "v2", "v3", "v4", "v5", "v6"}},
		{"deny", Query{Decision: "deny"}, []string{"v1", "v2", "v4", "v6"}},
		{"allow", Query{Decision: "allow"}, []string{"v0", "v3", "v5"}},
		{"wouldDeny", Query{Decision: "wouldDeny"}, []string{"v5"}},
		{"repo glob", Query{Repo: "docker.io/**"}, []string{"v0", "v1", "v6"}},
		{"repo star", Query{Repo: "*/acme/*"}, []string{"v2", "v3"}},
		{"repo no match across segments", Query{Repo: "docker.io/*"}, nil},
		{"rule", Query{Rule: "apps"}, []string{"v2", "v3"}},
		{"rule and decision", Query{Rule: "apps", Decision: "deny"}, []string{"v2"}},
		{"kind", Query{Kind: "blob"}, []string{"v6"}},
		{"since", Query{Since: t0.Add(4 * time.Minute)}, []string{"v4", "v5", "v6"}},
		{"until", Query{Until: t0.Add(2 * time.Minute)}, []string{"v0", "v1"}},
		{"limit keeps the last", Query{Decision: "deny", Limit: 2}, []string{"v4", "v6"}},
		{"limit above count", Query{Rule: "apps", Limit: 10}, []string{"v2", "v3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := refs(readAll(t, path, c.q)); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
	for _, q := range []Query{{Decision: "maybe"}, {Repo: "a//b"}, {Kind: "x"}, {Limit: -1}, {Since: t0, Until: t0}} {
		if _, err := q.Compile(); err == nil {
			t.Errorf("%+v compiled", q)
		}
		if _, err := Scan(path, q, func(Event) error { return nil }); err == nil {
			t.Errorf("Scan %+v accepted", q)
		}
	}
}

func TestSummary(t *testing.T) {
	path := writeLog(t, corpus()...)
	s, bad, err := Summarize(path, Query{})
	if err != nil || bad != 0 {
		t.Fatal(err, bad)
	}
	if s.Total != 7 || s.Allow != 3 || s.Deny != 4 || s.WouldDeny != 1 {
		t.Fatalf("totals %+v", s)
	}
	if !s.First.Equal(t0) || !s.Last.Equal(t0.Add(6*time.Minute)) {
		t.Fatalf("span %v..%v", s.First, s.Last)
	}
	wantRules := []Count{
		{Key: "apps", Total: 2, Allow: 1, Deny: 1},
		{Key: "blocked", Total: 2, Deny: 2},
		{Key: "(no rule)", Total: 1, Deny: 1},
		{Key: "models", Total: 1, Allow: 1, WouldDeny: 1},
		{Key: "open", Total: 1, Allow: 1},
	}
	if !slices.Equal(s.Rules, wantRules) {
		t.Fatalf("rules\n%+v\nwant\n%+v", s.Rules, wantRules)
	}
	wantReasons := []Count{
		{Key: "rule blocked: action deny", Total: 2, Deny: 2},
		{Key: "no policy rule matches quay.io/other/x", Total: 1, Deny: 1},
		{Key: "rule apps: attestation missing", Total: 1, Deny: 1},
		{Key: "rule apps: no signature by release", Total: 1, Deny: 1},
		{Key: "rule models: no signature by release", Total: 1, Allow: 1, WouldDeny: 1},
	}
	if !slices.Equal(s.Reasons, wantReasons) {
		t.Fatalf("reasons\n%+v\nwant\n%+v", s.Reasons, wantReasons)
	}
	if s.Repositories[0] != (Count{Key: "docker.io/library/evil", Total: 2, Deny: 2}) || len(s.Repositories) != 5 {
		t.Fatalf("repositories %+v", s.Repositories)
	}
	if !slices.Equal(s.Kinds, []Count{{Key: "manifest", Total: 6, Allow: 3, Deny: 3, WouldDeny: 1}, {Key: "blob", Total: 1, Deny: 1}}) {
		t.Fatalf("kinds %+v", s.Kinds)
	}
	// A filtered summary counts only what the query selects.
	s, _, _ = Summarize(path, Query{Repo: "ghcr.io/**"})
	if s.Total != 2 || len(s.Rules) != 1 || s.Rules[0].Key != "apps" {
		t.Fatalf("filtered %+v", s)
	}
}

func TestRing(t *testing.T) {
	r := NewRing(4)
	for i, e := range corpus() {
		if id := r.Add(e); id != uint64(i+1) {
			t.Fatalf("id %d, want %d", id, i+1)
		}
	}
	if r.Len() != 4 || r.Cap() != 4 || r.Total() != 7 {
		t.Fatalf("len %d cap %d total %d", r.Len(), r.Cap(), r.Total())
	}
	all, err := r.Recent(Query{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, e := range all {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []uint64{7, 6, 5, 4}) {
		t.Fatalf("ids %v (newest first)", ids)
	}
	deny, _ := r.Recent(Query{Decision: "deny", Limit: 1})
	if len(deny) != 1 || deny[0].ID != 7 {
		t.Fatalf("%+v", deny)
	}
	if e, ok := r.Get(5); !ok || e.Reference != "v4" {
		t.Fatalf("get 5: %v %+v", ok, e)
	}
	if _, ok := r.Get(2); ok {
		t.Fatal("evicted entry still found")
	}
	if _, ok := r.Get(99); ok {
		t.Fatal("future id found")
	}
	s, err := r.Summary(Query{Limit: 1})
	if err != nil || s.Total != 4 || s.Deny != 2 {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := r.Recent(Query{Repo: "[x"}); err == nil {
		t.Fatal("bad glob accepted")
	}
	hook := Tee(nil, func(e Event) { r.Add(e) })
	hook(ev(9, "allow", "open", "up/a"))
	if r.Total() != 8 {
		t.Fatal("Tee did not call the ring")
	}
}

func TestConcurrentWritersRotateWithoutLosingOrTearingEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(Options{Path: path, MaxSize: 8 << 10, MaxFiles: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ring := NewRing(64)
	l.OnEvent = Tee(func(e Event) { ring.Add(e) })
	const writers, each = 8, 200
	done := make(chan struct{})
	go func() { // readers of the ring while it is written
		for {
			select {
			case <-done:
				return
			default:
				ring.Recent(Query{Decision: "deny"})
				ring.Summary(Query{})
			}
		}
	}()
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func(w int) {
			for i := 0; i < each; i++ {
				e := ev(i, "deny", "blocked", fmt.Sprintf("up/w%d", w), strings.Repeat("r", 100))
				e.Reference = fmt.Sprintf("w%d-%d", w, i)
				if err := l.Write(e); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	l.Close()
	if files, _ := filepath.Glob(path + ".*"); len(files) < 10 {
		t.Fatalf("only %d rotations", len(files))
	}
	got := readAll(t, path, Query{})
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.Reference] {
			t.Fatalf("%s read twice", e.Reference)
		}
		seen[e.Reference] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("read %d distinct events, wrote %d", len(seen), writers*each)
	}
	// Each writer's events come back in the order it wrote them.
	last := map[string]int{}
	for _, e := range got {
		var w, i int
		fmt.Sscanf(e.Reference, "w%d-%d", &w, &i)
		k := fmt.Sprint(w)
		if prev, ok := last[k]; ok && i <= prev {
			t.Fatalf("writer %d: event %d after %d", w, i, prev)
		}
		last[k] = i
	}
	if ring.Total() != writers*each || ring.Len() != 64 {
		t.Fatalf("ring total %d len %d", ring.Total(), ring.Len())
	}
}

// A waived denial is served (counted in Allow) and counted apart, with the
// reasons it waived.
func TestSummaryCountsWaived(t *testing.T) {
	z := NewSummarizer()
	z.Add(Event{Time: t0, Kind: "manifest", Rule: "apps", Repository: "up/a", Decision: DecisionWaived,
		Waivers: []string{"cve-exception"}, Reasons: []string{"rule apps: condition no-critical is false"}})
	z.Add(Event{Time: t0, Kind: "manifest", Rule: "apps", Repository: "up/a", Decision: DecisionAllow, Reasons: []string{"rule apps: allowed"}})
	s := z.Summary()
	if s.Total != 2 || s.Allow != 2 || s.Waived != 1 || s.Deny != 0 {
		t.Fatalf("totals %+v", s)
	}
	if !slices.Equal(s.Rules, []Count{{Key: "apps", Total: 2, Allow: 2, Waived: 1}}) ||
		!slices.Equal(s.Reasons, []Count{{Key: "rule apps: condition no-critical is false", Total: 1, Allow: 1, Waived: 1}}) {
		t.Fatalf("rules %+v reasons %+v", s.Rules, s.Reasons)
	}
	var buf bytes.Buffer
	if err := WriteSummaryTable(&buf, s, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "2 allowed (of them 1 denied but waived by policy exceptions), 0 denied") {
		t.Fatalf("%s", buf.String())
	}
}
