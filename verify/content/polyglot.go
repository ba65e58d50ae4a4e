package content

import (
	"strings"
)

// layerGuard runs beside the validator of every layer and archive member
// (autoInspector feeds it the same bytes) and checks what another loader
// would make of them.
//
// Pickle polyglots: a safetensors file's first 8 bytes are its header
// length and a GGUF file's "GGUF" is a pickle BINFLOAT, so an author picks
// opcodes that swallow the format's fixed bytes and continue inside a
// tensor name (safetensors header length 0x470480: PROTO 4, BINFLOAT over
// the length's zero bytes and `{"x`, then imports and a call spelled as
// valid UTF-8). pickle.load and torch.load (legacy path) run that; the
// format's own validator sees a valid file. The guard walks such files as a
// pickle too (speculatively: a real file fails within a few bytes, costing
// nothing) and refuses one whose walk imports anything. Memory: the
// walker's, only while the walk lasts.
type layerGuard struct {
	format string           // the format the validator reads
	pickle *PickleInspector // speculative pickle walk, nil when not (or no longer) needed
	err    error
}

// guardsPickle reports whether a format's leading bytes can start a pickle
// that continues past them (author-chosen length or count fields).
func guardsPickle(format string) bool {
	return format == FormatSafetensors || format == FormatGGUF
}

func (g *layerGuard) start(opts Options, format string, size int64) {
	g.format = format
	if guardsPickle(format) {
		g.pickle = newSpeculativePickleInspector(opts, size)
	}
}

func (g *layerGuard) Write(p []byte) error {
	if g.err != nil {
		return g.err
	}
	if g.pickle != nil {
		_, err := g.pickle.Write(p)
		if err := g.judgePickle(err); err != nil {
			return err
		}
	}
	return nil
}

func (g *layerGuard) Close() error {
	if g.err != nil {
		return g.err
	}
	if g.pickle != nil {
		if err := g.judgePickle(g.pickle.Close()); err != nil {
			return err
		}
	}
	return nil
}

// judgePickle decides the speculative walk: a walk that imported something
// (or stopped at an import outside the allowlist) is a pickle a loader
// would run, hidden in a file of another format: refused, whatever the
// pickle policy (no honest writer produces both). A walk that failed
// without importing, or finished importing nothing, is no threat.
func (g *layerGuard) judgePickle(err error) error {
	w := g.pickle.w
	imported := len(w.globals) > 0
	if err == nil && !g.pickle.finished && !imported {
		return nil // still walking
	}
	reason := ""
	if err != nil {
		f, ok := err.(*Finding)
		if ok && strings.Contains(f.Reason, "which is not in the allowlist") {
			reason = f.Reason
		}
	}
	if imported && reason == "" {
		reason = "it imports " + strings.Join(w.Globals(), ", ")
	}
	g.pickle = nil
	if reason == "" {
		return nil
	}
	g.err = newFinding(FormatPickle, 0, "bytes are both %s and a pickle (a polyglot: pickle.load or torch.load runs the pickle from byte 0): %s; no policy key admits it",
		describe(g.format), reason)
	return g.err
}
