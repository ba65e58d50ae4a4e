package policy

import (
	"regexp"
	"strings"

	"github.com/pullgate/pullgate/verify/content"
)

// Content is a rule's model content section (issue 4). The policy package
// parses and validates it; the proxy and verify/content enforce it and
// report violations back through Input.ContentFindings.
type Content struct {
	// MediaTypes is the expanded allowlist of layer media types (named sets
	// expanded to their exact strings, plus the exact strings listed). Empty
	// means the rule has no media type allowlist.
	MediaTypes []string
	// ExactMediaTypes are the exact strings listed (not from a set).
	ExactMediaTypes []string
	// MediaTypeSets are the set names used (modelpack, kitops, ...).
	MediaTypeSets []string
	Formats       Formats
	// DenyCodeLayers refuses ModelPack/KitOps code layers, *.py files and
	// config.json auto_map entries.
	DenyCodeLayers bool
	// TensorAllow, when non-empty, is an allowlist of tensor names: every
	// tensor in a safetensors or GGUF file must match one of them.
	TensorAllow []*regexp.Regexp
	// AllowArchives accepts archive bytes (7z, rar, tar, gzip, ...) in layers
	// that declare a raw model file, and nested archives inside zips; their
	// contents are not inspected. Default false.
	AllowArchives bool
	// MaxConfigBytes caps parsed JSON config/template files (0: validator default).
	MaxConfigBytes int64
	// References is content.references (load-time closure); nil when
	// absent (references are reported, not judged).
	References *References

	mediaTypeSet map[string]struct{}
}

// AllowsMediaType reports whether a media type is in the allowlist. A
// Content without mediaTypes allows every type.
func (c *Content) AllowsMediaType(mt string) bool {
	if c == nil || len(c.MediaTypes) == 0 {
		return true
	}
	_, ok := c.mediaTypeSet[mt]
	return ok
}

// Formats configures the model file validators. Safetensors and GGUF are
// nil when not configured (the validators then run with their defaults);
// pickle-bearing content is refused unless Pickle.Mode is PickleScan.
type Formats struct {
	Safetensors *SafetensorsFormat
	GGUF        *GGUFFormat
	Pickle      PickleFormat
	Zip         *ZipFormat
	ONNX        *ONNXFormat
	NeMo        *NeMoFormat
	Skops       *SkopsFormat
	TensorFlow  *TensorFlowFormat
	TFLite      *TFLiteFormat
	Keras       *KerasFormat
	// Allow lists the formats a layer may be (verify/content.KnownFormats
	// names); empty allows every format the validators know.
	Allow []string `json:",omitempty"`
	// Unknown is "deny" (default) or "allow": whether bytes that parse as
	// no known format are served (uninspected) in weight, config and
	// undeclared layers.
	Unknown string `json:",omitempty"`
	// TorchScript is "refuse" (default) or "allow": whether TorchScript
	// archives (zip with code/ and constants.pkl) are admitted. Their
	// pickles are walked under Pickle either way.
	TorchScript string `json:",omitempty"`
}

// NeMoFormat configures the NeMo check (verify/content.NeMoOptions).
type NeMoFormat struct {
	// Targets lists Hydra _target_ values model_config.yaml may name
	// besides NeMo's own allowlist (content.DefaultNeMoTargets): an entry
	// ending in "." is a prefix, any other an exact dotted path.
	Targets []string `json:",omitempty"`
}

// SkopsFormat configures the skops check (verify/content.SkopsOptions).
type SkopsFormat struct {
	// Trusted lists types (module.Name; module.Class.method for a
	// MethodNode) admitted besides skops' default trusted set, as
	// skops.io.load(trusted=[...]).
	Trusted []string `json:",omitempty"`
}

// ONNXFormat configures the ONNX validator (verify/content.ONNXOptions).
type ONNXFormat struct {
	// Domains lists operator domains allowed besides the standard ones
	// ("", ai.onnx, ai.onnx.ml, ai.onnx.training): custom-op domains make
	// runtimes load native kernels.
	Domains []string `json:",omitempty"`
}

// TensorFlowFormat configures the TensorFlow graph validator
// (verify/content.TensorFlowOptions).
type TensorFlowFormat struct {
	// AllowOps removes ops from the denylist (verify/content.TensorFlowDeniedOps).
	AllowOps []string `json:",omitempty"`
	// DenyOps adds ops to the denylist.
	DenyOps []string `json:",omitempty"`
}

// TFLiteFormat configures the TFLite validator (verify/content.TFLiteOptions).
type TFLiteFormat struct {
	// CustomOps lists the custom op names admitted.
	CustomOps []string `json:",omitempty"`
	// Flex is "refuse" (default) or "allow": whether Flex ops (TensorFlow
	// kernels) are admitted; their TensorFlow op is still checked against
	// the tensorflow denylist.
	Flex string `json:",omitempty"`
}

// KerasFormat configures the Keras configuration check
// (verify/content.KerasOptions): what a Keras model configuration may name
// besides Keras's own namespaces.
type KerasFormat struct {
	// Modules admits Python modules (and their submodules) in a serialised
	// object's "module"; Keras imports them by name on load.
	Modules []string `json:",omitempty"`
	// Registered admits custom-object registered names ("Package>Name").
	Registered []string `json:",omitempty"`
	// Lambda is "refuse" (default) or "allow": whether Lambda layers and
	// __lambda__ objects (marshalled Python bytecode) are admitted. Unsafe.
	Lambda string `json:",omitempty"`
}

// ZipFormat bounds the zip parser (field names follow
// verify/content.ZipOptions; zero means the validator's default).
type ZipFormat struct {
	MaxEntries        int64
	MaxDeflatedMember int64
	MaxInflatedMember int64
	MaxUncompressed   int64
}

// SafetensorsFormat configures the safetensors validator (field names follow
// verify/content.SafetensorsOptions; zero means the validator's default).
type SafetensorsFormat struct {
	// MaxHeaderBytes caps the JSON header (validator default 16MiB; at most
	// SafetensorsHardMaxHeader).
	MaxHeaderBytes int64
	MaxTensors     int64
}

// SafetensorsHardMaxHeader is the safetensors reference implementation's
// header cap; larger maxHeaderBytes values are a policy error.
const SafetensorsHardMaxHeader = 100_000_000

// GGUFFormat configures the GGUF validator (field names follow
// verify/content.GGUFOptions; zero means the validator's default).
type GGUFFormat struct {
	MaxStringBytes   int64
	MaxArrayElements int64
	MaxKV            int64
	MaxTensors       int64
	// AllowChatTemplateDunder disables the tokenizer.chat_template check for
	// constructs that reach Python objects. Leave false.
	AllowChatTemplateDunder bool
}

// PickleMode is deny (default) or scan.
type PickleMode string

// Pickle modes.
const (
	PickleDeny PickleMode = "deny"
	PickleScan PickleMode = "scan"
)

// PickleFormat configures pickle handling.
type PickleFormat struct {
	Mode PickleMode // never empty after load: PickleDeny by default
	// Allow replaces the validator's default allowlist of GLOBAL targets
	// ("module.name") in scan mode; nil keeps the default.
	Allow []string
}

// MediaTypeSetNames are the named media type sets a rule's
// content.mediaTypes may use (defined by verify/content, which knows which
// formats each layer type may carry). Exact strings may be listed too.
func MediaTypeSetNames() []string { return content.MediaTypeSetNames() }

func mediaTypeSetNames() string { return strings.Join(content.MediaTypeSetNames(), ", ") }

func isMediaTypeSet(name string) bool {
	for _, n := range content.MediaTypeSetNames() {
		if n == name {
			return true
		}
	}
	return false
}

// mediaTypeRE is RFC 6838 type/subtype with an optional +suffix, no params.
var mediaTypeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`)
