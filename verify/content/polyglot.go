package content

import (
	"bytes"
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
//
// Hidden HDF5 files: libhdf5 (H5FD_locate_signature) looks for its
// superblock signature at 0, 512, 1024, 2048, ... (every power of two from
// 512 below the file size) and opens the file found first, so an h5py
// file placed at such an offset in a safetensors tensor, a GGUF, a text or
// any other layer is what h5py and Keras open when the layer is named
// *.h5. The guard watches those offsets in every layer and member that
// does not start with the signature (an HDF5 file at 0 is the HDF5
// validator's, which refuses userblocks) and refuses the signature at any
// of them; in a tar or zip the signature is accepted where a stored
// member's data starts (the member is inspected on its own). Memory: 7
// bytes.
type layerGuard struct {
	format string           // the format the validator reads
	pickle *PickleInspector // speculative pickle walk, nil when not (or no longer) needed
	err    error

	watchHDF5 bool
	members   memberDataStarter // the archive validator, or nil
	off       int64             // bytes seen
	next      int64             // next watched offset
	carry     []byte            // the last bytes seen (at most 7)
}

// memberDataStarter is implemented by the archive validators: whether a
// member whose bytes are stored as they are (and inspected as a member)
// starts at offset off of the archive.
type memberDataStarter interface {
	memberDataAt(off int64) bool
}

// guardsPickle reports whether a format's leading bytes can start a pickle
// that continues past them (author-chosen length, count or offset fields;
// a TFLite root offset of 0x68c is SHORT_BINUNICODE over "\0\0TFL3", and
// the bytes before the root table are free). Formats whose first byte is
// no opcode (JSON, ONNX, zip) or an opcode that fails on an empty stack
// (NumPy's 0x93) need no walk; text and binary get one already
// (opaqueInspector).
func guardsPickle(format string) bool {
	return format == FormatSafetensors || format == FormatGGUF || format == FormatTFLite
}

// start arms the guard once the dispatcher has chosen the validator inner
// for a layer whose first bytes are h.
func (g *layerGuard) start(opts Options, format string, size int64, h []byte, inner Inspector) {
	g.format = format
	if guardsPickle(format) {
		g.pickle = newSpeculativePickleInspector(opts, size)
	}
	if !bytes.HasPrefix(h, magicHDF5) {
		g.watchHDF5, g.next = true, hdf5FirstProbe
		g.members, _ = inner.(memberDataStarter)
	}
}

// hdf5FirstProbe is the first offset after 0 at which libhdf5 looks for
// the superblock signature; it doubles from there.
const hdf5FirstProbe = 512

// hdf5Probed reports whether libhdf5 looks for the signature at off (> 0).
func hdf5Probed(off int64) bool {
	return off >= hdf5FirstProbe && off%hdf5FirstProbe == 0 && (off/hdf5FirstProbe)&(off/hdf5FirstProbe-1) == 0
}

// watch checks the watched offsets whose 8 bytes end within p (p follows
// the g.off bytes seen so far).
func (g *layerGuard) watch(p []byte) error {
	start, end := g.off, g.off+int64(len(p))
	g.off = end
	for g.next+int64(len(magicHDF5)) <= end {
		var sig [8]byte
		for i := range sig {
			if o := g.next + int64(i); o < start {
				sig[i] = g.carry[len(g.carry)-int(start-o)]
			} else {
				sig[i] = p[o-start]
			}
		}
		if bytes.Equal(sig[:], magicHDF5) && (g.members == nil || !g.members.memberDataAt(g.next)) {
			g.err = newFinding(FormatHDF5, g.next, "an HDF5 file is hidden after %d bytes of %s: libhdf5 looks for its signature at 512, 1024, 2048, ... "+
				"and h5py or Keras open that file when the layer is named *.h5; no policy key admits it", g.next, describe(g.format))
			return g.err
		}
		g.next *= 2
	}
	if len(p) >= 7 {
		g.carry = append(g.carry[:0], p[len(p)-7:]...)
	} else {
		g.carry = append(g.carry, p...)
		if len(g.carry) > 7 {
			g.carry = g.carry[:copy(g.carry, g.carry[len(g.carry)-7:])]
		}
	}
	return nil
}

func (g *layerGuard) Write(p []byte) error {
	if g.err != nil {
		return g.err
	}
	if g.watchHDF5 {
		if err := g.watch(p); err != nil {
			return err
		}
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
