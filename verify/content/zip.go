package content

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path"
	"strings"

	"github.com/pullgate/pullgate/verify/content/inflate"
)

const (
	sigLocal     = 0x04034b50
	sigCentral   = 0x02014b50
	sigZip64EOCD = 0x06064b50
	sigZip64Loc  = 0x07064b50
	sigEOCD      = 0x06054b50
	sigDataDescr = 0x08074b50

	zipFlagEncrypted  = 0x0001
	zipFlagDescriptor = 0x0008
	// General purpose flags accepted: 0 (encrypted) is refused with its own
	// reason; 1 and 2 are deflate level hints; 3 says a data descriptor
	// follows the data (torch.save sets it on every record); 11 is UTF-8.
	zipAllowFlags = zipFlagEncrypted | 0x0002 | 0x0004 | zipFlagDescriptor | 0x0800

	zipDescr32Len = 16 // PK\x07\x08, CRC-32, 4-byte sizes
	zipDescr64Len = 24 // PK\x07\x08, CRC-32, 8-byte sizes
)

var sigDataDescrBytes = []byte("PK\x07\x08")

type zipEntry struct {
	name         string
	offset       int64 // of the local header
	flags        uint16
	method       uint16
	crc          uint32
	csize, usize int64
	dataStart    int64
	sizesKnown   bool // sizes and CRC from the local header; false: learnt from the data and its descriptor
	z64local     bool // the local header carries a ZIP64 extended information field
	central      bool // matched by a central directory header
}

type zipState int

const (
	zsSig       zipState = iota
	zsData               // member data of known length (curLeft)
	zsStoredDD           // stored member of unknown length: data until a matching PK\x07\x08 descriptor
	zsDeflateDD          // deflated member of unknown length: until its deflate stream ends
	zsDescr              // the data descriptor after a member's data
	zsCentral
	zsZip64EOCD
	zsZip64Loc
	zsEOCD
	zsDone
)

// ZipInspector validates a zip archive as it streams: local headers and
// member data (CRC computed) as they arrive, the central directory and end
// records at the end. The verdict is final only at Close; HeaderDone stays
// false until then (for a PyTorch checkpoint, until its data.pkl passed),
// so the proxy must hold back the tail.
//
// Members whose local header leaves sizes and CRC to a data descriptor
// (general purpose flag 0x0008 with zeros in the local header, as torch.save
// writes every record) are delimited from the data itself: a stored member
// ends at the first PK\x07\x08 descriptor whose sizes equal the bytes seen
// so far (its CRC-32 must then match the data, or the archive is refused), a
// deflated member where its deflate stream ends (the descriptor, with or
// without its signature, must follow at once and agree). Either way the
// central directory must then agree exactly with what was parsed (name,
// flags, method, CRC-32, sizes, offset), so every reader that locates data
// through the central directory (torch.load's miniz, Python's zipfile)
// reads exactly the bytes that were inspected.
type ZipInspector struct {
	opts     Options
	mode     PickleMode
	size     int64
	buf      streamBuf
	seen     int64
	state    zipState
	err      error
	entries  []*zipEntry
	byName   map[string]*zipEntry
	folded   map[string]string // foldName(name) -> name (miniz looks names up case-insensitively; extraction on macOS and Windows too)
	byOffset map[int64]*zipEntry
	cur      *zipEntry
	curLeft  int64 // compressed bytes of cur still to read
	sink     *memberSink
	infl     *inflate.Inflater // deflated member: its stream, inflated as it arrives into sink
	hold     []byte            // stored member of unknown length: last bytes not yet known to be data
	join     []byte            // scratch for hold and the next bytes
	total    int64             // sum of uncompressed sizes

	cdStart, cdEnd   int64
	cdCount          int
	zip64EOCDAt      int64
	z64              bool
	z64Entries       uint64
	z64CDSize        uint64
	z64CDOffset      uint64
	retryAt          int
	pickleMembers    []string
	storageRefs      []storageRef
	torchPrefix      string
	nameBytes        int64
	hasPickleMembers bool
	closed           bool   // Close accepted the archive
	tsConstants      bool   // a <top>/constants.pkl member was seen (exact case, see isTorchScriptConstants)
	tsClass          string // first TorchScript class or builder a member pickle imported ("member imports class")
	tsClassAt        int64
	keras            kerasArchive // Keras v3 archive recognition (keras.go)
}

// NewZipInspector returns a strict zip validator. Pickle members are denied
// or walked according to opts.Pickle.Mode; every other member is inspected
// as a layer of that file name would be (NewInspector), except the raw
// tensor storages of a PyTorch checkpoint, which are only CRC-checked and
// cross-checked against data.pkl.
func NewZipInspector(opts Options, size int64) *ZipInspector {
	return &ZipInspector{opts: opts, mode: opts.pickleMode(), size: size,
		byName: map[string]*zipEntry{}, folded: map[string]string{}, byOffset: map[int64]*zipEntry{}, zip64EOCDAt: -1}
}

func (z *ZipInspector) Format() string { return FormatZip }

// HeaderDone is true after Close validated the central directory, and,
// for a PyTorch checkpoint, as soon as its data.pkl, the first member and
// its only pickle, was walked and passed: what follows are raw tensor
// storages, small records and the central directory. A later finding
// still aborts the stream with the tail held back (the end records are
// in it), so no client gets a zip it can open; but, as for every format
// released before its end, a client that unzips while it downloads,
// without the end records and before the digest is checked, could see
// member bytes pullgate had not judged yet.
func (z *ZipInspector) HeaderDone() bool {
	if z.err != nil {
		return false
	}
	return z.closed || z.torchPrefix != "" && len(z.entries) > 0 && z.entries[0].name == z.torchPrefix+"/data.pkl" &&
		len(z.pickleMembers) == 1
}

// Members lists the entry names seen so far.
func (z *ZipInspector) Members() []string {
	out := make([]string, len(z.entries))
	for i, e := range z.entries {
		out[i] = e.name
	}
	return out
}

// PickleMembers lists members that were recognised as pickles.
func (z *ZipInspector) PickleMembers() []string { return z.pickleMembers }

func (z *ZipInspector) fail(off int64, reason string, args ...any) error {
	z.err = newFinding(FormatZip, off, reason, args...)
	return z.err
}

func (z *ZipInspector) maxInflated() int64 { return def64(z.opts.Zip.MaxInflatedMember, 1<<30) }
func (z *ZipInspector) maxDeflated() int64 { return def64(z.opts.Zip.MaxDeflatedMember, 1<<62) } // no cap by default
func (z *ZipInspector) maxTotal() int64    { return def64(z.opts.Zip.MaxUncompressed, 1<<40) }

func (z *ZipInspector) Write(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	n := len(p)
	start := z.seen
	z.seen += int64(n)
	if z.size >= 0 && z.seen > z.size {
		return 0, z.fail(z.size, "more bytes than the declared size %d", z.size)
	}
	if len(z.buf.b) == 0 {
		z.buf.base = start
		z.buf.b = p
		err := z.run()
		z.buf.b = append([]byte(nil), z.buf.b...)
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	z.buf.b = append(z.buf.b, p...)
	if len(z.buf.b) < z.retryAt {
		return n, nil
	}
	if err := z.run(); err != nil {
		return 0, err
	}
	return n, nil
}

// run parses as much of z.buf as possible.
func (z *ZipInspector) run() error {
	for len(z.buf.b) > 0 {
		before, base := len(z.buf.b), z.buf.base
		if err := z.step(); err != nil {
			z.err = err
			return err
		}
		if len(z.buf.b) == before && z.buf.base == base {
			z.retryAt = 2 * before // incomplete record: wait for more bytes
			return nil
		}
		z.retryAt = 0
	}
	return nil
}

func (z *ZipInspector) step() error {
	b := z.buf.b
	off := z.buf.base
	switch z.state {
	case zsData:
		k := int(min(z.curLeft, int64(len(b))))
		if err := z.memberData(b[:k]); err != nil {
			return err
		}
		z.curLeft -= int64(k)
		z.buf.consume(k)
		if z.curLeft == 0 {
			if err := z.finishMember(); err != nil {
				return err
			}
			z.afterData()
		}
		return nil
	case zsStoredDD:
		return z.storedDD(b)
	case zsDeflateDD:
		return z.deflateDD(b)
	case zsDescr:
		return z.descriptor(b, off)
	case zsDone:
		return z.fail(off, "%s", trailingReason(z.size, off, "the end of central directory record"))
	}
	if len(b) < 4 {
		return nil
	}
	sig := binary.LittleEndian.Uint32(b)
	switch {
	case sig == sigLocal && z.cdStart == 0:
		return z.local(b, off)
	case sig == sigCentral && z.state != zsZip64EOCD && z.state != zsZip64Loc && z.state != zsEOCD:
		if z.cdStart == 0 {
			z.cdStart = off
		}
		return z.centralHeader(b, off)
	case sig == sigZip64EOCD && z.cdStart != 0 && z.zip64EOCDAt < 0:
		return z.zip64EOCD(b, off)
	case sig == sigZip64Loc && z.zip64EOCDAt >= 0:
		return z.zip64Locator(b, off)
	case sig == sigEOCD:
		return z.eocd(b, off)
	case sig == sigDataDescr:
		return z.fail(off, "unexpected data descriptor at offset %d", off)
	}
	if len(z.entries) == 0 && off == 0 {
		return z.fail(0, "not a zip local file header at offset 0")
	}
	return z.fail(off, "unexpected bytes at offset %d (signature 0x%08x) where a zip record was expected", off, sig)
}

// encryptedReason is the finding for an encrypted member. torch.load's
// reader (miniz in PyTorchStreamReader) refuses to extract a non-empty
// member only when the central directory marks it encrypted and never reads
// the local header's flags; other readers decrypt with a password. Either
// way the gate cannot see the bytes a loader may get.
func encryptedReason(name string) string {
	return fmt.Sprintf("entry %q is encrypted (general purpose flag bit 0): an encrypted member cannot be inspected. "+
		"Loaders disagree on the bit (torch.load's zip reader, miniz, honours it only in the central directory and ignores it in the local header), "+
		"and no content option admits encrypted members: only a rule without a content: section serves this blob", name)
}

func (z *ZipInspector) local(b []byte, off int64) error {
	if len(b) < 30 {
		return nil
	}
	flags := binary.LittleEndian.Uint16(b[6:])
	method := binary.LittleEndian.Uint16(b[8:])
	crc := binary.LittleEndian.Uint32(b[14:])
	csize := int64(binary.LittleEndian.Uint32(b[18:]))
	usize := int64(binary.LittleEndian.Uint32(b[22:]))
	nlen := int(binary.LittleEndian.Uint16(b[26:]))
	xlen := int(binary.LittleEndian.Uint16(b[28:]))
	if len(b) < 30+nlen+xlen {
		return nil
	}
	name := string(b[30 : 30+nlen])
	extra := b[30+nlen : 30+nlen+xlen]
	if len(z.entries) >= defInt(z.opts.Zip.MaxEntries, 65536) {
		return z.fail(off, "more than %d entries", defInt(z.opts.Zip.MaxEntries, 65536))
	}
	if err := z.checkName(name, off); err != nil {
		return err
	}
	z.nameBytes += int64(nlen)
	if z.nameBytes > 16<<20 {
		return z.fail(off, "entry names exceed 16 MiB in total")
	}
	if flags&zipFlagEncrypted != 0 {
		return z.fail(off, "%s", encryptedReason(name))
	}
	if flags&^zipAllowFlags != 0 {
		return z.fail(off, "entry %q has unsupported general purpose flags 0x%04x", name, flags)
	}
	if method != 0 && method != 8 {
		return z.fail(off, "entry %q uses compression method %d (only stored and deflate are accepted)", name, method)
	}
	usize, csize, _, has64, err := zip64Extra(extra, usize, csize, -1)
	if err != nil {
		return z.fail(off, "entry %q: %s", name, err.Error())
	}
	if _, dup := z.byName[name]; dup {
		return z.fail(off, "duplicate entry name %q", name)
	}
	folded := foldName(name)
	if other, dup := z.folded[folded]; dup {
		return z.fail(off, "entry names %q and %q differ only in letter case; torch.load's zip reader (miniz) looks names up case-insensitively, so either may be loaded", other, name)
	}
	if z.opts.DenyCodeLayers {
		if ext := codeFileExt(name); ext != "" {
			return z.fail(off, "entry %q is code (%s) and is denied (denyCodeLayers)", name, ext)
		}
	}
	if err := z.kerasMember(name, off); err != nil {
		return err
	}
	if z.isTorchScriptConstants(name) {
		z.tsConstants = true
	}
	if isTorchScriptMember(name) && !z.opts.AllowTorchScript {
		z.err = newFinding(FormatTorchScript, off, "entry %q: the archive is a TorchScript model (torch.jit.save: code/ and constants.pkl); "+
			"torch.jit.load compiles and runs its code/ (CVE-2022-45907), so it is refused (content.formats.torchscript: allow admits it; its pickles are still walked)", name)
		return z.err
	}
	// With flag 3 the local header may leave CRC and sizes at zero: they
	// follow the data in a descriptor. Non-zero values are taken as given
	// and the descriptor must repeat them.
	known := flags&zipFlagDescriptor == 0 || crc != 0 || csize != 0 || usize != 0
	if known {
		if method == 0 && csize != usize {
			return z.fail(off, "stored entry %q has compressed size %d != uncompressed size %d", name, csize, usize)
		}
		if strings.HasSuffix(name, "/") && usize != 0 {
			return z.fail(off, "directory entry %q has %d bytes of data", name, usize)
		}
		z.total += usize
		if z.total > z.maxTotal() || z.total < 0 {
			return z.fail(off, "total uncompressed size exceeds %d bytes", z.maxTotal())
		}
		if z.size >= 0 && off+30+int64(nlen+xlen)+csize > z.size {
			return z.fail(off, "entry %q data (%d bytes) extends beyond the blob size %d", name, csize, z.size)
		}
		if method == 8 && csize > z.maxDeflated() {
			return z.fail(off, "deflated entry %q of %d bytes exceeds the limit of %d", name, csize, z.maxDeflated())
		}
		if method == 8 && usize > z.maxInflated() {
			return z.fail(off, "deflated entry %q inflates to %d bytes, more than the limit of %d", name, usize, z.maxInflated())
		}
	}
	e := &zipEntry{name: name, offset: off, flags: flags, method: method, dataStart: off + 30 + int64(nlen+xlen),
		sizesKnown: known, z64local: has64}
	if known {
		e.crc, e.csize, e.usize = crc, csize, usize
	}
	z.entries = append(z.entries, e)
	z.byName[name] = e
	z.folded[folded] = name
	z.byOffset[off] = e
	z.buf.consume(30 + nlen + xlen)
	z.cur = e
	z.sink = z.newSink(e)
	if method == 8 {
		z.startInflate()
	}
	switch {
	case !known && method == 0:
		z.hold = z.hold[:0]
		z.state = zsStoredDD
	case !known:
		z.state = zsDeflateDD
	default:
		z.curLeft = csize
		z.state = zsData
		if csize == 0 {
			if err := z.finishMember(); err != nil {
				return err
			}
			z.afterData()
		}
	}
	return nil
}

// afterData moves on once a member's data of known length was read.
func (z *ZipInspector) afterData() {
	if z.cur.flags&zipFlagDescriptor != 0 {
		z.state = zsDescr
		return
	}
	z.state = zsSig
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// zip64Extra applies a ZIP64 extended information field (0x0001) to the
// 32-bit values that are 0xFFFFFFFF (as every mainstream reader does; values
// for non-saturated fields are ignored there too). It rejects malformed or
// duplicate extra fields and saturated values without a ZIP64 field, and
// reports whether a ZIP64 field is present.
func zip64Extra(extra []byte, usize, csize, lhoff int64) (int64, int64, int64, bool, error) {
	seen := map[uint16]bool{}
	for len(extra) > 0 {
		if len(extra) < 4 {
			return 0, 0, 0, false, errString("malformed extra field")
		}
		id := binary.LittleEndian.Uint16(extra)
		sz := int(binary.LittleEndian.Uint16(extra[2:]))
		if len(extra) < 4+sz {
			return 0, 0, 0, false, errString("malformed extra field")
		}
		if seen[id] {
			return 0, 0, 0, false, errString("duplicate extra field 0x" + hex16(id))
		}
		seen[id] = true
		data := extra[4 : 4+sz]
		extra = extra[4+sz:]
		if id != 0x0001 {
			continue
		}
		next := func(cur int64) (int64, error) {
			if cur != 0xFFFFFFFF {
				return cur, nil
			}
			if len(data) < 8 {
				return 0, errString("ZIP64 extra field too short")
			}
			v := binary.LittleEndian.Uint64(data)
			data = data[8:]
			if v > 1<<62 {
				return 0, errString("ZIP64 size out of range")
			}
			return int64(v), nil
		}
		var err error
		if usize, err = next(usize); err != nil {
			return 0, 0, 0, false, err
		}
		if csize, err = next(csize); err != nil {
			return 0, 0, 0, false, err
		}
		if lhoff >= 0 {
			if lhoff, err = next(lhoff); err != nil {
				return 0, 0, 0, false, err
			}
		}
	}
	if !seen[0x0001] && (usize == 0xFFFFFFFF || csize == 0xFFFFFFFF || lhoff == 0xFFFFFFFF) {
		return 0, 0, 0, false, errString("size is 0xFFFFFFFF but there is no ZIP64 extra field")
	}
	return usize, csize, lhoff, seen[0x0001], nil
}

type errString string

func (e errString) Error() string { return string(e) }

func hex16(v uint16) string {
	const d = "0123456789abcdef"
	return string([]byte{d[v>>12], d[v>>8&15], d[v>>4&15], d[v&15]})
}

func (z *ZipInspector) checkName(name string, off int64) error {
	if r := checkArchivePath(name); r != "" {
		return z.fail(off, "entry %q %s", name, r)
	}
	return nil
}

// ---- member data ----------------------------------------------------------

// memberSink receives one member's uncompressed bytes: it computes the
// CRC-32, counts the bytes against the member's bound and hands them to the
// member's own validator (decided from the name and first bytes).
type memberSink struct {
	z       *ZipInspector
	e       *zipEntry
	crc     uint32
	n       int64
	limit   int64  // uncompressed bytes allowed
	head    []byte // first bytes, for sniffing
	decided bool
	pickle  *PickleInspector
	inner   Inspector // NewInspector for the member's name
	pending []byte    // bytes for the validator, less than memberBlock
}

const memberSniffLen = 262

func (z *ZipInspector) newSink(e *zipEntry) *memberSink {
	s := &memberSink{z: z, e: e}
	switch {
	case e.sizesKnown:
		s.limit = e.usize
	case e.method == 8:
		// the member's own cap and what the archive's total leaves
		s.limit = min(z.maxInflated(), z.maxTotal()-z.total)
	default:
		s.limit = z.maxTotal() - z.total
	}
	if z.isTorchStorage(e.name) || strings.HasSuffix(e.name, "/") {
		s.decided = true // raw tensor bytes (or a directory): CRC only
	}
	return s
}

// isTorchStorage reports whether name is a raw storage record of the
// PyTorch checkpoint whose data.pkl was already walked: <prefix>/data/<key>.
// Its bytes are tensor data that torch.load only copies into a storage; the
// storage table of data.pkl is cross-checked at Close.
func (z *ZipInspector) isTorchStorage(name string) bool {
	if z.torchPrefix == "" {
		return false
	}
	key, ok := strings.CutPrefix(name, z.torchPrefix+"/data/")
	return ok && key != "" && !strings.Contains(key, "/") && !hasPickleExt(key)
}

// isTorchScriptMember reports whether name is one of the members that make
// a zip a TorchScript archive rather than a torch.save checkpoint:
// <top>/constants.pkl or anything under <top>/code/, where <top> is the
// archive's top directory. torch.jit.load reads constants.pkl and compiles
// the code/ tree (export_module.cpp writes both; torch.save writes
// neither). Names are compared as miniz looks them up: case-insensitively.
func isTorchScriptMember(name string) bool {
	top, rest, ok := strings.Cut(asciiLower(name), "/")
	if !ok || top == "" {
		return false
	}
	return rest == "constants.pkl" || strings.HasPrefix(rest, "code/")
}

// isTorchScriptConstants reports whether name is the constants.pkl that
// makes torch.load hand the archive to torch.jit.load, which resolves
// __torch__ classes against code/: torch.load tests "constants.pkl" in
// get_all_records() (serialization.py _is_torchscript_zip), the record
// names relative to the archive's top directory, a case-sensitive Python
// string match. So only <top>/constants.pkl spelled exactly so, under the
// top directory of the first member (PyTorchStreamReader's archive name),
// admits TorchScript classes. Any other spelling (CONSTANTS.PKL, another
// top directory) still makes the archive TorchScript to refuse
// (isTorchScriptMember: miniz finds it case-insensitively when
// torch.jit.load is called directly), but torch.load would unpickle it as
// a checkpoint, importing __torch__ names as Python modules.
func (z *ZipInspector) isTorchScriptConstants(name string) bool {
	first := name
	if len(z.entries) > 0 {
		first = z.entries[0].name
	}
	top, _, ok := strings.Cut(first, "/")
	return ok && top != "" && name == top+"/constants.pkl"
}

func hasPickleExt(name string) bool {
	l := strings.ToLower(name)
	for _, ext := range []string{".pkl", ".pickle", ".joblib", ".dill", ".debug_pkl"} {
		if strings.HasSuffix(l, ext) {
			return true
		}
	}
	return false
}

func archiveExt(name string) string {
	l := strings.ToLower(name)
	for _, ext := range []string{".zip", ".7z", ".rar", ".tar", ".tar.gz", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".npz"} {
		if strings.HasSuffix(l, ext) {
			return ext
		}
	}
	return ""
}

func (s *memberSink) tooLarge() error {
	e := s.e
	switch {
	case e.sizesKnown:
		return s.z.fail(e.offset, "entry %q inflates to more than its declared %d bytes", e.name, e.usize)
	case e.method == 8 && s.limit < s.z.maxInflated():
		return s.z.fail(e.offset, "total uncompressed size exceeds %d bytes", s.z.maxTotal())
	case e.method == 8:
		return s.z.fail(e.offset, "deflated entry %q inflates to more than the limit of %d bytes", e.name, s.limit)
	}
	return s.z.fail(e.offset, "total uncompressed size exceeds %d bytes", s.z.maxTotal())
}

func (s *memberSink) write(p []byte) error {
	s.crc = crc32.Update(s.crc, crc32.IEEETable, p)
	s.n += int64(len(p))
	if s.n > s.limit {
		return s.tooLarge()
	}
	if !s.decided {
		k := min(memberSniffLen-len(s.head), len(p))
		s.head = append(s.head, p[:k]...)
		if len(s.head) < memberSniffLen && (!s.e.sizesKnown || s.n < s.e.usize) {
			return nil
		}
		if err := s.decide(); err != nil {
			return err
		}
		if err := s.feed(s.head); err != nil {
			return err
		}
		p = p[k:]
	}
	return s.feed(p)
}

// memberBlock is the size of the pieces a member's validator is given:
// fixed by member offset, so that the validator sees the same writes (and
// so finds a problem at the same point) however the archive was chunked,
// when inflate attempts were made, or where a descriptor search paused.
const memberBlock = 64 << 10

// feed gives p to the member's validator, in memberBlock pieces.
func (s *memberSink) feed(p []byte) error {
	if s.pickle == nil && s.inner == nil {
		return nil
	}
	for len(p) > 0 {
		if len(s.pending) == 0 && len(p) >= memberBlock {
			if err := s.deliver(p[:memberBlock]); err != nil {
				return err
			}
			p = p[memberBlock:]
			continue
		}
		k := min(memberBlock-len(s.pending), len(p))
		s.pending = append(s.pending, p[:k]...)
		p = p[k:]
		if len(s.pending) == memberBlock {
			err := s.deliver(s.pending)
			s.pending = s.pending[:0]
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *memberSink) deliver(p []byte) error {
	var err error
	switch {
	case s.pickle != nil:
		_, err = s.pickle.Write(p)
	case s.inner != nil:
		_, err = s.inner.Write(p)
	}
	if err != nil {
		return s.wrap(err)
	}
	return nil
}

// wrap reports a finding of the member's validator as a finding about the
// member, at its offset in the archive when the member is stored.
func (s *memberSink) wrap(err error) error {
	f, ok := err.(*Finding)
	if !ok {
		s.z.err = err
		return err
	}
	off := s.e.offset
	if s.e.method == 0 && f.Offset >= 0 {
		off = s.e.dataStart + f.Offset
	}
	s.z.err = newFinding(f.Format, off, "zip member %q: %s", s.e.name, f.Reason)
	return s.z.err
}

// memberOpts are the options for files inside the zip: media type rules do
// not apply to members (the layer's type was already checked).
func (z *ZipInspector) memberOpts() Options {
	o := z.opts
	o.MediaTypes = nil
	return o
}

func (s *memberSink) decide() error {
	s.decided = true
	z, e, h := s.z, s.e, s.head
	f := sniffArchive(h)
	if f == FormatZip && e.method == 0 && !z.opts.nestedZip && strings.EqualFold(path.Ext(e.name), ".npz") {
		// A stored .npz member (scipy.sparse.save_npz inside a skops
		// file): inspected as a zip of its own, one level deep. Both
		// stream (the inner zip's deflated members too).
		o := z.memberOpts()
		o.nestedZip = true
		s.inner = NewZipInspector(o, s.sizeOrUnknown())
		return nil
	}
	if f != "" && !z.opts.AllowArchives {
		return z.fail(e.offset, "entry %q is a nested %s archive", e.name, f)
	}
	ext := archiveExt(e.name)
	if ext != "" && !z.opts.AllowArchives {
		return z.fail(e.offset, "entry %q is a nested archive (%s)", e.name, ext)
	}
	if f != "" || ext != "" {
		return nil // nested archives allowed by the rule pass uninspected
	}
	if isJoblibName(e.name) {
		z.pickleMembers = append(z.pickleMembers, e.name)
		if z.mode != PickleScan {
			z.err = newFinding(FormatPickle, e.offset, "zip member %q is a joblib file (a pickle); pickle content is denied by policy (pickle: deny)", e.name)
			return z.err
		}
		in := NewJoblibInspector(z.opts, s.sizeOrUnknown())
		s.inner = in
		return nil
	}
	if hasPickleExt(e.name) || len(h) >= 2 && h[0] == 0x80 && h[1] <= 5 {
		z.pickleMembers = append(z.pickleMembers, e.name)
		if z.mode != PickleScan {
			z.err = newFinding(FormatPickle, e.offset, "zip member %q is a pickle; pickle content is denied by policy (pickle: deny)", e.name)
			return z.err
		}
		po := z.opts
		po.torchScriptClasses = z.opts.AllowTorchScript
		s.pickle = NewPickleInspector(po, s.sizeOrUnknown())
		return nil
	}
	if len(h) == 0 {
		return nil // an empty file carries nothing to inspect
	}
	if isSkopsSchemaName(e.name) {
		// skops.io.dump's schema.json: every type it makes skops load
		// is checked (skops.go); another schema.json as a JSON config.
		s.inner = newSkopsSchemaInspector(z.opts, s.sizeOrUnknown())
		return nil
	}
	if e.name == kerasConfigName {
		// Keras's loader json.loads a top-level config.json whatever
		// its first bytes (keras.go): always the JSON check, with
		// Python's non-finite floats.
		o := z.memberOpts()
		o.pyJSONFloats = true
		s.inner = newKerasConfigJSONInspector(o, s.sizeOrUnknown())
		return nil
	}
	in, err := NewInspector(z.memberOpts(), "", e.name, s.sizeOrUnknown())
	if err != nil {
		return s.wrap(err)
	}
	s.inner = in
	return nil
}

// memberDataAt reports whether a stored member's data starts at off (an
// HDF5 member there is inspected as a member: polyglot.go).
func (z *ZipInspector) memberDataAt(off int64) bool {
	for _, e := range z.entries {
		if e.method == 0 && e.dataStart == off {
			return true
		}
	}
	return false
}

func (s *memberSink) sizeOrUnknown() int64 {
	if s.e.sizesKnown {
		return s.e.usize
	}
	return -1
}

func (s *memberSink) close() error {
	z, e := s.z, s.e
	if !s.decided {
		if err := s.decide(); err != nil {
			return err
		}
		if err := s.feed(s.head); err != nil {
			return err
		}
	}
	if len(s.pending) > 0 {
		err := s.deliver(s.pending)
		s.pending = nil
		if err != nil {
			return err
		}
	}
	if s.n != e.usize {
		return z.fail(e.offset, "entry %q has %d bytes, header declares %d", e.name, s.n, e.usize)
	}
	if s.crc != e.crc {
		return z.fail(e.offset, "entry %q CRC-32 mismatch: header 0x%08x, data 0x%08x", e.name, e.crc, s.crc)
	}
	if strings.HasSuffix(e.name, "/") && s.n != 0 {
		return z.fail(e.offset, "directory entry %q has %d bytes of data", e.name, s.n)
	}
	var kb []byte
	if e.name == kerasConfigName || e.name == kerasMetadataName {
		kb = kerasMemberBytes(s.inner) // read before Close releases them
	}
	if s.inner != nil {
		if err := s.inner.Close(); err != nil {
			return s.wrap(err)
		}
	}
	if err := z.kerasCollect(e, kb, kerasJudgedJSON(s.inner)); err != nil {
		return err
	}
	if s.pickle != nil {
		if err := s.pickle.Close(); err != nil {
			return s.wrap(err)
		}
		if c := s.pickle.w.tsClass; c != "" && z.tsClass == "" {
			z.tsClass, z.tsClassAt = e.name+" imports "+c, e.offset
		}
		if strings.HasSuffix(e.name, "/data.pkl") && strings.Count(e.name, "/") == 1 {
			if z.torchPrefix != "" {
				return z.fail(e.offset, "more than one PyTorch data.pkl (%q and %q)", z.torchPrefix+"/data.pkl", e.name)
			}
			z.torchPrefix = strings.TrimSuffix(e.name, "/data.pkl")
			z.storageRefs = s.pickle.w.storages
		}
	}
	return nil
}

// checkTorchStorages cross-checks a PyTorch checkpoint: every storage that
// data.pkl references exists as <prefix>/data/<key> with numel x element
// size bytes, and no storage record is unreferenced.
func (z *ZipInspector) checkTorchStorages() error {
	if z.torchPrefix == "" {
		return nil
	}
	refs := map[string]storageRef{}
	for _, r := range z.storageRefs {
		if old, ok := refs[r.Key]; ok && old != r {
			return z.fail(-1, "storage %q referenced with conflicting types or sizes", r.Key)
		}
		refs[r.Key] = r
	}
	dir := z.torchPrefix + "/data/"
	for _, e := range z.entries {
		if !strings.HasPrefix(e.name, dir) {
			continue
		}
		key := strings.TrimPrefix(e.name, dir)
		r, ok := refs[key]
		if !ok {
			return z.fail(e.offset, "storage record %q is not referenced by %s/data.pkl", e.name, z.torchPrefix)
		}
		es, known := torchStorageElemSize[r.Type]
		if known && (r.Numel < 0 || r.Numel > e.usize || r.Numel*es != e.usize) {
			return z.fail(e.offset, "storage record %q has %d bytes, data.pkl declares %d elements of %s", e.name, e.usize, r.Numel, r.Type)
		}
		delete(refs, key)
	}
	for k := range refs {
		return z.fail(-1, "data.pkl references storage %q but %s is missing", k, dir+k)
	}
	return nil
}

func (z *ZipInspector) memberData(p []byte) error {
	if z.cur.method == 0 {
		return z.sink.write(p)
	}
	if z.infl.Done() {
		return z.hiddenData(z.curLeft)
	}
	n, err := z.infl.Write(p)
	if err != nil {
		return z.inflateErr(err)
	}
	if z.infl.Done() && z.curLeft > int64(n) {
		return z.hiddenData(z.curLeft - int64(n))
	}
	return nil
}

func (z *ZipInspector) hiddenData(rest int64) error {
	e := z.cur
	return z.fail(e.offset, "entry %q: its deflate stream ends %d bytes before the end of its %d compressed bytes (hidden data)", e.name, rest, e.csize)
}

// startInflate prepares the inflater for the current (deflated) member: it
// streams, holding a 32 KiB window, the block's Huffman tables and a few
// hundred bytes of input at most, however large the member.
func (z *ZipInspector) startInflate() {
	out := func(p []byte) error { return z.sink.write(p) }
	if z.infl == nil {
		z.infl = inflate.New(out)
		return
	}
	z.infl.Reset(out)
}

// inflateErr reports an error of the inflater: corrupt deflate data, or
// the finding the member's sink returned (already recorded).
func (z *ZipInspector) inflateErr(err error) error {
	if ce, ok := err.(*inflate.CorruptError); ok {
		e := z.cur
		return z.fail(e.offset, "entry %q: invalid deflate data: %v", e.name, ce)
	}
	z.err = err
	return err
}

// finishMember closes the sink of a member of known size; a deflated
// member's stream must have ended.
func (z *ZipInspector) finishMember() error {
	e := z.cur
	if e.method == 8 && !z.infl.Done() {
		return z.fail(e.offset, "entry %q: invalid deflate data: unexpected EOF", e.name)
	}
	return z.sink.close()
}

// storedDD consumes b as data of a stored member whose length is unknown
// (flag 3, zeros in the local header). The data ends at the first
// PK\x07\x08 data descriptor whose compressed size equals the number of
// bytes before it; its uncompressed size and CRC-32 must then agree with
// those bytes, or the archive is refused (a descriptor-shaped record that
// disagrees makes the member's end ambiguous).
//
// The stream seen so far is U = z.hold ++ b. The member is given U up to
// its last 23 bytes (which may begin a descriptor completed by the next
// write) and those are held back, so what the member has seen depends
// only on how many bytes arrived, never on how they were chunked.
func (z *ZipInspector) storedDD(b []byte) error {
	s, h := z.sink, len(z.hold)
	total := h + len(b)
	limit := max(0, total-(zipDescr64Len-1))
	part := func(from, to int) ([]byte, []byte) { // U[from:to]
		var p1, p2 []byte
		if from < h {
			p1 = z.hold[from:min(to, h)]
		}
		if to > h {
			p2 = b[max(from, h)-h : to-h]
		}
		return p1, p2
	}
	fed := 0 // U[:fed] was given to the member
	feed := func(to int) error {
		if to <= fed {
			return nil
		}
		p1, p2 := part(fed, to)
		fed = to
		if err := s.write(p1); err != nil {
			return err
		}
		return s.write(p2)
	}
	// candidate checks a signature at U[i]: done when it ends the member,
	// wait when the descriptor is not complete yet.
	candidate := func(i int) (done, wait bool, err error) {
		pos := s.n + int64(i-fed)
		dl := z.ddLen(pos)
		if i+dl > total {
			return false, true, nil
		}
		var d [zipDescr64Len]byte
		p1, p2 := part(i, i+dl)
		copy(d[copy(d[:], p1):], p2)
		_, csize, _ := parseDescriptor(d[4:dl], dl == zipDescr64Len)
		if csize != uint64(pos) {
			return false, false, nil // tensor bytes that happen to contain the signature
		}
		if err := feed(i); err != nil {
			return false, false, err
		}
		if err := z.storedDescriptor(d[:dl], pos); err != nil {
			return false, false, err
		}
		if err := z.endStoredDD(); err != nil {
			return false, false, err
		}
		if after := i + dl - h; after >= 0 {
			z.hold = z.hold[:0]
			z.buf.consume(after)
			return true, false, nil
		}
		// the whole descriptor was held; what follows it goes back to the parser
		rest := append(append([]byte(nil), z.hold[i+dl:]...), b...)
		z.hold = z.hold[:0]
		z.buf.b, z.buf.base = rest, z.buf.base-int64(h-i-dl)
		return true, false, nil
	}
	scan := func(i int) (done, wait bool, err error) {
		if err := feed(min(i, limit)); err != nil {
			return false, false, err
		}
		return candidate(i)
	}
	waiting := false
	// signatures that start in the held bytes
	if h > 0 {
		j := append(append(z.join[:0], z.hold...), b[:min(len(b), len(sigDataDescrBytes)-1)]...)
		z.join = j
		for from := 0; from < h; {
			k := bytes.Index(j[from:], sigDataDescrBytes)
			if k < 0 || from+k >= h {
				break
			}
			done, wait, err := scan(from + k)
			if err != nil || done {
				return err
			}
			if wait {
				waiting = true
				break
			}
			from += k + 1
		}
	}
	// signatures in b, in windows that stay in cache: each window is
	// searched, then its data is given to the member while still hot
	const window = 64 << 10
	for from := 0; from < len(b) && !waiting; {
		wend := min(len(b), from+window)
		k := bytes.Index(b[from:min(len(b), wend+len(sigDataDescrBytes)-1)], sigDataDescrBytes)
		if k < 0 {
			if err := feed(min(h+wend, limit)); err != nil {
				return err
			}
			from = wend
			continue
		}
		done, wait, err := scan(h + from + k)
		if err != nil || done {
			return err
		}
		waiting = wait
		from += k + 1
	}
	// a descriptor still incomplete starts at or after limit: hold from there
	if err := feed(limit); err != nil {
		return err
	}
	p1, p2 := part(fed, total)
	z.join = append(append(z.join[:0], p1...), p2...)
	z.hold = append(z.hold[:0], z.join...)
	z.buf.consume(len(b))
	return nil
}

// ddLen is the length of the signed data descriptor expected after pos
// bytes of the current member: 8-byte sizes when the local header carries a
// ZIP64 field (APPNOTE 4.3.9.1; miniz, Python) or the sizes do not fit 32
// bits (Go, Java), 4-byte sizes otherwise.
func (z *ZipInspector) ddLen(pos int64) int {
	if z.cur.z64local || pos >= 0xFFFFFFFF {
		return zipDescr64Len
	}
	return zipDescr32Len
}

func parseDescriptor(d []byte, z64 bool) (crc uint32, csize, usize uint64) {
	crc = binary.LittleEndian.Uint32(d)
	if z64 {
		return crc, binary.LittleEndian.Uint64(d[4:]), binary.LittleEndian.Uint64(d[12:])
	}
	return crc, uint64(binary.LittleEndian.Uint32(d[4:])), uint64(binary.LittleEndian.Uint32(d[8:]))
}

// storedDescriptor checks the PK\x07\x08 record d whose compressed size
// says the stored member ends after its pos bytes (all given to the sink):
// it must agree in every field.
func (z *ZipInspector) storedDescriptor(d []byte, pos int64) error {
	e := z.cur
	crc, _, usize := parseDescriptor(d[4:], len(d) == zipDescr64Len)
	at := e.dataStart + pos
	if usize != uint64(pos) {
		return z.fail(at, "stored entry %q: data descriptor at offset %d declares %d uncompressed bytes for %d stored bytes", e.name, at, usize, pos)
	}
	if crc != z.sink.crc {
		return z.fail(at, "entry %q: data descriptor at offset %d declares CRC-32 0x%08x, but the %d bytes before it have CRC-32 0x%08x", e.name, at, crc, pos, z.sink.crc)
	}
	return nil
}

// endStoredDD closes a stored member of unknown length at its descriptor.
func (z *ZipInspector) endStoredDD() error {
	e, s := z.cur, z.sink
	e.csize, e.usize, e.crc = s.n, s.n, s.crc
	if err := z.addTotal(e); err != nil {
		return err
	}
	z.state = zsSig
	return s.close()
}

func (z *ZipInspector) addTotal(e *zipEntry) error {
	z.total += e.usize
	if z.total > z.maxTotal() || z.total < 0 {
		return z.fail(e.offset, "total uncompressed size exceeds %d bytes", z.maxTotal())
	}
	return nil
}

// deflateDD handles a deflated member of unknown length: b goes through
// the inflater until the deflate stream ends, which gives the compressed
// size; the descriptor must follow at once. With MaxDeflatedMember set, the
// stream must end within that many bytes.
func (z *ZipInspector) deflateDD(b []byte) error {
	e := z.cur
	maxIn := z.maxDeflated()
	in := b
	if left := maxIn - z.infl.InputUsed(); int64(len(in)) > left {
		in = in[:left]
	}
	n, err := z.infl.Write(in)
	if err != nil {
		return z.inflateErr(err)
	}
	if !z.infl.Done() {
		z.buf.consume(n)
		if z.infl.InputUsed() >= maxIn {
			return z.fail(e.offset, "deflated entry %q: its deflate stream does not end within %d bytes, the limit for deflated members", e.name, maxIn)
		}
		return nil
	}
	e.csize, e.usize, e.crc = z.infl.InputUsed(), z.sink.n, z.sink.crc
	if err := z.addTotal(e); err != nil {
		return err
	}
	if err := z.sink.close(); err != nil {
		return err
	}
	z.buf.consume(n)
	z.state = zsDescr
	return nil
}

// descriptor checks the data descriptor that must follow the data of a
// member with flag 3 whose data length is known (from the local header, or
// from the end of its deflate stream). The PK\x07\x08 signature is
// optional; both forms must agree with the member in every field.
func (z *ZipInspector) descriptor(b []byte, off int64) error {
	e := z.cur
	z64 := e.z64local || e.csize >= 0xFFFFFFFF || e.usize >= 0xFFFFFFFF
	n := zipDescr32Len
	if z64 {
		n = zipDescr64Len
	}
	if len(b) < n {
		return nil
	}
	match := func(d []byte) bool {
		crc, c, u := parseDescriptor(d, z64)
		return crc == e.crc && c == uint64(e.csize) && u == uint64(e.usize)
	}
	sig := binary.LittleEndian.Uint32(b)
	signed := sig == sigDataDescr && match(b[4:])
	unsigned := match(b)
	switch {
	case signed && unsigned:
		return z.fail(off, "entry %q: ambiguous data descriptor (it parses both with and without the PK\\x07\\x08 signature)", e.name)
	case signed:
		z.buf.consume(n)
		z.state = zsSig
		return nil
	case unsigned:
		z.buf.consume(n - 4)
		z.state = zsSig
		return nil
	}
	switch sig {
	case sigLocal, sigCentral, sigEOCD, sigZip64EOCD:
		return z.fail(off, "entry %q sets general purpose flag 0x0008 but no data descriptor follows its data", e.name)
	}
	d, how := b, "data descriptor (without signature)"
	if sig == sigDataDescr {
		d, how = b[4:], "data descriptor"
	}
	crc, c, u := parseDescriptor(d, z64)
	return z.fail(off, "%s of entry %q declares CRC-32 0x%08x, %d compressed and %d uncompressed bytes; the entry has CRC-32 0x%08x, %d and %d",
		how, e.name, crc, c, u, e.crc, e.csize, e.usize)
}

// ---- central directory and end records ------------------------------------

func (z *ZipInspector) centralHeader(b []byte, off int64) error {
	if len(b) < 46 {
		return nil
	}
	flags := binary.LittleEndian.Uint16(b[8:])
	method := binary.LittleEndian.Uint16(b[10:])
	crc := binary.LittleEndian.Uint32(b[16:])
	csize := int64(binary.LittleEndian.Uint32(b[20:]))
	usize := int64(binary.LittleEndian.Uint32(b[24:]))
	nlen := int(binary.LittleEndian.Uint16(b[28:]))
	xlen := int(binary.LittleEndian.Uint16(b[30:]))
	clen := int(binary.LittleEndian.Uint16(b[32:]))
	disk := binary.LittleEndian.Uint16(b[34:])
	lhoff := int64(binary.LittleEndian.Uint32(b[42:]))
	if len(b) < 46+nlen+xlen+clen {
		return nil
	}
	name := string(b[46 : 46+nlen])
	extra := b[46+nlen : 46+nlen+xlen]
	if flags&zipFlagEncrypted != 0 {
		return z.fail(off, "%s", encryptedReason(name))
	}
	usize, csize, lhoff, _, err := zip64Extra(extra, usize, csize, lhoff)
	if err != nil {
		return z.fail(off, "central directory entry %q: %s", name, err.Error())
	}
	if disk != 0 && disk != 0xFFFF {
		return z.fail(off, "central directory entry %q is on disk %d (multi-disk archives are not accepted)", name, disk)
	}
	e := z.byOffset[lhoff]
	if e == nil {
		return z.fail(off, "central directory entry %q points to offset %d, where there is no local header", name, lhoff)
	}
	if e.central {
		return z.fail(off, "central directory lists the entry at offset %d twice", lhoff)
	}
	if e.name != name {
		return z.fail(off, "central directory name %q disagrees with local header name %q", name, e.name)
	}
	if e.flags != flags || e.method != method {
		return z.fail(off, "entry %q: central directory flags/method (0x%04x/%d) disagree with the local header (0x%04x/%d)", name, flags, method, e.flags, e.method)
	}
	if e.crc != crc || e.csize != csize || e.usize != usize {
		if !e.sizesKnown {
			return z.fail(off, "entry %q: central directory CRC-32 0x%08x, %d compressed and %d uncompressed bytes disagree with its data and data descriptor (0x%08x, %d, %d)",
				name, crc, csize, usize, e.crc, e.csize, e.usize)
		}
		return z.fail(off, "entry %q: central directory CRC/sizes disagree with the local header", name)
	}
	e.central = true
	z.cdCount++
	z.state = zsCentral
	z.buf.consume(46 + nlen + xlen + clen)
	return nil
}

func (z *ZipInspector) endCentral(off int64) error {
	if z.cdStart == 0 && len(z.entries) > 0 {
		return z.fail(off, "end of central directory without a central directory")
	}
	if z.cdEnd == 0 {
		z.cdEnd = off
	}
	for _, e := range z.entries {
		if !e.central {
			return z.fail(off, "local entry %q is missing from the central directory (hidden entry)", e.name)
		}
	}
	return nil
}

func (z *ZipInspector) zip64EOCD(b []byte, off int64) error {
	if len(b) < 56 {
		return nil
	}
	if err := z.endCentral(off); err != nil {
		return err
	}
	rsize := binary.LittleEndian.Uint64(b[4:])
	if rsize != 44 {
		return z.fail(off, "ZIP64 end of central directory record has size %d (extensible data is not accepted)", rsize)
	}
	if binary.LittleEndian.Uint32(b[16:]) != 0 || binary.LittleEndian.Uint32(b[20:]) != 0 {
		return z.fail(off, "multi-disk ZIP64 archives are not accepted")
	}
	entDisk := binary.LittleEndian.Uint64(b[24:])
	z.z64Entries = binary.LittleEndian.Uint64(b[32:])
	z.z64CDSize = binary.LittleEndian.Uint64(b[40:])
	z.z64CDOffset = binary.LittleEndian.Uint64(b[48:])
	if entDisk != z.z64Entries || z.z64Entries != uint64(z.cdCount) {
		return z.fail(off, "ZIP64 end record declares %d entries, central directory has %d", z.z64Entries, z.cdCount)
	}
	if z.z64CDOffset != uint64(z.cdStart) || z.z64CDSize != uint64(z.cdEnd-z.cdStart) {
		return z.fail(off, "ZIP64 end record central directory offset/size (%d/%d) disagree with the archive (%d/%d)", z.z64CDOffset, z.z64CDSize, z.cdStart, z.cdEnd-z.cdStart)
	}
	z.z64 = true
	z.zip64EOCDAt = off
	z.state = zsZip64Loc
	z.buf.consume(56)
	return nil
}

func (z *ZipInspector) zip64Locator(b []byte, off int64) error {
	if len(b) < 20 {
		return nil
	}
	if int64(binary.LittleEndian.Uint64(b[8:])) != z.zip64EOCDAt {
		return z.fail(off, "ZIP64 locator points to offset %d, the ZIP64 end record is at %d", binary.LittleEndian.Uint64(b[8:]), z.zip64EOCDAt)
	}
	if d := binary.LittleEndian.Uint32(b[4:]); d != 0 || binary.LittleEndian.Uint32(b[16:]) > 1 {
		return z.fail(off, "multi-disk ZIP64 archives are not accepted")
	}
	z.state = zsEOCD
	z.buf.consume(20)
	return nil
}

func (z *ZipInspector) eocd(b []byte, off int64) error {
	if len(b) < 22 {
		return nil
	}
	clen := int(binary.LittleEndian.Uint16(b[20:]))
	if len(b) < 22+clen {
		return nil
	}
	if z.zip64EOCDAt >= 0 && z.state != zsEOCD {
		return z.fail(off, "ZIP64 end record without a locator")
	}
	if !z.z64 {
		if err := z.endCentral(off); err != nil {
			return err
		}
	}
	if binary.LittleEndian.Uint16(b[4:]) != 0 || binary.LittleEndian.Uint16(b[6:]) != 0 {
		return z.fail(off, "multi-disk archives are not accepted")
	}
	ents := uint64(binary.LittleEndian.Uint16(b[10:]))
	cdSize := uint64(binary.LittleEndian.Uint32(b[12:]))
	cdOff := uint64(binary.LittleEndian.Uint32(b[16:]))
	if z.z64 {
		if ents != 0xFFFF && ents != z.z64Entries || cdSize != 0xFFFFFFFF && cdSize != z.z64CDSize || cdOff != 0xFFFFFFFF && cdOff != z.z64CDOffset {
			return z.fail(off, "end of central directory record disagrees with the ZIP64 end record")
		}
	} else {
		cdStart := uint64(z.cdStart)
		if len(z.entries) == 0 {
			cdStart = uint64(off)
		}
		if ents != uint64(z.cdCount) {
			return z.fail(off, "end of central directory declares %d entries, central directory has %d", ents, z.cdCount)
		}
		if cdOff != cdStart || cdSize != uint64(off)-cdStart {
			return z.fail(off, "end of central directory offset/size (%d/%d) disagree with the archive (%d/%d); prepended or shifted data", cdOff, cdSize, cdStart, uint64(off)-cdStart)
		}
	}
	z.buf.consume(22 + clen)
	z.state = zsDone
	return nil
}

// Close checks that the archive ended exactly after the end of central
// directory record.
func (z *ZipInspector) Close() error {
	if z.err != nil {
		return z.err
	}
	if len(z.buf.b) > 0 {
		z.retryAt = 0
		if err := z.run(); err != nil {
			return err
		}
	}
	if z.size >= 0 && z.seen != z.size {
		return z.fail(z.seen, "truncated: %d of %d bytes", z.seen, z.size)
	}
	switch z.state {
	case zsDone:
	case zsStoredDD:
		return z.fail(z.cur.offset, "stored entry %q sets general purpose flag 0x0008 with no sizes in its local header, and no PK\\x07\\x08 data descriptor matching its length and CRC-32 follows its data (a descriptor without the signature cannot end stored data)", z.cur.name)
	case zsDeflateDD:
		return z.fail(z.cur.offset, "truncated zip: the deflate stream of entry %q does not end", z.cur.name)
	default:
		return z.fail(z.seen, "truncated zip: no end of central directory record")
	}
	if len(z.buf.b) > 0 {
		return z.fail(z.buf.base, "%s", trailingReason(z.size, z.buf.base, "the end of central directory record"))
	}
	if err := z.checkTorchStorages(); err != nil {
		return err
	}
	if err := z.kerasClose(); err != nil {
		return err
	}
	if z.tsClass != "" && !z.tsConstants {
		// Only torch.jit.load resolves __torch__ classes against code/;
		// torch.load treats a zip without constants.pkl as a checkpoint.
		z.err = newFinding(FormatTorchScript, z.tsClassAt, "%s, which only torch.jit.load resolves (a TorchScript class or torch.jit._pickle builder), but the archive has no <top>/constants.pkl spelled exactly so: torch.load does not treat it as a TorchScript archive, and only TorchScript archives may name __torch__ classes or torch.jit._pickle builders (content.formats.torchscript: allow)", z.tsClass)
		return z.err
	}
	z.closed = true
	return nil
}
