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
