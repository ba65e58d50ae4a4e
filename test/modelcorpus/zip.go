package modelcorpus

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
)

// ZipEntry is one member of a generated zip. The override fields produce
// malformed archives.
type ZipEntry struct {
	Name        string
	Data        []byte
	Deflate     bool
	CentralName string  // name in the central directory if different
	CRC         *uint32 // CRC written in both headers instead of the real one
	Flags       uint16
	AlignExtra  int  // pad data to this alignment with an 'FB' extra field (torch writes 64)
	OmitCentral bool // leave the entry out of the central directory
}

// ZipSpec describes a generated archive.
type ZipSpec struct {
	Entries []ZipEntry
	Zip64   bool // write ZIP64 extras and end records like torch.save
	Prepend []byte
	Append  []byte
}

// Zip writes the archive. Prepended data shifts every offset, as a
// concatenation would (the central directory is not adjusted).
func Zip(spec ZipSpec) []byte {
	var out bytes.Buffer
	type rec struct {
		e            ZipEntry
		off          int64
		crc          uint32
		csize, usize int64
		method       uint16
	}
	var recs []rec
	for _, e := range spec.Entries {
		data := e.Data
		method := uint16(0)
		if e.Deflate {
			var b bytes.Buffer
			w, _ := flate.NewWriter(&b, flate.BestCompression)
			w.Write(e.Data)
			w.Close()
			data = b.Bytes()
			method = 8
		}
		crc := crc32.ChecksumIEEE(e.Data)
		if e.CRC != nil {
			crc = *e.CRC
		}
		r := rec{e: e, off: int64(out.Len()), crc: crc, csize: int64(len(data)), usize: int64(len(e.Data)), method: method}
		var extra []byte
		c32, u32 := uint32(r.csize), uint32(r.usize)
		if spec.Zip64 {
			c32, u32 = 0xFFFFFFFF, 0xFFFFFFFF
			extra = binary.LittleEndian.AppendUint16(extra, 1)
			extra = binary.LittleEndian.AppendUint16(extra, 16)
			extra = binary.LittleEndian.AppendUint64(extra, uint64(r.usize))
			extra = binary.LittleEndian.AppendUint64(extra, uint64(r.csize))
		}
		if e.AlignExtra > 0 {
			pos := out.Len() + 30 + len(e.Name) + len(extra) + 4
			pad := (e.AlignExtra - pos%e.AlignExtra) % e.AlignExtra
			extra = binary.LittleEndian.AppendUint16(extra, 0x4246) // "FB", as torch writes
			extra = binary.LittleEndian.AppendUint16(extra, uint16(pad))
			extra = append(extra, make([]byte, pad)...)
		}
		h := make([]byte, 0, 30)
		h = binary.LittleEndian.AppendUint32(h, 0x04034b50)
		h = binary.LittleEndian.AppendUint16(h, 45)
		h = binary.LittleEndian.AppendUint16(h, e.Flags)
		h = binary.LittleEndian.AppendUint16(h, method)
		h = binary.LittleEndian.AppendUint16(h, 0)
		h = binary.LittleEndian.AppendUint16(h, 0x21)
		h = binary.LittleEndian.AppendUint32(h, crc)
		h = binary.LittleEndian.AppendUint32(h, c32)
		h = binary.LittleEndian.AppendUint32(h, u32)
		h = binary.LittleEndian.AppendUint16(h, uint16(len(e.Name)))
		h = binary.LittleEndian.AppendUint16(h, uint16(len(extra)))
		out.Write(h)
		out.WriteString(e.Name)
		out.Write(extra)
		out.Write(data)
		recs = append(recs, r)
	}
	cdStart := int64(out.Len())
	n := 0
	for _, r := range recs {
		if r.e.OmitCentral {
			continue
		}
		n++
		name := r.e.Name
		if r.e.CentralName != "" {
			name = r.e.CentralName
		}
		var extra []byte
		c32, u32, o32 := uint32(r.csize), uint32(r.usize), uint32(r.off)
		if spec.Zip64 {
			c32, u32, o32 = 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF
			extra = binary.LittleEndian.AppendUint16(extra, 1)
			extra = binary.LittleEndian.AppendUint16(extra, 24)
			extra = binary.LittleEndian.AppendUint64(extra, uint64(r.usize))
			extra = binary.LittleEndian.AppendUint64(extra, uint64(r.csize))
			extra = binary.LittleEndian.AppendUint64(extra, uint64(r.off))
		}
		h := make([]byte, 0, 46)
		h = binary.LittleEndian.AppendUint32(h, 0x02014b50)
		h = binary.LittleEndian.AppendUint16(h, 45)
		h = binary.LittleEndian.AppendUint16(h, 45)
		h = binary.LittleEndian.AppendUint16(h, r.e.Flags)
		h = binary.LittleEndian.AppendUint16(h, r.method)
		h = binary.LittleEndian.AppendUint16(h, 0)
		h = binary.LittleEndian.AppendUint16(h, 0x21)
		h = binary.LittleEndian.AppendUint32(h, r.crc)
		h = binary.LittleEndian.AppendUint32(h, c32)
		h = binary.LittleEndian.AppendUint32(h, u32)
		h = binary.LittleEndian.AppendUint16(h, uint16(len(name)))
		h = binary.LittleEndian.AppendUint16(h, uint16(len(extra)))
		h = binary.LittleEndian.AppendUint16(h, 0)
		h = binary.LittleEndian.AppendUint16(h, 0)
		h = binary.LittleEndian.AppendUint16(h, 0)
		h = binary.LittleEndian.AppendUint32(h, 0)
		h = binary.LittleEndian.AppendUint32(h, o32)
		out.Write(h)
		out.WriteString(name)
		out.Write(extra)
	}
	cdEnd := int64(out.Len())
	ents16, size32, off32 := uint16(n), uint32(cdEnd-cdStart), uint32(cdStart)
	if spec.Zip64 {
		z := make([]byte, 0, 76)
		z = binary.LittleEndian.AppendUint32(z, 0x06064b50)
		z = binary.LittleEndian.AppendUint64(z, 44)
		z = binary.LittleEndian.AppendUint16(z, 45)
		z = binary.LittleEndian.AppendUint16(z, 45)
		z = binary.LittleEndian.AppendUint32(z, 0)
		z = binary.LittleEndian.AppendUint32(z, 0)
		z = binary.LittleEndian.AppendUint64(z, uint64(n))
		z = binary.LittleEndian.AppendUint64(z, uint64(n))
		z = binary.LittleEndian.AppendUint64(z, uint64(cdEnd-cdStart))
		z = binary.LittleEndian.AppendUint64(z, uint64(cdStart))
		z = binary.LittleEndian.AppendUint32(z, 0x07064b50)
		z = binary.LittleEndian.AppendUint32(z, 0)
		z = binary.LittleEndian.AppendUint64(z, uint64(cdEnd))
		z = binary.LittleEndian.AppendUint32(z, 1)
		out.Write(z)
		ents16, size32, off32 = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
	}
	e := make([]byte, 0, 22)
	e = binary.LittleEndian.AppendUint32(e, 0x06054b50)
	e = binary.LittleEndian.AppendUint16(e, 0)
	e = binary.LittleEndian.AppendUint16(e, 0)
	e = binary.LittleEndian.AppendUint16(e, ents16)
	e = binary.LittleEndian.AppendUint16(e, ents16)
	e = binary.LittleEndian.AppendUint32(e, size32)
	e = binary.LittleEndian.AppendUint32(e, off32)
	e = binary.LittleEndian.AppendUint16(e, 0)
	out.Write(e)
	res := append(append([]byte(nil), spec.Prepend...), out.Bytes()...)
	return append(res, spec.Append...)
}

// TorchZipEntries returns the members torch.save (zip format) writes for a
// state dict: data.pkl, byteorder, data/<key> storages, version,
// .data/serialization_id; all stored and 64-byte aligned.
func TorchZipEntries(prefix string, tensors []TorchTensor, pkl []byte) []ZipEntry {
	if pkl == nil {
		pkl = StateDictPickle(tensors, 2)
	}
	es := []ZipEntry{
		{Name: prefix + "/data.pkl", Data: pkl, AlignExtra: 64},
		{Name: prefix + "/.format_version", Data: []byte("1"), AlignExtra: 64},
		{Name: prefix + "/.storage_alignment", Data: []byte("64"), AlignExtra: 64},
		{Name: prefix + "/byteorder", Data: []byte("little"), AlignExtra: 64},
	}
	for _, t := range tensors {
		d := make([]byte, t.Numel()*ElemSize(t.StorageType))
		for i := range d {
			d[i] = byte(i * 13)
		}
		es = append(es, ZipEntry{Name: prefix + "/data/" + t.Key, Data: d, AlignExtra: 64})
	}
	es = append(es,
		ZipEntry{Name: prefix + "/version", Data: []byte("3\n"), AlignExtra: 64},
		ZipEntry{Name: prefix + "/.data/serialization_id", Data: []byte("1234567890123456789012345678901234567890"), AlignExtra: 64})
	return es
}

// TorchZip builds a PyTorch zip checkpoint (ZIP64, like torch.save).
func TorchZip(tensors []TorchTensor) []byte {
	return Zip(ZipSpec{Entries: TorchZipEntries("archive", tensors, nil), Zip64: true})
}

// SevenZipWrap wraps payload in a 7z container (signature header followed by
// the payload as a "copy" packed stream), as in the nullifAI models.
func SevenZipWrap(payload []byte) []byte {
	h := []byte{'7', 'z', 0xBC, 0xAF, 0x27, 0x1C, 0, 4}
	start := make([]byte, 20)
	binary.LittleEndian.PutUint64(start[0:], uint64(len(payload)))
	binary.LittleEndian.PutUint64(start[8:], 0)
	binary.LittleEndian.PutUint32(start[16:], 0)
	h = binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(start))
	h = append(h, start...)
	return append(h, payload...)
}

// GzipMagicWrap returns gzip-compressed payload bytes.
func GzipMagicWrap(payload []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	w.Write(payload)
	w.Close()
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(payload)))
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(payload))))
	return b.Bytes()
}

// ---- torch.save layout (PyTorchStreamWriter over miniz) --------------------

// MinizRecord is one record as PyTorchStreamWriter::writeRecord hands it to
// miniz (mz_zip_writer_add_mem_ex_v2 with MZ_ZIP_FLAG_WRITE_ZIP64). The
// zero value of every knob after Data is what torch writes; the knobs
// produce hostile variants.
type MinizRecord struct {
	Name string // full name, archive folder included ("archive/data.pkl")
	Data []byte
	// Compress is writeRecord(compress=true): method 8 for records of more
	// than 3 bytes. The deflate bytes come from Go's compress/flate, not
	// miniz's tdefl, so they differ byte-wise from torch's output.
	Compress bool

	Zip64           bool    // write what miniz writes for a record of 4 GiB or more: local ZIP64 field, 8-byte descriptor sizes, saturated central sizes
	NoDescriptorSig bool    // omit the optional PK\x07\x08 descriptor signature
	DescriptorCRC   *uint32 // CRC-32 written in the descriptor
	DescriptorSize  *uint64 // compressed size written in the descriptor
	DescriptorUSize *uint64 // uncompressed size written in the descriptor
	NoDescriptor    bool    // set flag 3 but write no descriptor
	CentralCRC      *uint32 // CRC-32 written in the central directory
	CentralSize     *uint64 // compressed and uncompressed size written in the central directory
	CentralName     string  // name written in the central directory
	CentralOffset   *uint64 // local header offset written in the central directory
	OmitCentral     bool    // leave the record out of the central directory
	LocalCRC        *uint32 // CRC-32 written in the local header (torch writes 0)
	Flags           uint16  // extra general purpose flags ORed into both headers
	After           []byte  // bytes written after the record (data between members)
}

const kFieldAlignment = 64 // caffe2/serialize/inline_container.h

// torchPadding is detail::getPadding of inline_container.cc: the size of the
// "FB" extra field that aligns the record's data to 64 bytes, given the
// archive size before the record, the name length and the data size.
func torchPadding(cursor, nameLen, size uint64, zip64 bool) int {
	start := cursor + 30 + nameLen + 4
	if size >= 0xFFFFFFFF || cursor >= 0xFFFFFFFF || zip64 {
		start += 4
		if size >= 0xFFFFFFFF || zip64 {
			start += 16
		}
		if cursor >= 0xFFFFFFFF {
			start += 8
		}
	}
	pad := (kFieldAlignment - start%kFieldAlignment) % kFieldAlignment
	return int(pad)
}

// TorchSaveZip writes records exactly as torch.save's PyTorchStreamWriter
// does through miniz 3.0.2 (third_party/miniz-3.0.2): for each record a
// local header with version-needed 0 (20 if deflated), flags 0x0808 (bit 3
// data descriptor and bit 11 UTF-8; 0x0800 for an empty record, which gets
// no descriptor), time and date 0, CRC and sizes 0, the name, a ZIP64
// field for records of 4 GiB or more (or at offsets beyond 4 GiB), the
// "FB" padding field filled with 'Z' that aligns the data to 64 bytes, the
// data, and a PK\x07\x08 descriptor (4-byte sizes, 8-byte with a ZIP64
// field); then the central directory (version made-by and needed as in the
// local header, external attributes 0), the ZIP64 end record (made-by
// 0x031E, needed 0x002D), its locator and the end record, every counter
// saturated as MZ_MIN does.
func TorchSaveZip(records []MinizRecord) []byte {
	var out bytes.Buffer
	le16 := func(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
	le32 := func(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
	le64 := func(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
	sat := func(v uint64) uint32 { return uint32(min(v, 0xFFFFFFFF)) }
	type done struct {
		r            MinizRecord
		off          uint64
		crc          uint32
		csize, usize uint64
		method       uint16
		flags        uint16
		z64          bool
	}
	var recs []done
	for _, r := range records {
		off := uint64(out.Len())
		usize := uint64(len(r.Data))
		flags := uint16(0x0800) | r.Flags
		if usize > 0 {
			flags |= 0x0008
		}
		method := uint16(0)
		data := r.Data
		if r.Compress && usize > 3 {
			var b bytes.Buffer
			w, _ := flate.NewWriter(&b, flate.BestCompression)
			w.Write(r.Data)
			w.Close()
			data, method = b.Bytes(), 8
		}
		csize := uint64(len(data))
		crc := crc32.ChecksumIEEE(r.Data)
		big := usize >= 0xFFFFFFFF || r.Zip64
		z64 := big || off >= 0xFFFFFFFF
		var x64 []byte
		if z64 {
			var f []byte
			if big {
				f = le64(f, usize)
				f = le64(f, 0) // miniz writes comp_size before it is known
			}
			if off >= 0xFFFFFFFF {
				f = le64(f, off)
			}
			x64 = le16(le16(nil, 1), uint16(len(f)))
			x64 = append(x64, f...)
		}
		pad := torchPadding(off, uint64(len(r.Name)), usize, r.Zip64)
		fb := le16(append([]byte(nil), 'F', 'B'), uint16(pad))
		fb = append(fb, bytes.Repeat([]byte{'Z'}, pad)...)
		need := uint16(0)
		if method == 8 {
			need = 20
		}
		localCRC := uint32(0)
		if r.LocalCRC != nil {
			localCRC = *r.LocalCRC
		}
		h := le32(nil, 0x04034b50)
		h = le16(h, need)
		h = le16(h, flags)
		h = le16(h, method)
		h = le16(h, 0)
		h = le16(h, 0)
		h = le32(h, localCRC)
		h = le32(h, 0)
		h = le32(h, 0)
		h = le16(h, uint16(len(r.Name)))
		h = le16(h, uint16(len(x64)+len(fb)))
		out.Write(h)
		out.WriteString(r.Name)
		out.Write(x64)
		out.Write(fb)
		out.Write(data)
		if usize > 0 && !r.NoDescriptor {
			dcrc, dc, du := crc, csize, usize
			if r.DescriptorCRC != nil {
				dcrc = *r.DescriptorCRC
			}
			if r.DescriptorSize != nil {
				dc = *r.DescriptorSize
			}
			if r.DescriptorUSize != nil {
				du = *r.DescriptorUSize
			}
			var d []byte
			if !r.NoDescriptorSig {
				d = le32(d, 0x08074b50)
			}
			d = le32(d, dcrc)
			if z64 {
				d = le64(le64(d, dc), du)
			} else {
				d = le32(le32(d, uint32(dc)), uint32(du))
			}
			out.Write(d)
		}
		out.Write(r.After)
		recs = append(recs, done{r: r, off: off, crc: crc, csize: csize, usize: usize, method: method, flags: flags, z64: z64})
	}
	cdStart := uint64(out.Len())
	n := uint64(0)
	for _, d := range recs {
		if d.r.OmitCentral {
			continue
		}
		n++
		name := d.r.Name
		if d.r.CentralName != "" {
			name = d.r.CentralName
		}
		crc, csize, usize := d.crc, d.csize, d.usize
		if d.r.CentralCRC != nil {
			crc = *d.r.CentralCRC
		}
		if d.r.CentralSize != nil {
			csize, usize = *d.r.CentralSize, *d.r.CentralSize
		}
		big := usize >= 0xFFFFFFFF || d.r.Zip64
		var x64 []byte
		if big || d.off >= 0xFFFFFFFF {
			var f []byte
			if big {
				f = le64(le64(f, usize), csize)
			}
			if d.off >= 0xFFFFFFFF {
				f = le64(f, d.off)
			}
			x64 = le16(le16(nil, 1), uint16(len(f)))
			x64 = append(x64, f...)
		}
		c32, u32 := sat(csize), sat(usize)
		if big {
			c32, u32 = 0xFFFFFFFF, 0xFFFFFFFF
		}
		need := uint16(0)
		if d.method == 8 {
			need = 20
		}
		h := le32(nil, 0x02014b50)
		h = le16(h, 0) // version made by: miniz leaves it 0
		h = le16(h, need)
		h = le16(h, d.flags)
		h = le16(h, d.method)
		h = le16(h, 0)
		h = le16(h, 0)
		h = le32(h, crc)
		h = le32(h, c32)
		h = le32(h, u32)
		h = le16(h, uint16(len(name)))
		h = le16(h, uint16(len(x64)))
		h = le16(h, 0)
		h = le16(h, 0)
		h = le16(h, 0)
		h = le32(h, 0)
		lhoff := d.off
		if d.r.CentralOffset != nil {
			lhoff = *d.r.CentralOffset
		}
		h = le32(h, sat(lhoff))
		out.Write(h)
		out.WriteString(name)
		out.Write(x64)
	}
	cdEnd := uint64(out.Len())
	z := le32(nil, 0x06064b50)
	z = le64(z, 44)
	z = le16(z, 0x031E)
	z = le16(z, 0x002D)
	z = le32(z, 0)
	z = le32(z, 0)
	z = le64(z, n)
	z = le64(z, n)
	z = le64(z, cdEnd-cdStart)
	z = le64(z, cdStart)
	z = le32(z, 0x07064b50)
	z = le32(z, 0)
	z = le64(z, cdEnd)
	z = le32(z, 1)
	z = le32(z, 0x06054b50)
	z = le16(z, 0)
	z = le16(z, 0)
	z = le16(z, uint16(min(n, 0xFFFF)))
	z = le16(z, uint16(min(n, 0xFFFF)))
	z = le32(z, sat(cdEnd-cdStart))
	z = le32(z, sat(cdStart))
	z = le16(z, 0)
	out.Write(z)
	return out.Bytes()
}

// TorchStorageBytes returns deterministic bytes for a tensor's storage.
func TorchStorageBytes(t TorchTensor) []byte {
	d := make([]byte, t.Numel()*ElemSize(t.StorageType))
	for i := range d {
		d[i] = byte(i * 13)
	}
	return d
}

// TorchSave2Records returns the records torch 2.x's torch.save writes for
// a state dict, in its order (as in modelscan's unsafe_zip_pytorch.pt):
// data.pkl, byteorder, data/<key> per storage, version, then
// .data/serialization_id (written by writeEndOfFile). pkl nil means
// StateDictPickle(tensors, 2); storage nil means TorchStorageBytes.
func TorchSave2Records(prefix string, tensors []TorchTensor, pkl []byte, storage func(TorchTensor) []byte) []MinizRecord {
	if pkl == nil {
		pkl = StateDictPickle(tensors, 2)
	}
	if storage == nil {
		storage = TorchStorageBytes
	}
	rs := []MinizRecord{
		{Name: prefix + "/data.pkl", Data: pkl},
		{Name: prefix + "/byteorder", Data: []byte("little")},
	}
	for _, t := range tensors {
		rs = append(rs, MinizRecord{Name: prefix + "/data/" + t.Key, Data: storage(t)})
	}
	return append(rs,
		MinizRecord{Name: prefix + "/version", Data: []byte("3\n")},
		MinizRecord{Name: prefix + "/.data/serialization_id", Data: []byte("0361162702521463308600000021836735972839")})
}

// TorchSave1Records returns the records torch 1.x's torch.save wrote (as
// in picklescan's new_pytorch_model.bin): data.pkl, data/<key>..., version.
func TorchSave1Records(prefix string, tensors []TorchTensor, pkl []byte) []MinizRecord {
	if pkl == nil {
		pkl = StateDictPickle(tensors, 2)
	}
	rs := []MinizRecord{{Name: prefix + "/data.pkl", Data: pkl}}
	for _, t := range tensors {
		rs = append(rs, MinizRecord{Name: prefix + "/data/" + t.Key, Data: TorchStorageBytes(t)})
	}
	return append(rs, MinizRecord{Name: prefix + "/version", Data: []byte("3\n")})
}

// TorchScriptRecords returns the records torch.jit.save (2.x) writes for a
// scripted module holding tensors, in ScriptModuleSerializer::serialize's
// order (torch/csrc/jit/serialization/export_module.cpp): data.pkl and its
// storages under data/, the code/ tree (one .py per class qualifier, each
// with its .debug_pkl source map), constants.pkl (the tuple of tensor
// constants, empty here), then what PyTorchStreamWriter adds (version,
// .data/version, byteorder, .data/serialization_id). data.pkl is the
// state-dict pickle our encoder writes (pkl nil) and constants nil is an
// empty tuple pickled at protocol 2 (what torch writes for a module
// without tensor constants).
func TorchScriptRecords(prefix string, tensors []TorchTensor, pkl, constants []byte) []MinizRecord {
	if pkl == nil {
		pkl = StateDictPickle(tensors, 2)
	}
	if constants == nil {
		constants = NewPickler(2).Tuple(0).Stop()
	}
	rs := []MinizRecord{{Name: prefix + "/data.pkl", Data: pkl}}
	for _, t := range tensors {
		rs = append(rs, MinizRecord{Name: prefix + "/data/" + t.Key, Data: TorchStorageBytes(t)})
	}
	code := "class Net(Module):\n  __parameters__ = [\"weight\", ]\n  __buffers__ = []\n  weight : Tensor\n" +
		"  def forward(self: __torch__.Net,\n    x: Tensor) -> Tensor:\n    return torch.matmul(x, self.weight)\n"
	debug := NewPickler(2).Int(0).Tuple(1).Stop() // (offset,) source-range table, no imports
	return append(rs,
		MinizRecord{Name: prefix + "/code/__torch__.py", Data: []byte(code), Compress: true},
		MinizRecord{Name: prefix + "/code/__torch__.py.debug_pkl", Data: debug},
		MinizRecord{Name: prefix + "/constants.pkl", Data: constants},
		MinizRecord{Name: prefix + "/version", Data: []byte("3\n")},
		MinizRecord{Name: prefix + "/.data/version", Data: []byte("3\n")},
		MinizRecord{Name: prefix + "/byteorder", Data: []byte("little")},
		MinizRecord{Name: prefix + "/.data/serialization_id", Data: []byte("1530215418330436425600000021836735972839")})
}
