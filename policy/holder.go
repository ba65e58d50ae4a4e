package policy

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ReloadEvent describes one reload attempt, for metrics and logs.
type ReloadEvent struct {
	// Trigger is "file" (a watched file changed), or the trigger passed to
	// ReloadFrom ("signal" for SIGHUP, "api", ...). Reload uses "manual".
	Trigger string
	// OldRevision is the revision in force before the attempt; NewRevision
	// is the revision in force after it (equal when unchanged or failed).
	OldRevision, NewRevision string
	// Changed is true when a policy with a different revision was installed.
	Changed bool
	// Err is the load error of a failed attempt; the old policy stays.
	Err         error
	Diagnostics []Diagnostic
}

// HolderOptions configure a Holder.
type HolderOptions struct {
	// Logger receives reload results and every diagnostic of a failed
	// reload (default slog.Default()).
	Logger *slog.Logger
	// OnReload, when set, is called after every reload attempt (success or
	// failure), synchronously and never concurrently with itself.
	OnReload func(ReloadEvent)
	// Debounce coalesces bursts of file events (editors, ConfigMap swaps);
	// default 100ms.
	Debounce time.Duration
	// Check, when set, refuses a policy that loaded but does not fit the
	// program holding it (a rule naming a signal provider pullgate's
	// config does not have): at start, an error; on reload, the old
	// policy stays.
	Check func(*Policy) error
}

// load reads the policy and applies opts.Check.
func (o HolderOptions) load(path string) (*Policy, error) {
	p, err := Load(path)
	if err == nil && o.Check != nil {
		err = o.Check(p)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Holder holds the policy in force and replaces it atomically on reload.
// Readers call Current() per request; a reload never blocks them. An
// invalid policy on reload is logged and counted, and the old one stays.
type Holder struct {
	path string
	opts HolderOptions
	log  *slog.Logger

	cur      atomic.Pointer[Policy]
	reloads  atomic.Uint64
	failures atomic.Uint64
	reloadMu sync.Mutex // serialises load+swap so an older load never replaces a newer one

	watchMu sync.Mutex
	watcher *fsnotify.Watcher
	stop    chan struct{}
	done    chan struct{}
}

// NewHolder loads the policy at path. An invalid policy is an error (the
// server must not start with it). Call Watch to follow file changes.
func NewHolder(path string, opts HolderOptions) (*Holder, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	p, err := opts.load(path)
	if err != nil {
		return nil, err
	}
	h := &Holder{path: path, opts: opts, log: opts.Logger}
	h.cur.Store(p)
	h.log.Info("policy loaded", "file", p.File, "revision", p.Revision(), "rules", len(p.Rules))
	return h, nil
}

// Current returns the policy in force. It is never nil.
func (h *Holder) Current() *Policy { return h.cur.Load() }

// Reloads counts successful reload attempts (whether or not the revision
// changed).
func (h *Holder) Reloads() uint64 { return h.reloads.Load() }

// ReloadFailures counts reload attempts that found an invalid policy (the
// previous policy stayed in force).
func (h *Holder) ReloadFailures() uint64 { return h.failures.Load() }

// Reload re-reads the policy and its trust files now (the CLI calls it on
// SIGHUP). It returns the load error, if any; the old policy then stays.
func (h *Holder) Reload() error { return h.ReloadFrom("manual") }

// ReloadFrom is Reload with a trigger name for logs and ReloadEvent.
func (h *Holder) ReloadFrom(trigger string) error {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	old := h.cur.Load()
	ev := ReloadEvent{Trigger: trigger, OldRevision: old.Revision(), NewRevision: old.Revision()}
	p, err := h.opts.load(h.path)
	if err != nil {
		h.failures.Add(1)
		ev.Err = err
		ev.Diagnostics = DiagnosticsOf(h.path, err)
		h.log.Error("policy reload failed; keeping the previous policy",
			"file", h.path, "trigger", trigger, "revision", old.Revision(), "errors", len(ev.Diagnostics))
		for _, d := range ev.Diagnostics {
			h.log.Error("policy error", "diagnostic", d.String())
		}
	} else {
		h.reloads.Add(1)
		if p.Revision() != old.Revision() {
			h.cur.Store(p)
			ev.NewRevision, ev.Changed = p.Revision(), true
			h.log.Info("policy reloaded", "file", p.File, "trigger", trigger,
				"revision", p.Revision(), "previous", old.Revision(), "rules", len(p.Rules))
		} else {
			h.log.Debug("policy unchanged", "file", p.File, "trigger", trigger, "revision", p.Revision())
		}
	}
	if h.opts.OnReload != nil {
		h.opts.OnReload(ev)
	}
	return err
}

// Watch starts following the policy file and every trust file it
// references. It watches their directories, so editors that write a new
// file and rename it over the old one, and Kubernetes ConfigMap/Secret
// volumes that swap a "..data" symlink, are both seen. Changes are
// debounced and reloaded; the watch set is refreshed after each reload.
// It returns once the watcher runs; stop it with Close or by cancelling ctx.
func (h *Holder) Watch(ctx context.Context) error {
	h.watchMu.Lock()
	defer h.watchMu.Unlock()
	if h.watcher != nil {
		return errors.New("policy: already watching")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	st := &watchState{dirs: map[string]bool{}}
	if err := st.refresh(w, h.cur.Load()); err != nil {
		w.Close()
		return err
	}
	h.watcher, h.stop, h.done = w, make(chan struct{}), make(chan struct{})
	go h.loop(ctx, w, st, h.stop, h.done)
	return nil
}

// Close stops watching. The holder keeps serving its current policy.
func (h *Holder) Close() error {
	h.watchMu.Lock()
	w, stop, done := h.watcher, h.stop, h.done
	h.watcher = nil
	h.watchMu.Unlock()
	if w == nil {
		return nil
	}
	close(stop)
	<-done
	return w.Close()
}

type watchState struct {
	dirs  map[string]bool
	names map[string]bool // base names of watched files (and symlink targets)
}

// refresh watches the directories of every file the policy depends on,
// including the directories their symlinks resolve to.
func (st *watchState) refresh(w *fsnotify.Watcher, p *Policy) error {
	want := map[string]bool{}
	names := map[string]bool{}
	for _, f := range p.Files() {
		want[filepath.Dir(f)] = true
		names[filepath.Base(f)] = true
		if r, err := filepath.EvalSymlinks(f); err == nil && r != f {
			want[filepath.Dir(r)] = true
			names[filepath.Base(r)] = true
		}
	}
	var firstErr error
	for d := range want {
		if st.dirs[d] {
			continue
		}
		if err := w.Add(d); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		st.dirs[d] = true
	}
	for d := range st.dirs {
		if !want[d] {
			_ = w.Remove(d) // may already be gone (deleted ConfigMap revision)
			delete(st.dirs, d)
		}
	}
	st.names = names
	return firstErr
}

func (st *watchState) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	// "..data" and "..<timestamp>" are the Kubernetes atomic-writer swap.
	return st.names[base] || strings.HasPrefix(base, "..")
}

func (h *Holder) loop(ctx context.Context, w *fsnotify.Watcher, st *watchState, stop, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if st.relevant(ev) {
				timer.Reset(h.opts.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			h.log.Warn("policy watcher error", "error", err)
			// Events may have been lost: reload to be safe.
			timer.Reset(h.opts.Debounce)
		case <-timer.C:
			_ = h.ReloadFrom("file")
			if err := st.refresh(w, h.cur.Load()); err != nil {
				h.log.Warn("policy watcher: cannot watch a directory", "error", err)
			}
		}
	}
}
