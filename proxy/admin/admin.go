// Package admin serves pullgate's admin listener: Prometheus metrics,
// liveness and readiness probes, and a server-rendered page (/ui) of recent
// decisions, blocked pulls with their reasons and evidence, counts per rule
// and per reason, and the policy in force.
//
// The page needs no JavaScript and no build step: filters are a GET form,
// details are <details> elements and a detail page. Everything is rendered
// with html/template, so event fields (repository names, reasons, policy
// text) are escaped. The handler serves GET and HEAD only.
package admin

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
)

// Options are the admin handler's sources. Every field is optional.
type Options struct {
	// Gatherer is served on /metrics (nil: prometheus.DefaultGatherer).
	Gatherer prometheus.Gatherer
	// Ring holds the recent decisions shown on /ui (nil: the page says the
	// decision history is not enabled).
	Ring *audit.Ring
	// Policy describes the policy in force (nil: not shown).
	Policy func() PolicyInfo
	// Ready reports why the server cannot serve pulls (policy not loaded,
	// store not writable); nil means ready. /readyz answers 503 with the
	// error text when it fails.
	Ready func() error
	// Status describes, on /readyz, what the server is still doing while
	// it serves (the store index being built): appended to the answer,
	// ready or not (nil: nothing).
	Status func() string
	// Log receives rendering and metrics errors (nil: discarded).
	Log *slog.Logger
	// Version is shown in the page header.
	Version string
	// Now is the clock for "ago" times (nil: time.Now).
	Now func() time.Time
}

// PolicyInfo is what the page shows about the policy in force.
type PolicyInfo struct {
	Revision string
	File     string
	// Source is the policy file's text.
	Source []byte
	Rules  []RuleInfo
	// Note is shown next to the source, e.g. when the file on disk is not
	// the policy in force because a reload failed.
	Note string
}

// RuleInfo is one rule of the policy in force.
type RuleInfo struct {
	Name     string
	Action   string
	Mode     string
	Patterns []string
	Line     int
}

// PolicyInfoOf describes a loaded policy for the page: its revision and
// rules, and the text of its file. When the file on disk no longer loads
// into the same revision (it was edited and the reload failed or has not
// happened yet), Note says so, so the text shown is never mistaken for the
// policy in force.
func PolicyInfoOf(p *policy.Policy) PolicyInfo {
	if p == nil {
		return PolicyInfo{Note: "no policy loaded"}
	}
	pi := PolicyInfo{Revision: p.Revision(), File: p.File}
	for _, r := range p.Rules {
		mode := string(r.Mode)
		if mode == "" {
			mode = string(policy.ModeEnforce)
		}
		pi.Rules = append(pi.Rules, RuleInfo{Name: r.Name, Action: string(r.Action), Mode: mode,
			Patterns: append([]string(nil), r.Patterns...), Line: r.Line})
	}
	if p.File == "" {
		return pi
	}
	src, err := os.ReadFile(p.File)
	if err != nil {
		pi.Note = fmt.Sprintf("cannot read %s: %v", p.File, err)
		return pi
	}
	pi.Source = src
	cur, err := policy.Load(p.File)
	switch {
	case err != nil:
		pi.Note = "the file on disk does not load (the policy in force is the last valid one): " + firstLine(err.Error())
	case cur.Revision() != p.Revision():
		pi.Note = fmt.Sprintf("the file on disk is revision %s; the policy in force is still %s (reload pending)", short(cur.Revision(), 12), short(p.Revision(), 12))
	}
	return pi
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

//go:embed templates/*.html static/style.css
var assets embed.FS

var funcs = template.FuncMap{
	"short": short,
	"join":  strings.Join,
	"ms": func(v float64) string {
		if v < 10 {
			return strconv.FormatFloat(v, 'f', 2, 64)
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	},
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"pct": func(n, total int) int {
		if total == 0 {
			return 0
		}
		return n * 100 / total
	},
}

func short(s string, n int) string {
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+1+n {
		return s[:i+1+n] + "…"
	}
	if len(s) > n+8 {
		return s[:n] + "…"
	}
	return s
}

var pages = template.Must(template.New("").Funcs(funcs).ParseFS(assets, "templates/*.html"))

type handler struct {
	o   Options
	css []byte
}

// New returns the admin handler: /metrics, /healthz, /readyz, /ui,
// /ui/decision?id=N and /ui/style.css; / redirects to /ui.
func New(o Options) http.Handler {
	if o.Gatherer == nil {
		o.Gatherer = prometheus.DefaultGatherer
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	css, err := assets.ReadFile("static/style.css")
	if err != nil {
		panic(err) // embedded at build time
	}
	h := &handler{o: o, css: css}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(o.Log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui", http.StatusFound)
	})
	mux.HandleFunc("GET /ui", h.index)
	mux.HandleFunc("GET /ui/{$}", h.index)
	mux.HandleFunc("GET /ui/decision", h.decision)
	mux.HandleFunc("GET /ui/style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(h.css)
	})
	return mux
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	status := ""
	if h.o.Status != nil {
		if st := h.o.Status(); st != "" {
			status = st + "\n"
		}
	}
	if h.o.Ready != nil {
		if err := h.o.Ready(); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n"+status)
			return
		}
	}
	plain(w, http.StatusOK, "ok\n"+status)
}

// render executes a page into a buffer first, so a template error is a
// clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		h.o.Log.Error("admin: render failed", "page", name, "err", err)
		plain(w, http.StatusInternalServerError, "internal error rendering the page\n")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// pageBase is what every page shows in its header.
type pageBase struct {
	Title    string
	Version  string
	Revision string
	Now      time.Time
}

func (h *handler) pageBase(title string, pi *PolicyInfo) pageBase {
	b := pageBase{Title: title, Version: h.o.Version, Now: h.o.Now().UTC()}
	if pi != nil {
		b.Revision = pi.Revision
	}
	return b
}

func (h *handler) policyInfo() *PolicyInfo {
	if h.o.Policy == nil {
		return nil
	}
	pi := h.o.Policy()
	return &pi
}

// row is one decision in the table.
type row struct {
	audit.Entry
	Ago string
}

type indexData struct {
	Page     pageBase
	Enabled  bool
	Filter   filterForm
	Err      string
	Rows     []row
	Held     int
	Capacity int
	Seen     uint64
	Summary  audit.Summary
	Policy   *PolicyInfo
	Rules    []string
}

type filterForm struct {
	Decision, Repo, Rule, Kind string
	Limit                      int
	Active                     bool
}

const defaultLimit = 100

func parseFilter(r *http.Request) (filterForm, audit.Query, error) {
	v := r.URL.Query()
	f := filterForm{
		Decision: v.Get("decision"), Repo: strings.TrimSpace(v.Get("repo")),
		Rule: strings.TrimSpace(v.Get("rule")), Kind: v.Get("kind"), Limit: defaultLimit,
	}
	var errs []error
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			errs = append(errs, fmt.Errorf("limit %q: use a number from 1 to 10000", s))
		} else {
			f.Limit = n
		}
	}
	f.Active = f.Decision != "" || f.Repo != "" || f.Rule != "" || f.Kind != ""
	q := audit.Query{Decision: f.Decision, Repo: f.Repo, Rule: f.Rule, Kind: f.Kind, Limit: f.Limit}
	if _, err := q.Compile(); err != nil {
		errs = append(errs, err)
	}
	return f, q, errors.Join(errs...)
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	pi := h.policyInfo()
	d := indexData{Page: h.pageBase("Decisions", pi), Policy: pi, Enabled: h.o.Ring != nil}
	if pi != nil {
		for _, ru := range pi.Rules {
			d.Rules = append(d.Rules, ru.Name)
		}
	}
	f, q, err := parseFilter(r)
	d.Filter = f
	status := http.StatusOK
	if err != nil {
		d.Err = err.Error()
		status = http.StatusBadRequest
	}
	if h.o.Ring != nil && err == nil {
		entries, _ := h.o.Ring.Recent(q)
		now := h.o.Now()
		for _, e := range entries {
			d.Rows = append(d.Rows, row{Entry: e, Ago: ago(now.Sub(e.Time))})
		}
		d.Summary, _ = h.o.Ring.Summary(q)
		d.Held, d.Capacity, d.Seen = h.o.Ring.Len(), h.o.Ring.Cap(), h.o.Ring.Total()
	}
	h.render(w, status, "index.html", d)
}

type decisionData struct {
	Page  pageBase
	Entry audit.Entry
	Ago   string
	Found bool
	ID    string
}

func (h *handler) decision(w http.ResponseWriter, r *http.Request) {
	pi := h.policyInfo()
	d := decisionData{Page: h.pageBase("Decision", pi), ID: r.URL.Query().Get("id")}
	id, err := strconv.ParseUint(d.ID, 10, 64)
	if err != nil || id == 0 {
		d.Page.Title = "Bad request"
		h.render(w, http.StatusBadRequest, "decision.html", d)
		return
	}
	if h.o.Ring != nil {
		d.Entry, d.Found = h.o.Ring.Get(id)
	}
	if !d.Found {
		d.Page.Title = "Not found"
		h.render(w, http.StatusNotFound, "decision.html", d)
		return
	}
	d.Page.Title = fmt.Sprintf("Decision %d", id)
	d.Ago = ago(h.o.Now().Sub(d.Entry.Time))
	h.render(w, http.StatusOK, "decision.html", d)
}

func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
