package content

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// sniffLen is how many leading bytes are collected before the format is
// decided (less if the blob is shorter).
const sniffLen = 4096

var (
	magic7z    = []byte{'7', 'z', 0xBC, 0xAF, 0x27, 0x1C}
	magicRar   = []byte("Rar!\x1a\x07")
	magicXz    = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xB5, 0x2F, 0xFD}
	magicGzip  = []byte{0x1F, 0x8B}
	magicZip   = []byte("PK\x03\x04")
	magicEmpty = []byte("PK\x05\x06")
	magicEOCD  = magicEmpty
)

// sniffArchive recognises archive and compression wrappers by magic.
func sniffArchive(h []byte) string {
	switch {
	case bytes.HasPrefix(h, magic7z):
		return Format7z
	case bytes.HasPrefix(h, magicRar):
		return FormatRar
	case bytes.HasPrefix(h, magicXz):
		return FormatXz
	case bytes.HasPrefix(h, magicZstd):
		return FormatZstd
	case bytes.HasPrefix(h, magicGzip):
		return FormatGzip
	case len(h) >= 4 && h[0] == 'B' && h[1] == 'Z' && h[2] == 'h' && h[3] >= '1' && h[3] <= '9':
		return FormatBzip2
	case bytes.HasPrefix(h, magicZip) || bytes.HasPrefix(h, magicEmpty):
		return FormatZip
	case len(h) >= 262 && string(h[257:262]) == "ustar":
		return FormatTar
	}
	return ""
}

// Sniff decides a blob's format from its first bytes (up to 4096) and its
// total size (-1 if unknown). It never trusts names or media types.
func Sniff(h []byte, size int64) string {
	if sniffExecutable(h) != "" {
		return FormatExecutable
	}
	if len(h) >= 4 && string(h[:4]) == "GGUF" {
		return FormatGGUF
	}
	if bytes.HasPrefix(h, magicNPY) {
		return FormatNPY
	}
	if bytes.HasPrefix(h, magicHDF5) {
		return FormatHDF5
	}
	if len(h) >= 8 && string(h[4:8]) == "TFL3" {
		return FormatTFLite
	}
	if a := sniffArchive(h); a != "" {
		return a
	}
	// Safetensors before pickles: a header length of 128 + 256k bytes
	// (k <= 5; writers pad to 8, so 640, 896, ... occur) starts the file
	// 0x80 0x0k, a pickle's PROTO. Below 64 KiB bytes 2..7 are zero, an
	// invalid opcode; a longer length's bytes 2.. can be opcodes that
	// continue into the header (a polyglot), so the guard beside the
	// safetensors validator walks the file as a pickle too (polyglot.go).
	if sniffSafetensors(h, size) {
		return FormatSafetensors
	}
	if len(h) >= 2 && h[0] == 0x80 && h[1] <= 5 {
		if len(h) >= 15 && h[1] == 2 && h[2] == 0x8a && h[3] == 10 && string(h[4:14]) == legacyTorchMagic && h[14] == '.' {
			return FormatLegacyTorch
		}
		return FormatPickle
	}
	if sniffMZ(h) != "" {
		return FormatExecutable
	}
	if sniffONNX(h) {
		return FormatONNX
	}
	if isImage(h) {
		return FormatImage
	}
	if isProto0Global(h) {
		return FormatPickle
	}
	if looksJSON(h) && isText(h) {
		return FormatJSON
	}
	if isText(h) {
		return FormatText
	}
	if hdf5Userblock(h) > 0 {
		return FormatHDF5 // refused by the validator: a userblock hides bytes
	}
	return FormatBinary
}

// sniffSafetensors decides safetensors by structure, not by one byte: the
// little-endian header length N must fit the blob (8+N <= size; at most the
// format's 100 MB limit when the size is unknown) and the header must start
// a JSON object ('{', after the whitespace the reference also accepts).
// Text that happens to have '{' at byte 8 ("[INST] {{ ...") has an N of
// quintillions and is not safetensors.
func sniffSafetensors(h []byte, size int64) bool {
	if len(h) < 9 {
		return false
	}
	n := binary.LittleEndian.Uint64(h)
	if n < 2 || n > SafetensorsHardMaxHeader {
		return false
	}
	if size >= 0 && n+8 > uint64(size) {
		// A binary length followed by '{' is a safetensors file whose
		// header does not fit: the validator says so precisely. Text
		// never has a length of at most 100 MB in its first 8 bytes.
		return h[8] == '{' && !isText(h[:8])
	}
	i := 8
	for i < len(h) && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r') {
		i++
	}
	// A whitespace run that fills the sniff window still counts (the
	// validator then refuses it precisely).
	return i < len(h) && h[i] == '{' || i == len(h) && uint64(len(h)) < n+8
}

var (
	magicPNG  = []byte("\x89PNG\r\n\x1a\n")
	magicJPEG = []byte{0xFF, 0xD8, 0xFF}
	magicGIF7 = []byte("GIF87a")
	magicGIF9 = []byte("GIF89a")
)

// isImage recognises inert image files (sample images in model
// repositories) by magic.
func isImage(h []byte) bool {
	return bytes.HasPrefix(h, magicPNG) || bytes.HasPrefix(h, magicJPEG) || bytes.HasPrefix(h, magicGIF7) ||
		bytes.HasPrefix(h, magicGIF9) || len(h) >= 12 && string(h[:4]) == "RIFF" && string(h[8:12]) == "WEBP"
}

// looksJSON reports whether text starts a JSON object or array: '{'
// followed by a key or '}', '[' followed by a value or ']'. Templates
// ("{{ .Prompt }}", "{%- if ... %}", "[INST] {{ ... }}") do not.
func looksJSON(h []byte) bool {
	t := bytes.TrimLeft(h, " \t\r\n")
	if len(t) == 0 || t[0] != '{' && t[0] != '[' {
		return false
	}
	u := bytes.TrimLeft(t[1:], " \t\r\n")
	if len(u) == 0 {
		return true // decided by the JSON parser
	}
	if t[0] == '{' {
		return u[0] == '"' || u[0] == '}'
	}
	return bytes.IndexByte([]byte("\"{[]-0123456789tfn"), u[0]) >= 0
}

// isProto0Global matches a protocol 0/1 pickle starting with GLOBAL or INST
// ("cmodule\nname\n").
func isProto0Global(h []byte) bool {
	if len(h) < 4 || (h[0] != 'c' && h[0] != 'i') {
		return false
	}
	nl := 0
	for _, c := range h[1:] {
		if c == '\n' {
			nl++
			if nl == 2 {
				return true
			}
			continue
		}
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return false
}

func isText(h []byte) bool {
	// allow a multi-byte rune cut at the end of the sniff window
	for i := 0; i < len(h); {
		c := h[i]
		if c < 0x80 {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, w := utf8.DecodeRune(h[i:])
		if r == utf8.RuneError && w <= 1 {
			return len(h)-i < 4 && len(h) == sniffLen
		}
		i += w
	}
	return true
}

func describe(format string) string {
	switch format {
	case FormatSafetensors:
		return "safetensors"
	case FormatGGUF:
		return "a GGUF file"
	case FormatPickle:
		return "a pickle"
	case FormatLegacyTorch:
		return "a legacy torch file (concatenated pickles)"
	case FormatZip:
		return "a zip archive"
	case Format7z, FormatRar, FormatTar:
		return "a " + format + " archive"
	case FormatGzip, FormatZstd, FormatXz, FormatBzip2:
		return format + "-compressed data"
	case FormatJSON:
		return "JSON"
	case FormatText:
		return "text"
	case FormatImage:
		return "an image"
	case FormatNPY:
		return "a NumPy .npy array"
	case FormatJoblib:
		return "a joblib file"
	case FormatTemplate:
		return "a template"
	case FormatYAML:
		return "YAML"
	case FormatExecutable:
		return "an executable"
	case FormatONNX:
		return "an ONNX model"
	case FormatHDF5:
		return "an HDF5 file"
	case FormatTensorFlow:
		return "a TensorFlow graph or SavedModel file"
	case FormatTFLite:
		return "a TFLite model"
	}
	return "unrecognised binary data"
}

// declaredArchive reports whether the layer media type announces exactly
// this archive packaging (a tar layer carrying tar bytes, +gzip carrying
// gzip, +zstd carrying zstd).
func declaredArchive(mediaType, f string) bool {
	switch f {
	case FormatTar:
		return strings.Contains(mediaType, ".tar")
	case FormatGzip:
		return strings.Contains(mediaType, ".tar") && strings.HasSuffix(mediaType, "+gzip")
	case FormatZstd:
		return strings.Contains(mediaType, ".tar") && strings.HasSuffix(mediaType, "+zstd")
	}
	return false
}

func isArchiveFormat(f string) bool {
	switch f {
	case Format7z, FormatRar, FormatTar, FormatGzip, FormatZstd, FormatXz, FormatBzip2:
		return true
	}
	return false
}

// Inspector returned by NewInspector: it sniffs the format from the first
// bytes and dispatches to the format's validator.
type autoInspector struct {
	opts      Options
	mediaType string
	title     string
	size      int64
	head      []byte
	inner     Inspector
	format    string
	seen      int64
	err       error
	guard     layerGuard // polyglot checks beside the validator (polyglot.go)
}

// NewInspector returns the inspector for one layer blob. mediaType is the
// layer's declared media type ("" if none), title its file name annotation
// (org.opencontainers.image.title or org.cncf.model.filepath; "" if none),
// size the descriptor size (-1 if unknown). The format is decided from the
// bytes; the media type only restricts which formats are acceptable. A
// *Finding error means the layer is refused before any byte is read.
func NewInspector(opts Options, mediaType, title string, size int64) (Inspector, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if f := checkBlob(opts, mediaType, title); f != nil {
		return nil, f
	}
	return &autoInspector{opts: opts, mediaType: mediaType, title: title, size: size}, nil
}

// checkLayer applies the rules that need only the descriptor of a layer.
func checkLayer(opts Options, mediaType, title string) *Finding {
	if !opts.layerAllowed(mediaType) {
		return newFinding(FormatMediaType, -1, "layer media type %q is not allowed by this rule", mediaType)
	}
	return checkCodeName(opts, mediaType, title)
}

// checkBlob is checkLayer for a blob inspected as declared: every manifest
// that declares it was decided with the role of each descriptor
// (CheckManifest: layers by the rule's layer types, the config by its
// config types), so a blob declared as a config (which clients such as
// docker, containerd and crane fetch) is allowed here by a config type.
func checkBlob(opts Options, mediaType, title string) *Finding {
	if !opts.layerAllowed(mediaType) && !opts.configAllowed(mediaType) {
		return newFinding(FormatMediaType, -1, "layer media type %q is not allowed by this rule", mediaType)
	}
	return checkCodeName(opts, mediaType, title)
}

// checkCodeName applies denyCodeLayers to a descriptor.
func checkCodeName(opts Options, mediaType, title string) *Finding {
	if opts.DenyCodeLayers {
		if isCodeMediaType(mediaType) {
			return newFinding(FormatMediaType, -1, "code layer %q is denied (denyCodeLayers)", mediaType)
		}
		if ext := codeFileExt(title); ext != "" {
			return newFinding(FormatMediaType, -1, "file %q is code (%s) and is denied (denyCodeLayers)", title, ext)
		}
	}
	return nil
}

func (a *autoInspector) Format() string { return a.format }

func (a *autoInspector) HeaderDone() bool { return a.inner != nil && a.inner.HeaderDone() }

// Releasable is the validator's (0 before the format is decided).
func (a *autoInspector) Releasable() int64 {
	if a.err != nil || a.inner == nil {
		return 0
	}
	return ReleasableOf(a.inner)
}

func (a *autoInspector) Tensors() []TensorInfo {
	if tl, ok := a.inner.(TensorLister); ok {
		return tl.Tensors()
	}
	return nil
}

// References lists the load-time references of a config (and of the
// configs inside an archive), named by the file they were declared as.
func (a *autoInspector) References() []Reference {
	rl, ok := a.inner.(ReferenceLister)
	if !ok {
		return nil
	}
	refs := rl.References()
	if len(refs) == 0 {
		return nil
	}
	out := make([]Reference, len(refs))
	for i, r := range refs {
		if r.File == "" {
			r.File = a.title
		}
		out[i] = r
	}
	return out
}

// Globals lists pickle imports seen (scan mode).
func (a *autoInspector) Globals() []string {
	if g, ok := a.inner.(interface{ Globals() []string }); ok {
		return g.Globals()
	}
	return nil
}

func (a *autoInspector) Write(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	n := len(p)
	a.seen += int64(n)
	if a.inner == nil {
		a.head = append(a.head, p...)
		if len(a.head) < sniffLen && (a.size < 0 || a.seen < a.size) {
			return n, nil
		}
		if err := a.decide(); err != nil {
			a.err = err
			return 0, err
		}
		h := a.head
		a.head = nil
		if err := a.feed(h); err != nil {
			return 0, err
		}
		return n, nil
	}
	if err := a.feed(p); err != nil {
		return 0, err
	}
	return n, nil
}

// feed passes bytes to the validator and the guard beside it.
func (a *autoInspector) feed(p []byte) error {
	if _, err := a.inner.Write(p); err != nil {
		a.err = err
		return err
	}
	if err := a.guard.Write(p); err != nil {
		a.err = err
		return err
	}
	return nil
}

func (a *autoInspector) Close() error {
	if a.err != nil {
		return a.err
	}
	if a.inner == nil {
		if err := a.decide(); err != nil {
			a.err = err
			return err
		}
		if len(a.head) > 0 {
			if err := a.feed(a.head); err != nil {
				return err
			}
		}
		a.head = nil
	}
	if a.err = a.inner.Close(); a.err != nil {
		return a.err
	}
	a.err = a.guard.Close()
	return a.err
}

func (a *autoInspector) decide() error {
	h := a.head
	if len(h) > sniffLen {
		h = h[:sniffLen]
	}
	f := Sniff(h, a.size)
	kind, known := knownKind(a.mediaType)
	if f == FormatJSON && (isDatasetLayer(kind, a.mediaType) && !isLoaderConfigName(a.title) || isJSONLinesName(a.title)) {
		// JSON Lines (datasets): one JSON document per line is text to
		// the gate, not a config. A file a loader reads as its config
		// (config.json, adapter_config.json, ...) is one whatever layer
		// declares it: oras and the ModelPack unpackers write it under
		// that name.
		f = FormatText
	}
	a.format = f
	if len(a.head) == 0 {
		return newFinding(FormatMediaType, 0, "empty blob")
	}
	if r := tfUnparsedReason(a.title); r != "" {
		return newFinding(FormatTensorFlow, 0, "%s", r)
	}
	if (f == FormatBinary || f == FormatText || f == FormatONNX || f == FormatExecutable && shebangLine(h) != "") && bytes.Contains(h[1:], magicZip) {
		i := bytes.Index(h, magicZip)
		return newFinding(FormatZip, int64(i), "%d bytes of data before the first zip local file header (prepended data or polyglot)", i)
	}
	if f == FormatExecutable && (kind == kindTensorBlob || a.opts.AllowUnknown || a.opts.binaryByNature || binaryByNature(kind, a.mediaType)) && sniffExecutable(h) == "" {
		// Raw data (fp16 201.6 is "MZ", one file in 65,536 starts so) where
		// raw data is served: only a PE signature, not the two letters,
		// makes it an executable.
		f = FormatBinary
		a.format = f
	}
	if f == FormatONNX && (!isONNXName(a.title) || known && kind != kindAny && !slices.Contains(formatsFor[kind], FormatONNX)) {
		// Only a file named *.onnx is walked as ONNX: other protobufs start
		// the same way (a TensorFlow saved_model.pb, a Core ML model: field
		// 1 a small varint, field 2 a message) and the ONNX walker would
		// serve their ops unread. Bytes that merely start like a ModelProto
		// in a layer that never holds ONNX (raw tensor data, a dataset, a
		// config) are judged as before: binary.
		f = FormatBinary
		a.format = f
	}
	if f == FormatHDF5 && (a.opts.binaryByNature || binaryByNature(kind, a.mediaType)) {
		// HDF5 datasets (and tensor or code layers) are data, served as
		// unrecognised binary was before HDF5 was read.
		f = FormatBinary
		a.format = f
	}
	if f == FormatExecutable {
		if fe := a.checkExecutable(h, kind); fe != nil {
			return fe
		}
		f = FormatText // a script declared as code: code rules apply
		a.format = f
	}
	if isTFGraphName(a.title) && f != FormatBinary && f != FormatText {
		// TensorFlow parses a *.pb as protobuf whatever its first bytes
		// say: one that sniffs as another format (a TFLite header, a zip)
		// is a polyglot the other format's validator would judge instead.
		return newFinding(FormatTensorFlow, 0, "file named %s is read by TensorFlow as a protobuf but its bytes are %s (polyglot); no policy key admits it", path.Base(a.title), describe(f))
	}
	if known && kind != kindAny {
		ok := false
		for _, g := range formatsFor[kind] {
			if g == f {
				ok = true
			}
		}
		if ok && kind == kindArchive && !declaredArchive(a.mediaType, f) {
			ok = false
		}
		if kind == kindWeights && (f == FormatTar || f == FormatGzip) {
			ok = true // a NeMo .nemo archive (archiveProbe)
		}
		if !ok {
			return newFinding(FormatMediaType, 0, "declared %s but bytes are %s", a.mediaType, describe(f))
		}
	}
	dialect, isTmpl := templateDialect(a.mediaType, a.title)
	// The format the layer is judged as (for formats.allow).
	judged := f
	tfKind := "" // "graph" or "data" for the files of a TensorFlow model
	switch {
	case (f == FormatText || f == FormatJSON) && isTmpl:
		judged = FormatTemplate
	case f == FormatText && isYAMLName(a.title):
		judged = FormatYAML
	case f == FormatBinary && len(h) > 0 && h[0] == 0x0a && isSentencePieceName(a.title):
		judged = FormatSentencePiece
	case f == FormatBinary && isONNXName(a.title):
		// An ONNX file whose first field is not ir_version: the name
		// decides, the walker then checks every byte strictly.
		judged, a.format = FormatONNX, FormatONNX
	case (f == FormatBinary || f == FormatText) && isTFGraphName(a.title):
		// Protobuf has no magic: TensorFlow loads *.pb files by name (a
		// SavedModel's saved_model.pb, a frozen graph), so the name
		// decides which message the walker parses; it checks every byte.
		judged, a.format, tfKind = FormatTensorFlow, FormatTensorFlow, "graph"
	case (f == FormatBinary || f == FormatText || f == FormatPickle || f == FormatLegacyTorch) && isTFVariablesName(a.title):
		// A SavedModel's variables checkpoint: raw tensor data and its
		// table of contents, which TensorFlow reads as data.
		judged, a.format, tfKind = FormatTensorFlow, FormatTensorFlow, "data"
	}
	if !a.opts.formatAllowed(judged) {
		return newFinding(FormatMediaType, 0, "bytes are %s, which this rule's content.formats.allow (%s) does not list",
			describe(judged), strings.Join(a.opts.AllowFormats, ", "))
	}
	if binaryByNature(kind, a.mediaType) {
		a.opts.binaryByNature = true // for the members of an archive layer
	}
	if isCodeLayer(kind, a.mediaType) {
		a.opts.codeLayer = true
	}
	if judged == FormatBinary && !a.opts.AllowUnknown && !a.opts.binaryByNature {
		return newFinding(FormatBinary, 0, "bytes match no format pullgate knows (safetensors, GGUF, pickle, zip, NumPy, JSON, text, ...); "+
			"a model rule refuses content it cannot inspect (content.formats.unknown: allow serves it uninspected, unsafe)")
	}
	mode := a.opts.pickleMode()
	switch {
	case tfKind == "graph":
		a.inner = NewTensorFlowInspector(a.opts, a.title, a.size)
	case tfKind == "data":
		a.inner = newOpaqueInspector(a.opts, a.size, FormatBinary)
	case f == FormatTFLite:
		a.inner = NewTFLiteInspector(a.opts, a.size)
	case f == FormatSafetensors:
		a.inner = NewSafetensorsInspector(a.opts, a.size)
	case f == FormatGGUF:
		a.inner = NewGGUFInspector(a.opts, a.size)
	case f == FormatNPY:
		a.inner = NewNPYInspector(a.opts, a.size)
	case judged == FormatONNX:
		a.inner = NewONNXInspector(a.opts, a.size)
	case f == FormatHDF5:
		a.inner = NewHDF5Inspector(a.opts, a.size)
	case isJoblibName(a.title):
		// joblib.dump files: a pickle with raw array blocks, possibly
		// compressed as a whole; bytes cannot tell them from a pickle.
		if mode != PickleScan {
			return newFinding(FormatJoblib, 0, "content is a joblib file (a pickle); pickle content is denied by policy (pickle: deny)")
		}
		a.inner = NewJoblibInspector(a.opts, a.size)
	case f == FormatPickle || f == FormatLegacyTorch:
		if mode != PickleScan {
			return newFinding(f, 0, "content is %s; pickle content is denied by policy (pickle: deny); publish safetensors instead", describe(f))
		}
		if f == FormatPickle {
			a.inner = NewPickleInspector(a.opts, a.size)
		} else {
			a.inner = NewLegacyTorchInspector(a.opts, a.size)
		}
	case f == FormatZip:
		a.inner = NewZipInspector(a.opts, a.size)
	case isArchiveFormat(f):
		if !declaredArchive(a.mediaType, f) && !a.opts.AllowArchives && f != FormatTar && f != FormatGzip {
			return newFinding(f, 0, "%s wraps the layer content; archives are not inspected and are denied unless the rule allows archives", strings.TrimPrefix(describe(f), "a "))
		}
		switch {
		case (f == FormatTar || f == FormatGzip && (!a.opts.AllowArchives || known && kind == kindWeights)) && !declaredArchive(a.mediaType, f):
			// A NeMo .nemo (tar or tar+gzip) in a weight layer or under
			// its own name: validated as a tar, refused at Close unless it
			// is a NeMo archive or the rule allows archives.
			if a.opts.archiveDepth >= maxArchiveDepth {
				return newFinding(f, 0, "%s nested in %d tar archives; at most %d levels are inspected", strings.TrimPrefix(describe(f), "a "), a.opts.archiveDepth, maxArchiveDepth)
			}
			var notIt *Finding
			switch {
			case known && kind == kindWeights:
				notIt = newFinding(FormatMediaType, 0, "declared %s but bytes are %s (and not a NeMo archive: no model_config.yaml at its root)", a.mediaType, describe(f))
			case !a.opts.AllowArchives:
				notIt = newFinding(f, 0, "%s wraps the layer content and is not a NeMo archive (no model_config.yaml at its root); archives are not inspected and are denied unless the rule allows archives", strings.TrimPrefix(describe(f), "a "))
			}
			a.inner = newArchiveProbe(a.opts, a.size, f, notIt)
		case f == FormatTar:
			a.inner = NewTarInspector(a.opts, a.size)
		case f == FormatGzip && declaredArchive(a.mediaType, f):
			a.inner = NewGzipTarInspector(a.opts, a.size)
		default:
			// compressed tar layers: not decompressed inline (see package doc)
			a.inner = newOpaqueInspector(a.opts, a.size, f)
		}
	case (f == FormatText || f == FormatJSON || f == FormatBinary) && isNeMoConfigName(a.title):
		// Binary too (where unknown bytes are served): PyYAML reads
		// UTF-16 YAML, and so must the check. Before the template case:
		// a model_config.yaml declared a template is checked as both.
		a.inner = newNeMoConfigInspector(a.opts, a.size, dialect, isTmpl && f != FormatBinary)
	case (f == FormatText || f == FormatJSON) && isTmpl:
		a.inner = newTemplateInspector(a.opts, a.size, dialect)
	case f == FormatJSON:
		a.inner = newConfigInspector(a.opts, a.size)
	case judged == FormatSentencePiece:
		a.inner = newSentencePieceInspector(a.opts, a.size)
	case f == FormatText && a.size >= 0 && a.size <= a.opts.maxConfig() && (!isDatasetLayer(kind, a.mediaType) || isLoaderConfigName(a.title)):
		// Text that may be a template or a config is held and parsed
		// whole; dataset text (JSONL, CSV) streams, walked as opaque text.
		a.inner = newTextInspector(a.opts, a.size, a.title)
	case f == FormatText && isYAMLName(a.title):
		return newFinding(FormatYAML, 0, "YAML config of %d bytes is larger than the %d-byte limit for parsed config files (content.maxConfigBytes)", a.size, a.opts.maxConfig())
	case f == FormatText && a.size > a.opts.maxConfig() && (isLoaderConfigName(a.title) || !isDatasetLayer(kind, a.mediaType) && strings.EqualFold(path.Ext(a.title), ".json")):
		// JSON whose first bytes are blanks (Python's json skips them) and
		// too large to parse: refused as an unpadded one is.
		return newFinding(FormatJSON, 0, "JSON file of %d bytes is larger than the %d-byte limit for parsed config files (content.maxConfigBytes)", a.size, a.opts.maxConfig())
	default:
		a.inner = newOpaqueInspector(a.opts, a.size, f)
	}
	a.guard.start(a.opts, a.format, a.size, h, a.inner)
	return nil
}

// isDatasetLayer reports whether a layer is declared as a dataset (its text
// is data, not a template or config any loader renders).
func isDatasetLayer(k layerKind, mediaType string) bool {
	return k == kindDataset || strings.Contains(mediaType, ".dataset.")
}

// isLoaderConfigName reports whether a file name is one model loaders
// read as a configuration (transformers, peft, diffusers,
// sentence-transformers: config.json, adapter_config.json,
// tokenizer_config.json, generation_config.json, preprocessor_config.json,
// model_index.json, modules.json, chat_template.json, ...).
func isLoaderConfigName(title string) bool {
	b := strings.ToLower(path.Base(title))
	return strings.HasSuffix(b, "config.json") || b == "model_index.json" || b == "modules.json" || b == "chat_template.json"
}

// isJSONLinesName reports whether a file name says JSON Lines.
func isJSONLinesName(title string) bool {
	e := strings.ToLower(path.Ext(title))
	return e == ".jsonl" || e == ".ndjson"
}

// isONNXName reports whether a file name says ONNX.
func isONNXName(title string) bool {
	return strings.EqualFold(path.Ext(title), ".onnx")
}

// isJoblibName reports whether a file name is a joblib dump's
// (joblib.dump picks its compression from these extensions).
func isJoblibName(title string) bool {
	l := strings.ToLower(path.Base(title))
	for _, ext := range []string{".joblib", ".jbl", ".joblib.z", ".joblib.gz", ".joblib.bz2", ".joblib.xz", ".joblib.lzma", ".joblib.lz4"} {
		if strings.HasSuffix(l, ext) {
			return true
		}
	}
	return false
}

// binaryByNature reports whether a layer holds bytes of no format the
// validators know by design: raw per-tensor data (Ollama tensor layers),
// datasets (parquet, arrow, ...) and code (governed by denyCodeLayers),
// also as archive packagings (KitOps dataset and code tars).
func binaryByNature(k layerKind, mediaType string) bool {
	return k == kindTensorBlob || k == kindCode || strings.Contains(mediaType, ".code.") || isDatasetLayer(k, mediaType)
}

// opaqueInspector accepts bytes no validator claims (allowed archives, text,
// unrecognised binaries in layers that may carry them) and checks the size.
// For text and binary it also runs the pickle walker speculatively: protocol
// 0/1 pickles have no magic, and a loader such as torch.load will unpickle
// them whatever the file is called. Content that parses as a complete pickle
// with at least one import, or that imports a non-allowlisted global before
// failing, is a pickle.
type opaqueInspector struct {
	size, seen int64
	mode       PickleMode
	shadow     *PickleInspector
	isPickle   bool
	err        error
	tail       []byte // last bytes, to find an embedded zip's end record
	watchTail  bool
}

// maxEOCDTail is the end of central directory record plus the longest
// comment: a zip reader finds the archive from there, whatever precedes it.
const maxEOCDTail = 22 + 65535

func newOpaqueInspector(opts Options, size int64, format string) *opaqueInspector {
	o := &opaqueInspector{size: size, mode: opts.pickleMode()}
	// Image magic is no proof of an image: "GIF89a" plus 3 bytes is a
	// pickle's BINFLOAT opcode, and a loader runs what follows. Images are
	// walked like text and binary.
	if format == FormatText || format == FormatBinary || format == FormatImage {
		o.shadow = newSpeculativePickleInspector(opts, size)
		o.watchTail = true
	}
	return o
}

func (o *opaqueInspector) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	o.seen += int64(len(p))
	if o.size >= 0 && o.seen > o.size {
		o.err = newFinding(FormatMediaType, o.size, "more bytes than the declared size %d", o.size)
		return 0, o.err
	}
	if o.shadow != nil {
		_, err := o.shadow.Write(p)
		if err := o.judge(err); err != nil {
			return 0, err
		}
	}
	if o.watchTail {
		// Only the last maxEOCDTail bytes can hold an end record that
		// ends the blob: keep those, in one reused buffer (copying whole
		// 1 MiB writes cost as much as hashing them).
		if len(p) >= maxEOCDTail {
			o.tail = append(o.tail[:0], p[len(p)-maxEOCDTail:]...)
		} else {
			o.tail = append(o.tail, p...)
			if len(o.tail) > 2*maxEOCDTail {
				o.tail = o.tail[:copy(o.tail, o.tail[len(o.tail)-maxEOCDTail:])]
			}
		}
	}
	return len(p), nil
}

// embeddedZip returns the offset (from the end) of a zip end of central
// directory record that ends the blob exactly, or -1.
func embeddedZip(tail []byte) int {
	for i := len(tail) - 22; i >= 0; i-- {
		if tail[i] == 'P' && bytes.HasPrefix(tail[i:], magicEOCD) &&
			i+22+int(binary.LittleEndian.Uint16(tail[i+20:])) == len(tail) {
			return len(tail) - i
		}
	}
	return -1
}

// judge interprets the speculative walk.
func (o *opaqueInspector) judge(err error) error {
	// A complete pickle that imports nothing cannot run code (and short
	// texts such as "N." parse as one), so only importing pickles count.
	if err == nil && o.shadow.finished && !o.isPickle && len(o.shadow.w.globals) > 0 {
		o.isPickle = true
		if o.mode != PickleScan {
			o.err = newFinding(FormatPickle, 0, "content parses as a pickle (protocol 0/1, no header); pickle content is denied by policy (pickle: deny)")
			return o.err
		}
	}
	if err == nil {
		return nil
	}
	f, ok := err.(*Finding)
	if !ok {
		f = &Finding{Format: FormatPickle, Offset: -1, Reason: err.Error()}
	}
	// A walk that imported something before it failed is a pickle (a
	// loader runs it up to there): whatever stopped it (an import outside
	// the allowlist, a forged numpy dtype, a call on a non-callable) is a
	// finding, not a sign of text.
	if o.isPickle || len(o.shadow.w.globals) > 0 || strings.Contains(f.Reason, "which is not in the allowlist") {
		o.err = newFinding(FormatPickle, f.Offset, "content parses as a pickle: %s", f.Reason)
		return o.err
	}
	o.shadow = nil // not a pickle
	return nil
}

func (o *opaqueInspector) HeaderDone() bool { return o.err == nil }

func (o *opaqueInspector) Close() error {
	if o.err != nil {
		return o.err
	}
	if o.size >= 0 && o.seen != o.size {
		o.err = newFinding(FormatMediaType, o.seen, "truncated: %d of %d bytes", o.seen, o.size)
		return o.err
	}
	if o.watchTail {
		if back := embeddedZip(o.tail); back >= 0 {
			o.err = newFinding(FormatZip, o.seen-int64(back), "a zip archive ends this blob but does not start it (prepended data or polyglot)")
			return o.err
		}
	}
	if o.shadow != nil {
		if err := o.judge(o.shadow.Close()); err != nil {
			return err
		}
		if o.shadow != nil && o.shadow.finished && !o.isPickle {
			if err := o.judge(nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Report is the result of InspectReader.
type Report struct {
	MediaType string
	Title     string
	Size      int64
	Format    string
	Findings  []Finding
	Tensors   []TensorInfo
	Globals   []string // pickle imports (scan mode)
	// References are the load-time references of a config (references.go).
	References []Reference
}

// InspectReader runs the same validators as the proxy on a local file or
// stream (for `pullgate inspect`). Findings are returned in the report; the
// error is non-nil only for I/O errors or invalid options.
func InspectReader(opts Options, r io.Reader, size int64, mediaType, title string) (Report, error) {
	rep := Report{MediaType: mediaType, Title: title, Size: size}
	in, err := NewInspector(opts, mediaType, title, size)
	if err != nil {
		var f *Finding
		if errors.As(err, &f) {
			rep.Findings = append(rep.Findings, *f)
			return rep, nil
		}
		return rep, err
	}
	ai := in.(*autoInspector)
	buf := make([]byte, 1<<20)
	var ferr error
	for ferr == nil {
		n, rerr := r.Read(buf)
		if n > 0 {
			_, ferr = in.Write(buf[:n])
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rep, rerr
		}
	}
	if ferr == nil {
		ferr = in.Close()
	}
	rep.Format = ai.format
	if ferr != nil {
		var f *Finding
		if !errors.As(ferr, &f) {
			return rep, ferr
		}
		rep.Findings = append(rep.Findings, *f)
	}
	rep.Tensors = ai.Tensors()
	rep.Globals = ai.Globals()
	if ferr == nil {
		rep.References = ai.References()
	}
	return rep, nil
}
