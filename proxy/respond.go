package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/clientauth"
	"github.com/pullgate/pullgate/proxy/engine"
	"github.com/pullgate/pullgate/proxy/ocierr"
)

// deny answers 403 DENIED with the verdict's reasons.
func (s *Server) deny(q *request, v engine.Verdict, ref string) {
	e := ocierr.New(http.StatusForbidden, ocierr.Denied, "%s", v.Message(q.rt.Repository(), ref))
	e.Detail = map[string]any{
		"rule": v.Rule, "repository": q.rt.Repository(), "reference": ref,
		"reasons": v.Reasons, "policyRevision": v.Revision,
	}
	if writeWithReason(q.w, q.r, e) {
		return
	}
	ocierr.Write(q.w, q.r, e)
}

// writeWithReason answers an HTTP/1.x denial with the reason in the status
// line ("403 Forbidden (pullgate: rule X: ...)"), because some clients
// (containerd) print only the status line, and HEAD responses have no body.
// It reports false when the connection cannot be taken over.
func writeWithReason(w http.ResponseWriter, r *http.Request, e *ocierr.Error) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	body, _ := json.Marshal(struct {
		Errors []*ocierr.Error `json:"errors"`
	}{[]*ocierr.Error{e}})
	body = append(body, '\n')
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	defer conn.Close()
	if sr, ok := w.(interface{ SetStatus(int) }); ok {
		sr.SetStatus(e.Status)
	}
	phrase := reasonPhrase(http.StatusText(e.Status) + " (" + e.Message + ")")
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", e.Status, phrase)
	fmt.Fprintf(buf, "Content-Type: application/json; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	fmt.Fprintf(buf, "Docker-Distribution-API-Version: registry/2.0\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	if r.Method != http.MethodHead {
		buf.Write(body)
	}
	_ = buf.Flush()
	return true
}

// reasonPhrase keeps a reason phrase to one line of printable ASCII.
func reasonPhrase(s string) string {
	const max = 400
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= max {
			b.WriteString("...")
			break
		}
		if c < 0x20 || c > 0x7e {
			c = ' '
		}
		b.WriteRune(c)
	}
	return b.String()
}

// record writes the audit event of a decision.
func (s *Server) record(q *request, kind, ref string, dgst digest.Digest, v engine.Verdict, cached bool) {
	if s.sameDeniedPull(q, kind, ref, v) {
		return
	}
	ev := audit.Event{
		Time: time.Now().UTC(), Client: clientAddr(q.r), Method: q.r.Method,
		Upstream: q.rt.Upstream, Repository: q.rt.Repository(), Reference: ref, Kind: kind,
		Rule: v.Rule, Decision: v.Result(), Mode: v.Mode, WouldDeny: v.WouldDeny, Waivers: v.Waivers, WaivedUntil: v.WaivedUntil,
		Reasons: v.Reasons, Checks: v.Checks, Signals: v.Signals, Revision: v.Revision, Cached: cached,
		LatencyMS: float64(time.Since(q.start).Microseconds()) / 1000,
	}
	if dgst != "" {
		ev.Digest = dgst.String()
	}
	if u := userOf(q.r); u != "" {
		ev.User = u
	}
	if err := s.audit.Write(ev); err != nil {
		s.metrics.auditErrors.Inc()
		if !s.auditFailing.Swap(true) {
			s.log.Error("audit: write failed; decisions are still enforced and logged here, and events are kept for the file until it can be written", "err", err)
		}
	} else if s.auditFailing.Swap(false) {
		s.log.Info("audit: the audit log is written again", "dropped", s.audit.Dropped())
	}
	lvl := s.log.Info
	if !v.Allowed || v.WouldDeny {
		lvl = s.log.Warn
	}
	lvl("decision", "kind", kind, "repository", ev.Repository, "reference", ref, "digest", ev.Digest,
		"rule", v.Rule, "decision", ev.Decision, "wouldDeny", v.WouldDeny, "reasons", v.Reasons, "cached", cached)
}

func clientAddr(r *http.Request) string { return r.RemoteAddr }

// headDenialWindow is how long a HEAD's manifest denial pairs with the
// client's GET of the same reference.
const headDenialWindow = 10 * time.Second

// sameDeniedPull reports a denied manifest GET that repeats the denied
// HEAD the same client (address and user; dockerd sends the GET on a new
// connection) sent for the same reference just before. dockerd resolves
// with HEAD and, refused, asks again with GET; the pull is one decision in
// the audit log, /ui and pullgate_decisions_total. (containerd stops at the
// HEAD: its denial is recorded as the HEAD.) The GET is still refused. A
// second client on the same address denied the same reference by the same
// rule within the window is folded into the first one's decision.
func (s *Server) sameDeniedPull(q *request, kind, ref string, v engine.Verdict) bool {
	if kind != "manifest" || v.Allowed {
		return false
	}
	key := clientauth.ClientIP(q.r) + "|" + userOf(q.r) + "|" + q.rt.Repository() + "|" + ref + "|" + v.Rule
	switch q.r.Method {
	case http.MethodHead:
		s.headDenials.Add(key, true, headDenialWindow)
	case http.MethodGet:
		if _, ok := s.headDenials.Get(key); ok {
			s.headDenials.Remove(key)
			return true
		}
	}
	return false
}

// userOf returns the authenticated client identity, when client auth set one.
func userOf(r *http.Request) string { return clientauth.User(r.Context()) }

func writeSpoolFull(w http.ResponseWriter, r *http.Request, e *engine.SpoolFullError) {
	w.Header().Set("Retry-After", "60")
	ocierr.Write(w, r, ocierr.New(http.StatusServiceUnavailable, ocierr.Unavailable, "%s", e.Error()))
}
