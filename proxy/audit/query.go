package audit

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/pullgate/pullgate/policy/glob"
)

// Decision filters.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	// DecisionWouldDeny selects allowed events that a rule in audit mode
	// would have denied.
	DecisionWouldDeny = "wouldDeny"
	// DecisionWaived selects decisions served because policy exceptions
	// waived every reason of a denial (summaries count them as served, in
	// Allow, and apart, in Waived).
	DecisionWaived = "waived"
)

// Query selects events. The zero Query selects everything.
type Query struct {
	// Since and Until bound the event time (zero: unbounded). Until is
	// exclusive.
	Since, Until time.Time
	// Decision is "allow", "deny", "waived", "wouldDeny" or "" for any.
	Decision string
	// Repo is a repository glob with policy pattern syntax, matched
	// against "<upstream>/<repository>" (e.g. "docker.io/library/**").
	Repo string
	// Rule is the exact name of the deciding rule.
	Rule string
	// Kind is manifest, blob, referrers, tags or "" for any.
	Kind string
	// Limit keeps only the last Limit matching events (0: all).
	Limit int
}

// Matcher is a compiled Query.
type Matcher struct {
	q    Query
	glob *glob.Pattern
}

// Compile validates q.
func (q Query) Compile() (*Matcher, error) {
	m := &Matcher{q: q}
	var errs []error
	switch q.Decision {
	case "", DecisionAllow, DecisionDeny, DecisionWouldDeny, DecisionWaived:
	default:
		errs = append(errs, fmt.Errorf("decision %q: use allow, deny, waived or wouldDeny", q.Decision))
	}
	switch q.Kind {
	case "", "manifest", "blob", "referrers", "tags":
	default:
		errs = append(errs, fmt.Errorf("kind %q: use manifest, blob, referrers or tags", q.Kind))
	}
	if q.Repo != "" {
		g, err := glob.Compile(q.Repo)
		if err != nil {
			errs = append(errs, fmt.Errorf("repo: %w", err))
		}
		m.glob = g
	}
	if q.Limit < 0 {
		errs = append(errs, errors.New("limit must not be negative"))
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		errs = append(errs, errors.New("until must be after since"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Match reports whether e is selected (Limit is not applied).
func (m *Matcher) Match(e Event) bool {
	q := m.q
	if !q.Since.IsZero() && e.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !e.Time.Before(q.Until) {
		return false
	}
	switch q.Decision {
	case DecisionWouldDeny:
		if !e.WouldDeny {
			return false
		}
	case "":
	default:
		if e.Decision != q.Decision {
			return false
		}
	}
	if q.Rule != "" && e.Rule != q.Rule {
		return false
	}
	if q.Kind != "" && e.Kind != q.Kind {
		return false
	}
	if m.glob != nil && !m.glob.Match(e.Repository) {
		return false
	}
	return true
}

// Limit is the query's limit.
func (m *Matcher) Limit() int { return m.q.Limit }

// Scan reads the audit log at path (current and rotated files, oldest
// first) and calls fn for every event q selects, in order; with a Limit
// only the last Limit of them. It returns how many lines were malformed.
func Scan(path string, q Query, fn func(Event) error) (malformed int, err error) {
	m, err := q.Compile()
	if err != nil {
		return 0, err
	}
	r, err := OpenReader(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var last *lastN
	if q.Limit > 0 {
		last = newLastN(q.Limit)
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r.Malformed(), err
		}
		if !m.Match(e) {
			continue
		}
		if last != nil {
			last.add(e)
			continue
		}
		if err := fn(e); err != nil {
			return r.Malformed(), err
		}
	}
	if last != nil {
		for _, e := range last.events() {
			if err := fn(e); err != nil {
				return r.Malformed(), err
			}
		}
	}
	return r.Malformed(), nil
}

// lastN keeps the last n events added.
type lastN struct {
	buf  []Event
	next int
	full bool
}

func newLastN(n int) *lastN { return &lastN{buf: make([]Event, n)} }

func (l *lastN) add(e Event) {
	l.buf[l.next] = e
	l.next = (l.next + 1) % len(l.buf)
	if l.next == 0 {
		l.full = true
	}
}

func (l *lastN) events() []Event {
	if !l.full {
		return append([]Event(nil), l.buf[:l.next]...)
	}
	return append(append([]Event(nil), l.buf[l.next:]...), l.buf[:l.next]...)
}

// Count is how many events share a key, split by decision. WouldDeny
// and Waived events are also counted in Allow (they were served).
type Count struct {
	Key       string `json:"key"`
	Total     int    `json:"total"`
	Allow     int    `json:"allow"`
	Deny      int    `json:"deny"`
	WouldDeny int    `json:"wouldDeny,omitempty"`
	Waived    int    `json:"waived,omitempty"`
}

// Summary counts events by decision, rule, repository and reason. Reasons
// are counted for denials, would-be denials and waived denials only (an
// allow's reason just names its rule). Lists are sorted by Total, then Key.
type Summary struct {
	Total        int       `json:"total"`
	Allow        int       `json:"allow"`
	Deny         int       `json:"deny"`
	WouldDeny    int       `json:"wouldDeny"`
	Waived       int       `json:"waived"`
	First        time.Time `json:"first,omitzero"`
	Last         time.Time `json:"last,omitzero"`
	Rules        []Count   `json:"rules"`
	Repositories []Count   `json:"repositories"`
	Reasons      []Count   `json:"reasons"`
	Kinds        []Count   `json:"kinds"`
}

// Summarizer accumulates a Summary.
type Summarizer struct {
	s                           Summary
	rules, repos, reasons, kind map[string]*Count
}

// NewSummarizer returns an empty Summarizer.
func NewSummarizer() *Summarizer {
	return &Summarizer{rules: map[string]*Count{}, repos: map[string]*Count{}, reasons: map[string]*Count{}, kind: map[string]*Count{}}
}

func bump(m map[string]*Count, key string, e Event) {
	c := m[key]
	if c == nil {
		c = &Count{Key: key}
		m[key] = c
	}
	c.Total++
	if e.Decision == DecisionDeny {
		c.Deny++
	} else {
		c.Allow++
	}
	if e.WouldDeny {
		c.WouldDeny++
	}
	if e.Decision == DecisionWaived {
		c.Waived++
	}
}

// Add counts one event.
func (z *Summarizer) Add(e Event) {
	s := &z.s
	s.Total++
	if e.Decision == DecisionDeny {
		s.Deny++
	} else {
		s.Allow++
	}
	if e.WouldDeny {
		s.WouldDeny++
	}
	if e.Decision == DecisionWaived {
		s.Waived++
	}
	if s.First.IsZero() || e.Time.Before(s.First) {
		s.First = e.Time
	}
	if e.Time.After(s.Last) {
		s.Last = e.Time
	}
	rule := e.Rule
	if rule == "" {
		rule = "(no rule)"
	}
	bump(z.rules, rule, e)
	bump(z.repos, e.Repository, e)
	bump(z.kind, e.Kind, e)
	if e.Decision == DecisionDeny || e.WouldDeny || e.Decision == DecisionWaived {
		seen := map[string]bool{}
		for _, r := range e.Reasons {
			r = strings.TrimSpace(r)
			if r == "" || seen[r] {
				continue
			}
			seen[r] = true
			bump(z.reasons, r, e)
		}
	}
}

// Summary returns the counts so far.
func (z *Summarizer) Summary() Summary {
	s := z.s
	s.Rules, s.Repositories, s.Reasons, s.Kinds = sorted(z.rules), sorted(z.repos), sorted(z.reasons), sorted(z.kind)
	return s
}

func sorted(m map[string]*Count) []Count {
	out := make([]Count, 0, len(m))
	for _, c := range m {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total != out[j].Total {
			return out[i].Total > out[j].Total
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Summarize counts the events q selects in the audit log at path.
func Summarize(path string, q Query) (Summary, int, error) {
	z := NewSummarizer()
	malformed, err := Scan(path, q, func(e Event) error { z.Add(e); return nil })
	return z.Summary(), malformed, err
}
