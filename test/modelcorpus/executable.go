package modelcorpus

import (
	"encoding/binary"
	"strings"
)

// APE is the prologue of an Actually Portable Executable as Cosmopolitan's
// ape/specification.md lays it out (what llamafile and cosmocc binaries
// start with): magic ("MZqFpD='" for a fat APE, "jartsr='" Unix-only,
// "APEDBG='" a debug build) opening a DOS header that is also a shell
// assignment, e_lfanew at 0x3c, then the shell script that re-executes the
// file, followed by filler.
func APE(magic string) []byte {
	h := []byte(magic + "\n\x00\x00\x00\x00\x10\x00\xf8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	h = append(h, make([]byte, 0x40-len(h))...)
	binary.LittleEndian.PutUint32(h[0x3c:], 0x80)
	h = append(h, []byte("'\n#'\"\nexec 7<> \"$(command -v \"$0\")\" || exit 121\n")...)
	return append(h, make([]byte, 300)...)
}

// SafetensorsHeaderLen lays out a safetensors file (8-byte little-endian
// header length, the JSON header padded with spaces to exactly hlen bytes,
// zeroed tensor data) with a header length the caller chooses: 0x5A4D
// makes the file start "MZ\0\0\0\0\0\0{", 0x2123 "#!\0\0...". The format
// allows any length; writers that pad to 8 bytes never produce these.
func SafetensorsHeaderLen(header string, dataLen uint64, hlen int) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(hlen))
	out = append(out, header+strings.Repeat(" ", hlen-len(header))...)
	return append(out, make([]byte, dataLen)...)
}
