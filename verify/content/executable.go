package content

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// FormatExecutable is native code or a script: ELF, PE, Mach-O, Java
// class files, Actually Portable Executables (llamafile) and shebang
// scripts. A model rule never serves one disguised as a model, config or
// data file (no policy key changes that); a shebang script declared as
// code (a code media type or a code file name) is code and follows
// denyCodeLayers like any *.py or *.sh file.
const FormatExecutable = "executable"

// APE prologues (Cosmopolitan ape/specification.md): a fat APE starts
// "MZqFpD='" (a DOS header that is also a shell assignment), a Unix-only
// one "jartsr='", a debug build "APEDBG='". llamafile is an APE.
var apeMagics = [][]byte{[]byte("MZqFpD='"), []byte("jartsr='"), []byte("APEDBG='")}

// sniffExecutable names the executable h starts ("an ELF executable", ...)
// or returns "". It decides by structure, not by two bytes alone where a
// model file can start the same way: "MZ" counts when the PE signature is
// at e_lfanew inside the window (a bare "MZ" is judged by sniffMZ after
// safetensors, whose header length 0x5A4D is "MZ\0\0..."), "#!" only
// when the first line is a printable interpreter path.
func sniffExecutable(h []byte) string {
	for _, m := range apeMagics {
		if bytes.HasPrefix(h, m) {
			return "an Actually Portable Executable (llamafile)"
		}
	}
	switch {
	case len(h) >= 7 && string(h[:4]) == "\x7fELF" && (h[4] == 1 || h[4] == 2) && (h[5] == 1 || h[5] == 2) && h[6] == 1:
		return "an ELF executable"
	case len(h) >= 64 && h[0] == 'M' && h[1] == 'Z':
		if l := int64(binary.LittleEndian.Uint32(h[0x3c:])); l >= 0x40 && l+4 <= int64(len(h)) && string(h[l:l+4]) == "PE\x00\x00" {
			return "a PE (Windows) executable"
		}
	case len(h) >= 4:
		switch binary.BigEndian.Uint32(h) {
		case 0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe:
			return "a Mach-O executable"
		case 0xcafebabe:
			// fat Mach-O: nfat_arch (a handful); a class file: minor and
			// major version, major >= 45.
			if len(h) >= 8 && binary.BigEndian.Uint32(h[4:]) < 45 {
				return "a Mach-O universal (fat) executable"
			}
			return "a Java class file (JVM bytecode; same magic as a Mach-O fat binary)"
		}
	}
	if s := shebangLine(h); s != "" {
		return "a shebang script (" + s + ")"
	}
	return ""
}

// sniffMZ is the DOS/PE test for a window that is neither safetensors nor
// a PE header found above: a binary file starting "MZ" is a DOS or Windows
// executable (its PE header past the window) and never a model; text that
// starts with the letters "MZ" is text.
func sniffMZ(h []byte) string {
	if len(h) >= 2 && h[0] == 'M' && h[1] == 'Z' && !isText(h) {
		return "a PE (Windows) executable"
	}
	return ""
}

// shebangLine returns the interpreter line of a script ("#!/bin/sh ..."),
// shortened, or "" when h does not start one: "#!", optional blanks, an
// absolute path, and a first line of printable ASCII ending in a newline
// or the end of the window.
func shebangLine(h []byte) string {
	if len(h) < 3 || h[0] != '#' || h[1] != '!' {
		return ""
	}
	i := 2
	for i < len(h) && (h[i] == ' ' || h[i] == '\t') {
		i++
	}
	if i >= len(h) || h[i] != '/' {
		return ""
	}
	end := bytes.IndexByte(h, '\n')
	if end < 0 {
		end = len(h)
	}
	line := bytes.TrimRight(h[:end], "\r")
	for _, c := range line {
		if c < 0x20 && c != '\t' || c >= 0x7f {
			return ""
		}
	}
	if len(line) > 40 {
		return string(line[:40]) + " ..."
	}
	return string(line)
}

// isCodeLayer reports whether a layer is declared as code.
func isCodeLayer(k layerKind, mediaType string) bool {
	return k == kindCode || strings.Contains(mediaType, ".code.") || isCodeMediaType(mediaType)
}

// checkExecutable refuses an executable layer or member. A shebang script
// declared as code (a code layer, a member of one, or a code file name such
// as run.sh) returns nil: it is code, and denyCodeLayers (checked on the
// descriptor and on member names) decides it as it decides *.py files. One
// declared as a document (README, license: text layers) is text.
func (a *autoInspector) checkExecutable(h []byte, kind layerKind) *Finding {
	what := sniffExecutable(h)
	if what == "" {
		what = sniffMZ(h)
	}
	if shebangLine(h) != "" && (isCodeLayer(kind, a.mediaType) || a.opts.codeLayer || codeFileExt(a.title) != "" || kind == kindText || isDocName(a.title)) {
		// Declared code, or a document (a README quoting a script is
		// text no loader runs): not disguised.
		return nil
	}
	return newFinding(FormatExecutable, 0, "bytes are %s; a model rule never serves executables or scripts disguised as model, config or data files (no policy key allows them; a script belongs in a code layer or a code file name, under denyCodeLayers)", what)
}

// isDocName reports a document's file name (README, LICENSE, *.md, *.txt,
// *.rst): an archive member a loader reads as text, if at all.
func isDocName(title string) bool {
	name := strings.ToLower(title[strings.LastIndexAny(title, "/\\")+1:])
	switch {
	case strings.HasPrefix(name, "readme"), strings.HasPrefix(name, "license"), strings.HasPrefix(name, "licence"), strings.HasPrefix(name, "notice"):
		return true
	}
	for _, ext := range []string{".md", ".txt", ".rst"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}
