package content

import (
	"fmt"
	"regexp"
)

// Format names used in Finding.Format and Report.Format.
const (
	FormatSafetensors = "safetensors"
	FormatGGUF        = "gguf"
	FormatPickle      = "pickle"
	FormatLegacyTorch = "torch-legacy" // concatenated pickles + raw storages
	FormatZip         = "zip"          // any zip, including PyTorch zip checkpoints
	Format7z          = "7z"
	FormatRar         = "rar"
	FormatTar         = "tar"
	FormatGzip        = "gzip"
	FormatZstd        = "zstd"
	FormatXz          = "xz"
	FormatBzip2       = "bzip2"
	FormatJSON        = "json"
	FormatText        = "text"
	FormatBinary      = "binary" // bytes no validator recognises
	FormatMediaType   = "mediatype"
	FormatTensors     = "tensors"
	FormatTemplate    = "template"
	FormatYAML        = "yaml"
	FormatImage       = "image" // PNG, JPEG, GIF, WebP: inert media files
	// FormatTorchScript names findings about a zip that is a TorchScript
	// archive (torch.jit.save: <top>/code/ and <top>/constants.pkl). The
	// layer's format stays FormatZip.
	FormatTorchScript = "torchscript"
	// FormatKeras names findings about a Keras v3 .keras archive (a zip
	// with top-level config.json and metadata.json) and about Keras model
	// configurations. The layer's format stays FormatZip.
	FormatKeras = "keras"
)

// KnownFormats are the format names Options.AllowFormats (policy key
// content.formats.allow) may list: every format the validators recognise.
var KnownFormats = []string{FormatSafetensors, FormatGGUF, FormatPickle, FormatLegacyTorch, FormatZip, FormatNPY, FormatJoblib,
	FormatTar, FormatGzip, FormatZstd, FormatXz, FormatBzip2, Format7z, FormatRar,
	FormatJSON, FormatYAML, FormatText, FormatTemplate, FormatImage, FormatSentencePiece, FormatONNX, FormatHDF5,
	FormatTensorFlow, FormatTFLite}

// PickleMode says what happens to pickle-bearing content (raw pickles, legacy
// torch files, PyTorch zip checkpoints).
type PickleMode string

const (
	// PickleDeny refuses any pickle-bearing blob outright (the default).
	PickleDeny PickleMode = "deny"
	// PickleScan runs the opcode walker and accepts only allowlisted globals.
	PickleScan PickleMode = "scan"
)

// SafetensorsOptions bound the safetensors validator.
type SafetensorsOptions struct {
	// MaxHeaderBytes caps the JSON header length N. 0 means
	// DefaultSafetensorsMaxHeader; values above the reference's 100 MB hard
	// limit are clamped to it.
	MaxHeaderBytes int64
	// MaxTensors caps the number of tensors in the header (0: 1<<20).
	MaxTensors int
}

// DefaultSafetensorsMaxHeader is the default header cap (16 MiB). The
// reference implementation accepts up to 100 MB; real headers are well below
// 1 MiB even for the largest checkpoints.
const DefaultSafetensorsMaxHeader = 16 << 20

// SafetensorsHardMaxHeader is the reference implementation's MAX_HEADER_SIZE.
const SafetensorsHardMaxHeader = 100_000_000

// GGUFOptions bound the GGUF validator. Zero values take the defaults, which
// follow Ollama's hardened reader.
type GGUFOptions struct {
	MaxStringBytes   int64 // per string; default 16 MiB
	MaxArrayElements int64 // per array; default 64 Mi
	MaxKV            int64 // metadata key/value pairs; default 65536
	MaxTensors       int64 // tensor infos; default 1<<20
	// AllowChatTemplateDunder disables the tokenizer.chat_template check for
	// constructs that reach Python objects. Leave false.
	AllowChatTemplateDunder bool
}

// PickleOptions configure the pickle opcode walker.
type PickleOptions struct {
	Mode PickleMode // "" means PickleDeny
	// Allow lists the exact "module.name" globals a pickle may import. nil
	// means DefaultPickleAllow. An empty non-nil slice allows nothing.
	Allow     []string
	MaxOps    int64 // opcodes per blob; default 1<<26
	MaxStack  int   // stack depth (values + marks); default 1<<16
	MaxMemo   int   // memo entries; default 1<<20
	MaxString int64 // length of one string/bytes argument; default 16 MiB
}

// ZipOptions bound the zip validator.
type ZipOptions struct {
	MaxEntries int // default 65536
	// MaxDeflatedMember optionally caps the compressed size of one
	// deflated member. Deflated members stream like stored ones (inflated
	// as they arrive: at most 88 KiB, a 32 KiB window, Huffman tables
	// and held input, verify/content/inflate), so it bounds no memory. Default 0: no cap.
	MaxDeflatedMember int64
	// MaxInflatedMember caps the declared uncompressed size of a deflated
	// member (zip bombs); the inflater also stops at the declared size.
	// Default 1 GiB.
	MaxInflatedMember int64
	// MaxUncompressed caps the sum of uncompressed member sizes. Default 1 TiB.
	MaxUncompressed int64
}

// Options is the content policy of one rule.
type Options struct {
	// MediaTypes lists allowed layer media types: set names (modelpack,
	// kitops, ollama, docker-ai, oras) or exact media type strings. Empty
	// means layer media types are not restricted (only the bytes are checked).
	MediaTypes  []string
	Safetensors SafetensorsOptions
	GGUF        GGUFOptions
	Pickle      PickleOptions
	Zip         ZipOptions
	ONNX        ONNXOptions
	NeMo        NeMoOptions  // content.formats.nemo
	Skops       SkopsOptions // content.formats.skops
	TensorFlow  TensorFlowOptions
	TFLite      TFLiteOptions
	Keras       KerasOptions
	// AllowArchives accepts 7z/rar/tar/gzip/zstd/xz/bzip2 bytes in layers whose
	// media type declares a raw model file, and nested archives inside zips.
	// Their contents are not inspected.
	AllowArchives bool
	// DenyCodeLayers refuses code layers (ModelPack/KitOps code types, titles
	// ending in .py/.sh/.so/...) and JSON config files carrying auto_map.
	DenyCodeLayers bool
	// TensorAllow, when non-empty, requires every tensor name (safetensors,
	// GGUF) to match at least one expression.
	TensorAllow []*regexp.Regexp
	// MaxConfigBytes caps JSON config/template files that are parsed
	// (config.json, tokenizer_config.json, chat templates). Default 64 MiB.
	MaxConfigBytes int64
	// AllowFormats, when non-empty, lists the formats (KnownFormats names)
	// a layer's bytes may be; any other format is refused. Empty: every
	// format the validators know.
	AllowFormats []string
	// AllowUnknown serves bytes that parse as no known format in layers
	// that should hold a model file or config (weights, configs, undeclared
	// layers). False (the default) refuses them: a gate cannot vouch for
	// bytes it does not understand. Unsafe; per rule.
	AllowUnknown bool
	// AllowTorchScript admits TorchScript archives (policy key
	// content.formats.torchscript: allow). False (the default) refuses
	// them: torch.jit.load compiles and runs their code/ tree
	// (CVE-2022-45907). Their pickles are walked either way.
	AllowTorchScript bool
	// References is content.references: what the load-time references of
	// configs must match (references.go). The validators list them
	// (ReferenceLister); the caller judges them with CheckReferences,
	// since requiring the MBOM's base model needs the verified MBOM.
	References ReferenceOptions

	// torchScriptClasses admits TorchScript classes (GLOBAL __torch__...)
	// in the pickles of a zip under AllowTorchScript; set by the zip
	// inspector for its members.
	torchScriptClasses bool

	// binaryByNature is set for the members of an archive layer whose
	// declared kind holds binary data by nature (datasets, code): their
	// members are not refused as unknown bytes.
	binaryByNature bool
	// archiveDepth counts the tar archives around a blob (a .nemo in a
	// tar layer is at depth 1): nested tars are probed as NeMo archives
	// only up to maxArchiveDepth.
	archiveDepth int
	// pyJSONFloats accepts NaN, Infinity and -Infinity in a JSON config
	// (Python's json writes them): set by the zip inspector for a
	// top-level config.json, which Keras's loader reads with json.loads.
	pyJSONFloats bool
	// nestedZip is set for the members of a .npz inside a zip: no
	// further zip is opened inside it.
	nestedZip bool

	// codeLayer is set for the members of an archive layer declared as
	// code: their shebang scripts are code (denyCodeLayers), not disguised.
	codeLayer bool

	// maxJSONValues, when positive, bounds the values of a JSON config
	// (heldlimits.go: a zip's top-level config.json, which Keras
	// loads); tooManyJSONValues is the refusal, one %d for the limit.
	maxJSONValues     int
	tooManyJSONValues string
}

// formatAllowed reports whether a format may be served under AllowFormats.
func (o Options) formatAllowed(f string) bool {
	if len(o.AllowFormats) == 0 {
		return true
	}
	for _, a := range o.AllowFormats {
		if a == f {
			return true
		}
	}
	return false
}

func (o Options) stMaxHeader() int64 {
	n := o.Safetensors.MaxHeaderBytes
	if n <= 0 {
		n = DefaultSafetensorsMaxHeader
	}
	if n > SafetensorsHardMaxHeader {
		n = SafetensorsHardMaxHeader
	}
	return n
}

func (o Options) stMaxTensors() int {
	if o.Safetensors.MaxTensors > 0 {
		return o.Safetensors.MaxTensors
	}
	return 1 << 20
}

func def64(v, d int64) int64 {
	if v > 0 {
		return v
	}
	return d
}

func defInt(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

func (o Options) pickleMode() PickleMode {
	if o.Pickle.Mode == "" {
		return PickleDeny
	}
	return o.Pickle.Mode
}

func (o Options) maxConfig() int64 { return def64(o.MaxConfigBytes, 64<<20) }

// Validate reports option values that cannot be honoured.
func (o Options) Validate() error {
	switch o.Pickle.Mode {
	case "", PickleDeny, PickleScan:
	default:
		return fmt.Errorf("content: pickle mode %q: want %q or %q", o.Pickle.Mode, PickleDeny, PickleScan)
	}
	if o.Safetensors.MaxHeaderBytes > SafetensorsHardMaxHeader {
		return fmt.Errorf("content: safetensors maxHeaderBytes %d exceeds the format's hard limit %d", o.Safetensors.MaxHeaderBytes, SafetensorsHardMaxHeader)
	}
	for _, m := range o.MediaTypes {
		if m == "" {
			return fmt.Errorf("content: empty media type in mediaTypes")
		}
	}
	if err := CheckPickleAllow(o.Pickle.Allow); err != nil {
		return err
	}
	if err := CheckNeMoTargets(o.NeMo.Targets); err != nil {
		return err
	}
	if err := CheckSkopsTrusted(o.Skops.Trusted); err != nil {
		return err
	}
	if err := validKerasOptions(o.Keras); err != nil {
		return err
	}
	for _, f := range o.AllowFormats {
		known := false
		for _, k := range KnownFormats {
			known = known || k == f
		}
		if !known {
			return fmt.Errorf("content: formats.allow: unknown format %q (known: %v)", f, KnownFormats)
		}
	}
	if err := o.References.Validate(); err != nil {
		return err
	}
	for i, re := range o.TensorAllow {
		if re == nil {
			return fmt.Errorf("content: tensors.allow[%d] is nil", i)
		}
	}
	return nil
}

// TensorInfo describes one tensor declared in a model header. Begin and End
// are byte offsets relative to the start of the tensor data section (End
// exclusive).
type TensorInfo struct {
	Name  string
	DType string
	Shape []uint64
	Begin int64
	End   int64
}

// TensorLister is implemented by inspectors that parse tensor tables
// (safetensors, GGUF). Tensors is valid once HeaderDone is true.
type TensorLister interface {
	Tensors() []TensorInfo
}

// FormatReporter is implemented by inspectors that know which format they
// detected ("" until detection).
type FormatReporter interface {
	Format() string
}

// FormatOf is the format an inspector detected, "" when it reports none.
func FormatOf(in Inspector) string {
	if fr, ok := in.(FormatReporter); ok {
		return fr.Format()
	}
	return ""
}

func newFinding(format string, off int64, reason string, args ...any) *Finding {
	if len(args) > 0 {
		reason = fmt.Sprintf(reason, args...)
	}
	return &Finding{Format: format, Offset: off, Reason: reason}
}

// trailingReason describes data after the logical end of a file. The byte
// count is exact when the blob size is known (so the reason does not depend
// on how the stream was chunked); otherwise the offset is given.
func trailingReason(size, at int64, what string) string {
	if size >= 0 {
		return fmt.Sprintf("%d bytes of trailing data after %s", size-at, what)
	}
	return fmt.Sprintf("trailing data after %s (at offset %d)", what, at)
}

func checkTensorAllow(format string, off int64, allow []*regexp.Regexp, name string) error {
	if len(allow) == 0 {
		return nil
	}
	for _, re := range allow {
		if re.MatchString(name) {
			return nil
		}
	}
	return newFinding(FormatTensors, off, "tensor %q (%s) matches no allowed tensor name pattern", name, format)
}
