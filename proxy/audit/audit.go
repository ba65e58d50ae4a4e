// Package audit writes one JSON line per decision (allow and deny) to a file
// or standard output, and reads them back for `pullgate audit`.
package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Check is one check of a decision with its result.
type Check struct {
	Name     string   `json:"name"`
	Passed   bool     `json:"passed"`
	Detail   string   `json:"detail,omitempty"`
	Evidence []string `json:"evidence,omitempty"`
}

// Event is one decision.
type Event struct {
	Time       time.Time `json:"time"`
	Client     string    `json:"client"`
	User       string    `json:"user,omitempty"`
	Method     string    `json:"method"`
	Upstream   string    `json:"upstream"`
	Repository string    `json:"repository"`
	Reference  string    `json:"reference"`
	Digest     string    `json:"digest,omitempty"`
	Kind       string    `json:"kind"` // manifest, blob, referrers, tags
	Rule       string    `json:"rule"`
	Decision   string    `json:"decision"` // allow, deny, waived
	Mode       string    `json:"mode,omitempty"`
	WouldDeny  bool      `json:"wouldDeny,omitempty"`
	// Waivers name the policy exceptions of a waived decision (Reasons
	// keep the denial's reasons they waived), WaivedUntil their earliest
	// expiry.
	Waivers     []string  `json:"waivers,omitempty"`
	WaivedUntil time.Time `json:"waivedUntil,omitzero"`
	Reasons     []string  `json:"reasons"`
	Checks      []Check   `json:"checks,omitempty"`
	// Signals are the providers' answers the decision used.
	Signals   []Signal `json:"signals,omitempty"`
	Revision  string   `json:"policyRevision,omitempty"`
	Cached    bool     `json:"cached,omitempty"`
	LatencyMS float64  `json:"latencyMs"`
}

// Signal is one provider's answer a decision used (pullgate's config,
// signals): what it said, from which version, and how it was got.
type Signal struct {
	Provider  string  `json:"provider"`
	Status    string  `json:"status"` // done, pending, error
	Verdict   string  `json:"verdict,omitempty"`
	Findings  int     `json:"findings,omitempty"`
	Version   string  `json:"version,omitempty"`
	DBVersion string  `json:"dbVersion,omitempty"`
	Signed    int     `json:"signed,omitempty"` // signed statements that verified
	Error     string  `json:"error,omitempty"`
	Cached    bool    `json:"cached,omitempty"`
	LatencyMS float64 `json:"latencyMs"`
}

// Log appends events. Safe for concurrent use.
type Log struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	// OnEvent, when set, sees every event (metrics, the admin page).
	OnEvent func(Event)
}

// Open opens path for appending ("-" or "stdout" for standard output, ""
// for no file), without rotation. OpenWith adds rotation.
func Open(path string) (*Log, error) {
	return OpenWith(Options{Path: path})
}

func newLog(w io.Writer, c io.Closer) *Log {
	return &Log{w: w, closer: c}
}

// Write records one event. An error means the event could not be written
// now; for a file it is kept (bounded, see Dropped) and written before the
// next event once the file can be written again (space freed, or the path
// created again after the file was removed).
func (l *Log) Write(e Event) error {
	if e.Reasons == nil {
		e.Reasons = []string{}
	}
	l.mu.Lock()
	var err error
	if l.w != nil {
		// Each event is encoded on its own, then written: a json.Encoder
		// on the file would keep the first write error and refuse every
		// later event, and the rotator reports a failed rotation (the
		// event still written) as one.
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err = enc.Encode(e); err == nil {
			_, err = l.w.Write(b.Bytes())
		}
	}
	hook := l.OnEvent
	l.mu.Unlock()
	if hook != nil {
		hook(e)
	}
	return err
}

// Dropped is how many events were dropped because the file could not be
// written while more than 8 MiB of events waited (see Write).
func (l *Log) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.w.(*rotator); ok {
		return r.Dropped()
	}
	return 0
}

// Close closes the file.
func (l *Log) Close() error {
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}

// Tee returns a hook that calls every non-nil fn in order (for OnEvent:
// metrics and the admin page's Ring).
func Tee(fns ...func(Event)) func(Event) {
	var hooks []func(Event)
	for _, f := range fns {
		if f != nil {
			hooks = append(hooks, f)
		}
	}
	return func(e Event) {
		for _, f := range hooks {
			f(e)
		}
	}
}
