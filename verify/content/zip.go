package content

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"io"
	"strings"
)

const (
	sigLocal      = 0x04034b50
	sigCentral    = 0x02014b50
	sigZip64EOCD  = 0x06064b50
	sigZip64Loc   = 0x07064b50
	sigEOCD       = 0x06054b50
	sigDataDescr  = 0x08074b50
	zipAllowFlags = 0x0001 | 0x0002 | 0x0004 | 0x0800 // encrypted bit is refused separately; 1,2 are deflate level hints; 11 UTF-8
)

type zipEntry struct {
	name         string
	offset       int64 // of the local header
	flags        uint16
	method       uint16
	crc          uint32
	csize, usize int64
	dataStart    int64
	central      bool // matched by a central directory header
}

type zipState int

const (
	zsSig zipState = iota
	zsLocal
	zsData
	zsCentral
	zsZip64EOCD
	zsZip64Loc
	zsEOCD
	zsDone
)

// ZipInspector validates a zip archive as it streams: local headers and
// member data (CRC computed) as they arrive, the central directory and end
// records at the end. The verdict is final only at Close; HeaderDone stays
// false until then, so the proxy must hold back the tail.
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
	byOffset map[int64]*zipEntry
	cur      *zipEntry
	curLeft  int64 // compressed bytes of cur still to read
	sink     *memberSink
	deflated []byte
	total    int64 // sum of uncompressed sizes

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
}

// NewZipInspector returns a strict zip validator. Pickle members are denied
// or walked according to opts.Pickle.Mode.
func NewZipInspector(opts Options, size int64) *ZipInspector {
	return &ZipInspector{opts: opts, mode: opts.pickleMode(), size: size,
		byName: map[string]*zipEntry{}, byOffset: map[int64]*zipEntry{}, zip64EOCDAt: -1}
}

func (z *ZipInspector) Format() string { return FormatZip }

// HeaderDone is true only after Close validated the central directory.
func (z *ZipInspector) HeaderDone() bool { return z.state == zsDone && z.err == nil }

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
		before := len(z.buf.b)
		if err := z.step(); err != nil {
			z.err = err
			return err
		}
		if len(z.buf.b) == before {
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
		if err := z.memberData(b[:k], off); err != nil {
			return err
		}
		z.curLeft -= int64(k)
		z.buf.consume(k)
		if z.curLeft == 0 {
			if err := z.finishMember(); err != nil {
				return err
			}
			z.state = zsSig
		}
		return nil
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
	if flags&0x0001 != 0 {
		return z.fail(off, "entry %q is encrypted", name)
	}
	if flags&0x0008 != 0 {
		return z.fail(off, "entry %q uses a data descriptor (sizes not in the local header); strict validation requires sizes up front", name)
	}
	if flags&^zipAllowFlags != 0 {
		return z.fail(off, "entry %q has unsupported general purpose flags 0x%04x", name, flags)
	}
	if method != 0 && method != 8 {
		return z.fail(off, "entry %q uses compression method %d (only stored and deflate are accepted)", name, method)
	}
	var err error
	usize, csize, _, err = zip64Extra(extra, usize, csize, -1)
	if err != nil {
		return z.fail(off, "entry %q: %s", name, err.Error())
	}
	if method == 0 && csize != usize {
		return z.fail(off, "stored entry %q has compressed size %d != uncompressed size %d", name, csize, usize)
	}
	if _, dup := z.byName[name]; dup {
		return z.fail(off, "duplicate entry name %q", name)
	}
	z.total += usize
	if z.total > def64(z.opts.Zip.MaxUncompressed, 1<<40) || z.total < 0 {
		return z.fail(off, "total uncompressed size exceeds %d bytes", def64(z.opts.Zip.MaxUncompressed, 1<<40))
	}
	if z.size >= 0 && off+30+int64(nlen+xlen)+csize > z.size {
		return z.fail(off, "entry %q data (%d bytes) extends beyond the blob size %d", name, csize, z.size)
	}
	if method == 8 && csize > def64(z.opts.Zip.MaxDeflatedMember, 64<<20) {
		return z.fail(off, "deflated entry %q of %d bytes exceeds the limit of %d", name, csize, def64(z.opts.Zip.MaxDeflatedMember, 64<<20))
	}
	if method == 8 && usize > def64(z.opts.Zip.MaxInflatedMember, 1<<30) {
		return z.fail(off, "deflated entry %q inflates to %d bytes, more than the limit of %d", name, usize, def64(z.opts.Zip.MaxInflatedMember, 1<<30))
	}
	e := &zipEntry{name: name, offset: off, flags: flags, method: method, crc: crc, csize: csize, usize: usize,
		dataStart: off + 30 + int64(nlen+xlen)}
	z.entries = append(z.entries, e)
	z.byName[name] = e
	z.byOffset[off] = e
	z.buf.consume(30 + nlen + xlen)
	z.cur = e
	z.curLeft = csize
	z.sink = z.newSink(e)
	z.deflated = z.deflated[:0]
	z.state = zsData
	if csize == 0 {
		if err := z.finishMember(); err != nil {
			return err
		}
		z.state = zsSig
	}
	return nil
}

// zip64Extra applies a ZIP64 extended information field (0x0001) to the
// 32-bit values that are 0xFFFFFFFF (as every mainstream reader does; values
// for non-saturated fields are ignored there too). It rejects malformed or
// duplicate extra fields and saturated values without a ZIP64 field.
func zip64Extra(extra []byte, usize, csize, lhoff int64) (int64, int64, int64, error) {
	seen := map[uint16]bool{}
	for len(extra) > 0 {
		if len(extra) < 4 {
			return 0, 0, 0, errString("malformed extra field")
		}
		id := binary.LittleEndian.Uint16(extra)
		sz := int(binary.LittleEndian.Uint16(extra[2:]))
		if len(extra) < 4+sz {
			return 0, 0, 0, errString("malformed extra field")
		}
		if seen[id] {
			return 0, 0, 0, errString("duplicate extra field 0x" + hex16(id))
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
			return 0, 0, 0, err
		}
		if csize, err = next(csize); err != nil {
			return 0, 0, 0, err
		}
		if lhoff >= 0 {
			if lhoff, err = next(lhoff); err != nil {
				return 0, 0, 0, err
			}
		}
	}
	if !seen[0x0001] && (usize == 0xFFFFFFFF || csize == 0xFFFFFFFF || lhoff == 0xFFFFFFFF) {
		return 0, 0, 0, errString("size is 0xFFFFFFFF but there is no ZIP64 extra field")
	}
	return usize, csize, lhoff, nil
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

// memberSink receives one member's uncompressed bytes.
type memberSink struct {
	z       *ZipInspector
	e       *zipEntry
	crc     uint32
	n       int64
	head    []byte // first bytes, for sniffing
	decided bool
	storage bool // PyTorch raw storage record: never sniffed
	pickle  *PickleInspector
}

const memberSniffLen = 262

func (z *ZipInspector) newSink(e *zipEntry) *memberSink {
	s := &memberSink{z: z, e: e}
	if isTorchStorageName(e.name) {
		s.storage = true
		s.decided = true
	}
	return s
}

func isTorchStorageName(name string) bool {
	parts := strings.Split(name, "/")
	return len(parts) == 3 && parts[1] == "data" && parts[2] != "" && !hasPickleExt(parts[2])
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

func (s *memberSink) write(p []byte, zoff int64) error {
	s.crc = crc32.Update(s.crc, crc32.IEEETable, p)
	s.n += int64(len(p))
	if s.n > s.e.usize {
		return s.z.fail(zoff, "entry %q inflates to more than its declared %d bytes", s.e.name, s.e.usize)
	}
	if !s.decided {
		k := min(memberSniffLen-len(s.head), len(p))
		s.head = append(s.head, p[:k]...)
		if len(s.head) < memberSniffLen && s.n < s.e.usize {
			return nil
		}
		if err := s.decide(zoff); err != nil {
			return err
		}
		if s.pickle != nil {
			if err := s.feedPickle(s.head); err != nil {
				return err
			}
		}
		p = p[k:]
	}
	if s.pickle != nil && len(p) > 0 {
		return s.feedPickle(p)
	}
	return nil
}

func (s *memberSink) feedPickle(p []byte) error {
	if _, err := s.pickle.Write(p); err != nil {
		return s.wrapPickle(err)
	}
	return nil
}

func (s *memberSink) wrapPickle(err error) error {
	if f, ok := err.(*Finding); ok {
		s.z.err = newFinding(FormatPickle, s.e.dataStart+f.Offset, "zip member %q: %s", s.e.name, f.Reason)
		return s.z.err
	}
	return err
}

func (s *memberSink) decide(zoff int64) error {
	s.decided = true
	h := s.head
	if f := sniffArchive(h); f != "" && !s.z.opts.AllowArchives {
		return s.z.fail(s.e.offset, "entry %q is a nested %s archive", s.e.name, f)
	}
	if ext := archiveExt(s.e.name); ext != "" && !s.z.opts.AllowArchives {
		return s.z.fail(s.e.offset, "entry %q is a nested archive (%s)", s.e.name, ext)
	}
	if hasPickleExt(s.e.name) || len(h) >= 2 && h[0] == 0x80 && h[1] <= 5 {
		s.z.pickleMembers = append(s.z.pickleMembers, s.e.name)
		if s.z.mode != PickleScan {
			return newFindingSet(s.z, FormatPickle, s.e.offset, "zip member %q is a pickle; pickle content is denied by policy (pickle: deny)", s.e.name)
		}
		s.pickle = NewPickleInspector(s.z.opts, s.e.usize)
	}
	return nil
}

func newFindingSet(z *ZipInspector, format string, off int64, reason string, args ...any) error {
	z.err = newFinding(format, off, reason, args...)
	return z.err
}

func (s *memberSink) close(zoff int64) error {
	if !s.decided {
		if err := s.decide(zoff); err != nil {
			return err
		}
		if s.pickle != nil {
			if err := s.feedPickle(s.head); err != nil {
				return err
			}
		}
	}
	if s.n != s.e.usize {
		return s.z.fail(s.e.offset, "entry %q has %d bytes, header declares %d", s.e.name, s.n, s.e.usize)
	}
	if s.crc != s.e.crc {
		return s.z.fail(s.e.offset, "entry %q CRC-32 mismatch: header 0x%08x, data 0x%08x", s.e.name, s.e.crc, s.crc)
	}
	if s.pickle != nil {
		if err := s.pickle.Close(); err != nil {
			return s.wrapPickle(err)
		}
		if strings.HasSuffix(s.e.name, "/data.pkl") && strings.Count(s.e.name, "/") == 1 {
			if s.z.torchPrefix != "" {
				return s.z.fail(s.e.offset, "more than one PyTorch data.pkl (%q and %q)", s.z.torchPrefix+"/data.pkl", s.e.name)
			}
			s.z.torchPrefix = strings.TrimSuffix(s.e.name, "/data.pkl")
			s.z.storageRefs = s.pickle.w.storages
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

func (z *ZipInspector) memberData(p []byte, off int64) error {
	if z.cur.method == 0 {
		return z.sink.write(p, off)
	}
	z.deflated = append(z.deflated, p...)
	return nil
}

func (z *ZipInspector) finishMember() error {
	e := z.cur
	if e.method == 8 {
		fr := flate.NewReader(bytes.NewReader(z.deflated))
		buf := make([]byte, 32<<10)
		for {
			n, err := fr.Read(buf)
			if n > 0 {
				if werr := z.sink.write(buf[:n], e.dataStart); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return z.fail(e.dataStart, "entry %q: invalid deflate data: %v", e.name, err)
			}
		}
		z.deflated = z.deflated[:0]
	}
	return z.sink.close(e.dataStart)
}

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
	var err error
	usize, csize, lhoff, err = zip64Extra(extra, usize, csize, lhoff)
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
	if z.state != zsDone {
		return z.fail(z.seen, "truncated zip: no end of central directory record")
	}
	if len(z.buf.b) > 0 {
		return z.fail(z.buf.base, "%s", trailingReason(z.size, z.buf.base, "the end of central directory record"))
	}
	return z.checkTorchStorages()
}
