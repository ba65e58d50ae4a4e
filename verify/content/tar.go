package content

import (
	"bytes"
	"strconv"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// TarInspector validates an uncompressed tar layer (ModelPack *.tar, ORAS
// directories, KitOps *.tar) as it streams: ustar/GNU/PAX headers with
// checksums, clean relative paths, no duplicates, no links, devices or
// setuid bits, and every regular file's content run through the same
// sniffing validators as a layer (so a pickle or a bad safetensors inside a
// tar is refused exactly as it would be on its own). The verdict is final at
// Close (HeaderDone stays false until then), but judged entries are
// released before that (Releasable).
type TarInspector struct {
	opts     Options
	size     int64
	seen     int64
	err      error
	hdr      []byte // partial 512-byte block
	left     int64  // member content bytes still to read
	pad      int64  // padding bytes after the member
	member   Inspector
	name     string
	memberAt int64
	longName string // GNU 'L' or PAX path for the next header
	paxSize  int64  // PAX size for the next header, -1 if none
	meta     []byte // content of a PAX / GNU long-name record being read
	metaKind byte
	names    map[string]bool
	folded   map[string]string // foldName(name) -> name
	zeros    int               // consecutive zero blocks
	ended    bool
	done     bool
	count    int
	refs     []Reference // load-time references of the member configs
	nemo     bool        // a root model_config.yaml was seen (a NeMo archive)
	dataAt   []int64     // member data offsets libhdf5 probes (memberDataAt)

	// judged is the end of the last entry judged whole (a member whose
	// inspector closed, a directory); released the last Releasable;
	// frozen once a member declared load-time references (judged at
	// Close by the caller: nothing more is released before that).
	judged, released int64
	frozen           bool
}

// Releasable is how many first bytes were judged: every entry up to the
// end of the last one judged whole (its header and, for a file, its
// content once the member's inspector closed), and, while a member
// streams, its header and the part of its content its own inspector
// releases (ReleasableOf: all of raw data such as a SavedModel's
// variables shard, a safetensors file's after its header, none of a
// config before it was parsed). A metadata record (PAX, GNU long name)
// counts with the entry it names. A prefix of a tar is an archive of the
// entries it holds whole plus one cut short, so every released byte lies
// before anything not yet judged; the held-back tail and the digest
// still guard the end. The first release waits until tarFirstRelease
// bytes are judged (a small archive refused for any member gets a clean
// 403, not a response cut short), and release stops for good at the
// start of a member that declared load-time references (a
// content.references refusal comes at Close). It never decreases.
func (t *TarInspector) Releasable() int64 {
	if t.err != nil || t.frozen || t.done {
		return t.released
	}
	r := t.judged
	if t.member != nil {
		if m := ReleasableOf(t.member); m > 0 {
			// A member's validator may still refuse at its Close (an
			// end record or trailing data after its last byte): for a
			// whole blob the proxy holds back its last Holdback bytes,
			// where those records lie; a member ends mid-blob, so its
			// last memberHoldback bytes wait for its Close here.
			r = max(r, t.memberAt+min(m, t.seen-t.memberAt-memberHoldback))
		}
	}
	if t.released == 0 && r < tarFirstRelease {
		r = 0
	}
	t.released = max(t.released, r)
	return t.released
}

// memberHoldback is how much of a streaming member's end is released
// only once the member was judged whole: as proxy/engine.Holdback for a
// blob, enough to keep a zip end record (22 bytes, before a comment of up
// to 65,535) incomplete, so a released prefix does not open as the zip a
// member's end-record check refuses.
const memberHoldback = 64 << 10

// tarFirstRelease is how much of a tar is judged before its first bytes
// are released (Releasable), as onnxFirstRelease is for ONNX.
var tarFirstRelease int64 = 4 << 20

// memberDataAt reports whether a file member's data starts at off (an HDF5
// member there is inspected as a member: polyglot.go).
func (t *TarInspector) memberDataAt(off int64) bool {
	for _, d := range t.dataAt {
		if d == off {
			return true
		}
	}
	return false
}

// References lists the load-time references of the configs inside the
// archive (each named by its member path), once the archive passed.
func (t *TarInspector) References() []Reference {
	if !t.done {
		return nil
	}
	return t.refs
}

// NewTarInspector returns a strict tar validator.
func NewTarInspector(opts Options, size int64) *TarInspector {
	return &TarInspector{opts: opts, size: size, names: map[string]bool{}, folded: map[string]string{}, paxSize: -1}
}

func (t *TarInspector) Format() string { return FormatTar }

// HeaderDone is true only after Close accepted the archive.
func (t *TarInspector) HeaderDone() bool { return t.done }

func (t *TarInspector) fail(off int64, reason string, args ...any) error {
	t.err = newFinding(FormatTar, off, reason, args...)
	return t.err
}

func (t *TarInspector) Write(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n := len(p)
	if t.size >= 0 && t.seen+int64(n) > t.size {
		return 0, t.fail(t.size, "more bytes than the declared size %d", t.size)
	}
	for len(p) > 0 {
		off := t.seen
		switch {
		case t.left > 0:
			k := int(min(t.left, int64(len(p))))
			if err := t.content(p[:k], off); err != nil {
				return 0, err
			}
			t.left -= int64(k)
			t.seen += int64(k)
			p = p[k:]
			if t.left == 0 {
				if err := t.endMember(); err != nil {
					return 0, err
				}
			}
		case t.pad > 0:
			k := int(min(t.pad, int64(len(p))))
			t.pad -= int64(k)
			t.seen += int64(k)
			p = p[k:]
		default:
			k := min(512-len(t.hdr), len(p))
			t.hdr = append(t.hdr, p[:k]...)
			t.seen += int64(k)
			p = p[k:]
			if len(t.hdr) == 512 {
				blk := t.hdr
				t.hdr = t.hdr[:0]
				if err := t.block(blk, t.seen-512); err != nil {
					return 0, err
				}
			}
		}
	}
	return n, nil
}

func (t *TarInspector) content(p []byte, off int64) error {
	if t.member != nil {
		if _, err := t.member.Write(p); err != nil {
			return t.wrap(err)
		}
		return nil
	}
	if t.metaKind != 0 {
		t.meta = append(t.meta, p...)
	}
	return nil
}

func (t *TarInspector) wrap(err error) error {
	if f, ok := err.(*Finding); ok {
		off := f.Offset
		if off >= 0 {
			off += t.memberAt
		}
		t.err = newFinding(f.Format, off, "tar member %q: %s", t.name, f.Reason)
		return t.err
	}
	t.err = err
	return err
}

func (t *TarInspector) endMember() error {
	if t.member != nil {
		err := t.member.Close()
		m := t.member
		t.member = nil
		if err != nil {
			return t.wrap(err)
		}
		if rl, ok := m.(ReferenceLister); ok {
			refs := rl.References()
			t.refs = append(t.refs, refs...)
			if len(t.refs) > maxReferences {
				return t.fail(t.memberAt, "the archive's configs declare more than %d load-time references", maxReferences)
			}
			if len(refs) > 0 {
				t.frozen = true
			}
		}
		t.judged = t.seen
		return nil
	}
	switch t.metaKind {
	case 'L':
		t.longName = strings.TrimRight(string(t.meta), "\x00")
	case 'x':
		if err := t.pax(t.meta); err != nil {
			return err
		}
	}
	t.metaKind = 0
	t.meta = nil
	return nil
}

// pax parses "len key=value\n" records; only path is honoured (size and
// link records are refused rather than half-supported).
func (t *TarInspector) pax(b []byte) error {
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return t.fail(t.seen, "malformed PAX record")
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) || b[n-1] != '\n' {
			return t.fail(t.seen, "malformed PAX record")
		}
		rec := string(b[sp+1 : n-1])
		b = b[n:]
		k, v, ok := strings.Cut(rec, "=")
		if !ok {
			return t.fail(t.seen, "malformed PAX record")
		}
		switch k {
		case "path":
			t.longName = v
		case "mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "comment", "LIBARCHIVE.creationtime":
			// metadata every reader applies to the extracted file
			// (Python's tarfile, GNU tar and Go's archive/tar write
			// these); none names, sizes or places it.
		default:
			if strings.HasPrefix(k, "LIBARCHIVE.xattr.com.apple.") || strings.HasPrefix(k, "SCHILY.xattr.com.apple.") {
				// macOS bsdtar's Finder and quarantine attributes: only
				// macOS applies them, as attributes of the file
				break
			}
			// Anything else may rename, resize or redirect the member
			// for some reader (GNU.sparse.name renames it for GNU tar
			// and Python's tarfile; GNU.sparse.* maps data; linkpath,
			// hdrcharset, SCHILY.xattr.* and LIBARCHIVE.* change what is
			// written or how the name reads): refused rather than
			// judged under a name the extractor does not use.
			return t.fail(t.seen, "PAX record %q is not accepted (only path, size, mtime, atime, ctime, uid, gid, uname, gname and comment are: a PAX key can rename or redirect a member for some readers)", k)
		case "size":
			sz, err := strconv.ParseInt(v, 10, 64)
			if err != nil || sz < 0 || sz > 1<<62 {
				return t.fail(t.seen, "malformed PAX size %q", v)
			}
			t.paxSize = sz
		}
	}
	return nil
}

func isZeroBlock(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// tarOctal parses a numeric header field: octal, or GNU base-256 (used
// for members of 8 GiB and more).
func tarOctal(b []byte) (int64, bool) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0] != 0x80 {
			return 0, false // negative or absurd
		}
		var v uint64
		for _, c := range b[1:] {
			if v > 1<<54 {
				return 0, false
			}
			v = v<<8 | uint64(c)
		}
		return int64(v), v <= 1<<62
	}
	s := strings.TrimRight(strings.TrimLeft(string(b), " "), " \x00")
	if s == "" {
		return 0, true
	}
	v, err := strconv.ParseInt(s, 8, 64)
	return v, err == nil && v >= 0
}

func (t *TarInspector) block(b []byte, off int64) error {
	if t.ended {
		if !isZeroBlock(b) {
			return t.fail(off, "non-zero data after the end-of-archive marker")
		}
		return nil
	}
	if isZeroBlock(b) {
		t.zeros++
		if t.zeros == 2 {
			t.ended = true
		}
		return nil
	}
	if t.zeros > 0 {
		return t.fail(off, "header after a zero block")
	}
	// checksum: sum of the header with the chksum field as spaces
	want, ok := tarOctal(b[148:156])
	if !ok {
		return t.fail(off, "invalid header checksum field (not a tar header)")
	}
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	if sum != want {
		return t.fail(off, "header checksum mismatch (not a tar header)")
	}
	magic := string(b[257:263])
	if magic != "ustar\x00" && magic != "ustar " {
		return t.fail(off, "unsupported tar header format (magic %q)", magic)
	}
	size, ok := tarOctal(b[124:136])
	if !ok {
		return t.fail(off, "invalid or base-256 size field")
	}
	mode, ok := tarOctal(b[100:108])
	if !ok {
		return t.fail(off, "invalid mode field")
	}
	typ := b[156]
	name := strings.TrimRight(string(b[0:100]), "\x00")
	if magic == "ustar\x00" {
		if prefix := strings.TrimRight(string(b[345:500]), "\x00"); prefix != "" {
			name = prefix + "/" + name
		}
	}
	if t.longName != "" {
		name = t.longName
		t.longName = ""
	}
	if t.paxSize >= 0 {
		if typ == 'x' || typ == 'L' {
			return t.fail(off, "PAX size applied to a metadata record")
		}
		size = t.paxSize
		t.paxSize = -1
	}
	if t.size >= 0 && off+512+size > t.size {
		return t.fail(off, "entry %q (%d bytes) extends beyond the blob size %d", name, size, t.size)
	}
	t.left = size
	t.pad = (512 - size%512) % 512
	switch typ {
	case 'x', 'L':
		if size > 1<<20 {
			return t.fail(off, "%c record of %d bytes exceeds 1 MiB", typ, size)
		}
		t.metaKind = typ
		if size == 0 {
			return t.endMember()
		}
		return nil
	case 'g':
		return t.fail(off, "global PAX headers are not accepted")
	case '1', '2':
		return t.fail(off, "entry %q is a link; links are not accepted in model layers", name)
	case '3', '4', '6':
		return t.fail(off, "entry %q is a device or FIFO", name)
	case '0', 0, '5', '7':
	default:
		return t.fail(off, "entry %q has unsupported type %q", name, typ)
	}
	if mode&0o6000 != 0 {
		return t.fail(off, "entry %q has setuid/setgid bits", name)
	}
	// tar -C dir . and Python's tar.add(dir, arcname=".") (NeMo's
	// SaveRestoreConnector) write the root as "./" and every path under
	// "./": the root entry is skipped, the prefix dropped.
	if typ == '5' && (name == "./" || name == ".") {
		if size != 0 {
			return t.fail(off, "directory %q has a size", name)
		}
		t.judged = off + 512
		return nil
	}
	name = strings.TrimPrefix(name, "./")
	if err := checkArchivePath(name); err != "" {
		return t.fail(off, "entry %q %s", name, err)
	}
	clean := strings.TrimSuffix(name, "/")
	if t.names[clean] {
		return t.fail(off, "duplicate entry name %q", clean)
	}
	t.count++
	if t.count > defInt(t.opts.Zip.MaxEntries, 65536) {
		return t.fail(off, "more than %d entries", defInt(t.opts.Zip.MaxEntries, 65536))
	}
	if other, dup := t.folded[foldName(clean)]; dup {
		return t.fail(off, "entry names %q and %q differ only in letter case or Unicode normalisation; extracted on a case-insensitive filesystem (macOS, Windows) one overwrites the other, so the file a loader reads may not be the one checked", other, clean)
	}
	t.folded[foldName(clean)] = clean
	t.names[clean] = true
	t.name = clean
	if strings.EqualFold(clean, nemoConfigName) && typ != '5' {
		t.nemo = true
	}
	t.memberAt = off + 512
	if typ == '5' {
		if size != 0 {
			return t.fail(off, "directory %q has a size", name)
		}
		t.judged = off + 512
		return nil
	}
	if t.opts.DenyCodeLayers {
		if ext := codeFileExt(clean); ext != "" {
			return t.fail(off, "entry %q is code (%s) and is denied (denyCodeLayers)", clean, ext)
		}
	}
	in, err := NewInspector(t.memberOpts(), "", clean, size)
	if err != nil {
		return t.wrap(err)
	}
	t.member = in
	if hdf5Probed(t.memberAt) {
		t.dataAt = append(t.dataAt, t.memberAt)
	}
	if size == 0 {
		return t.endMember()
	}
	return nil
}

// memberOpts are the options for files inside the tar: media type rules do
// not apply to members (the layer's type was already checked).
func (t *TarInspector) memberOpts() Options {
	o := t.opts
	o.MediaTypes = nil
	o.archiveDepth++
	return o
}

// foldName is the key under which a case-insensitive filesystem that
// ignores Unicode normalisation (macOS APFS, Windows NTFS) stores a name:
// NFC, then case folded (upper, then lower case).
func foldName(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return strings.ToLower(strings.ToUpper(norm.NFC.String(s)))
		}
	}
	return asciiLower(s)
}

// checkArchivePath returns why an archive path is unsafe, or "".
func checkArchivePath(name string) string {
	switch {
	case name == "":
		return "has an empty name"
	case strings.ContainsRune(name, '\\'):
		return "contains a backslash"
	case name[0] == '/' || len(name) >= 2 && name[1] == ':':
		return "has an absolute path"
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] == 0x7f {
			return "contains a control character"
		}
	}
	for _, part := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		switch part {
		case "..":
			return "escapes the archive root (..)"
		case "", ".":
			return "is not a clean relative path"
		}
	}
	return ""
}

// Close checks the archive ended with the end-of-archive marker.
func (t *TarInspector) Close() error {
	if t.err != nil {
		return t.err
	}
	if t.size >= 0 && t.seen != t.size {
		return t.fail(t.seen, "truncated: %d of %d bytes", t.seen, t.size)
	}
	if t.ended && len(t.hdr) > 0 {
		if !isZeroBlock(t.hdr) {
			return t.fail(t.seen-int64(len(t.hdr)), "non-zero data after the end-of-archive marker")
		}
		t.hdr = t.hdr[:0]
	}
	if t.left > 0 || t.pad > 0 || len(t.hdr) > 0 {
		return t.fail(t.seen, "truncated tar: the stream ends inside an entry")
	}
	if !t.ended {
		return t.fail(t.seen, "truncated tar: no end-of-archive marker")
	}
	t.done = true
	return nil
}
