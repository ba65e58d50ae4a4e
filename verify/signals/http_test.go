package signals

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPProvider(t *testing.T) {
	tp := newTestProvider(t)
	s := newService(t, Options{}, tp.provider())
	ctx := context.Background()

	t.Run("clean", func(t *testing.T) {
		r := s.Ask(ctx, "sandbox", request(digestA))
		if r.Err != nil || r.Answer.Verdict != "clean" || r.Answer.Status != StatusDone || r.Cached || r.Answer.Provider.DBVersion != "db-1" {
			t.Fatalf("%+v %+v", r, r.Err)
		}
	})
	t.Run("findings", func(t *testing.T) {
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
			w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, "db-1",
				`"verdict":"malicious","findings":[{"id":"EGRESS","severity":"critical","message":"connects to 203.0.113.9"}],"facts":{"egressAttempts":3}`)))
		})
		r := s.Ask(ctx, "sandbox", request(digestB))
		if r.Err != nil || len(r.Answer.Findings) != 1 || r.Answer.Findings[0].Severity != "critical" || r.Answer.Facts["egressAttempts"] != float64(3) {
			t.Fatalf("%+v %+v", r.Answer, r.Err)
		}
	})
	cold := func(i byte) Request { return request("sha256:" + strings.Repeat(string('0'+i), 64)) }
	t.Run("pending", func(t *testing.T) {
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
			w.Write([]byte(answerJSON(req.Subject.Digest, StatusPending, "db-1", "")))
		})
		n := tp.calls.Load()
		for range 2 {
			r := s.Ask(ctx, "sandbox", cold(1))
			if r.Err != nil || r.Answer.Status != StatusPending || r.Cached {
				t.Fatalf("%+v %+v", r, r.Err)
			}
		}
		if got := tp.calls.Load() - n; got != 2 {
			t.Fatalf("pending answer reused: %d calls for 2 asks", got)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
			w.Write([]byte(`{"apiVersion":"` + APIVersion + `","status":"done",`))
		})
		wantKind(t, s.Ask(ctx, "sandbox", cold(2)), KindMalformed, "invalid JSON")
	})
	t.Run("another digest", func(t *testing.T) {
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
			w.Write([]byte(answerJSON(digestA, StatusDone, "db-1", `"verdict":"clean"`)))
		})
		wantKind(t, s.Ask(ctx, "sandbox", cold(3)), KindSubject, digestA)
	})
	t.Run("too large", func(t *testing.T) {
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
			w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, "db-1", `"verdict":"`+strings.Repeat("x", MaxAnswerSize)+`"`)))
		})
		wantKind(t, s.Ask(ctx, "sandbox", cold(4)), KindMalformed, "larger than")
	})
	t.Run("5xx retried", func(t *testing.T) {
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
			http.Error(w, "scanner database loading", http.StatusServiceUnavailable)
		})
		p := tp.provider()
		p.Retries = 2
		s2 := newService(t, Options{}, p)
		n := tp.calls.Load()
		r := s2.Ask(ctx, "sandbox", cold(5))
		wantKind(t, r, KindStatus, "HTTP 503: scanner database loading")
		if got := tp.calls.Load() - n; got != 3 {
			t.Fatalf("%d calls, want 1 + 2 retries", got)
		}
		// A 4xx other than 429 is not retried; the error is not cached.
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) { http.Error(w, "no", http.StatusForbidden) })
		n = tp.calls.Load()
		wantKind(t, s2.Ask(ctx, "sandbox", cold(5)), KindStatus, "HTTP 403")
		if got := tp.calls.Load() - n; got != 1 {
			t.Fatalf("403: %d calls, want 1", got)
		}
		// Recovery on the retry.
		var tries atomic.Int64
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
			if tries.Add(1) == 1 {
				http.Error(w, "busy", http.StatusTooManyRequests)
				return
			}
			w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, "db-1", "")))
		})
		if r := s2.Ask(ctx, "sandbox", cold(6)); r.Err != nil || tries.Load() != 2 {
			t.Fatalf("429 then 200: %v after %d tries", r.Err, tries.Load())
		}
	})
	t.Run("redirect not followed", func(t *testing.T) {
		tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
			if r.URL.Path == "/elsewhere" {
				t.Errorf("redirect followed")
				w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, "db-1", "")))
				return
			}
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		})
		wantKind(t, s.Ask(ctx, "sandbox", cold(7)), KindStatus, "HTTP 307 (redirect to /elsewhere not followed)")
	})
	tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
		w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, "db-1", "")))
	})
	t.Run("token re-read", func(t *testing.T) {
		tp.setToken(t, "token-2")
		if r := s.Ask(ctx, "sandbox", cold(8)); r.Err != nil {
			t.Fatalf("rotated token not used: %v", r.Err)
		}
		tp.token.Store("token-3") // the server rotated, the file did not
		wantKind(t, s.Ask(ctx, "sandbox", cold(9)), KindStatus, "HTTP 401")
		tp.setToken(t, "token-3")
	})
	t.Run("no client certificate", func(t *testing.T) {
		p := tp.provider()
		p.ClientCert, p.ClientKey = "", ""
		n := tp.calls.Load()
		wantKind(t, newService(t, Options{}, p).Ask(ctx, "sandbox", cold(1)), KindNetwork, "")
		if tp.calls.Load() != n {
			t.Fatal("request served without a client certificate")
		}
	})
	t.Run("other CA", func(t *testing.T) {
		p := tp.provider()
		p.CA = tp.pki.otherCA
		wantKind(t, newService(t, Options{}, p).Ask(ctx, "sandbox", cold(1)), KindNetwork, "certificate")
	})
	t.Run("no proxy from the environment", func(t *testing.T) {
		// Go never proxies loopback addresses, so a test server cannot
		// show it: check the transport itself.
		if tr := s.provs["sandbox"].client.Transport.(*http.Transport); tr.Proxy != nil {
			t.Fatal("the transport takes a proxy from the environment")
		}
	})
}

func TestHTTPTimeout(t *testing.T) {
	tp := newTestProvider(t)
	tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
		<-r.Context().Done() // hangs until pullgate gives up
	})
	p := tp.provider()
	p.Timeout = 300 * time.Millisecond
	p.Retries = 3
	s := newService(t, Options{}, p)
	start := time.Now()
	r := s.Ask(context.Background(), "sandbox", request(digestA))
	wantKind(t, r, KindTimeout, "within the timeout")
	if el := time.Since(start); el > 10*p.Timeout {
		t.Fatalf("timed out after %v with a timeout of %v", el, p.Timeout)
	}
	if tp.calls.Load() != 1 {
		t.Fatalf("%d calls: a timeout is not retried", tp.calls.Load())
	}
}
