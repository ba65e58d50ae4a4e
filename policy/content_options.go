package policy

import "github.com/pullgate/pullgate/verify/content"

// Options turns a rule's content section into the validators' options, so
// that the proxy and `pullgate inspect` run exactly the same checks.
// A rule without a content section (nil) gets the validators' defaults
// (pickle denied, no media type allowlist).
func (c *Content) Options() content.Options {
	if c == nil {
		return content.Options{Pickle: content.PickleOptions{Mode: content.PickleDeny}}
	}
	// Set names go to the validators as names: they know each set's config
	// types and which formats each layer type may carry.
	mts := append(append([]string(nil), c.MediaTypeSets...), c.ExactMediaTypes...)
	o := content.Options{MediaTypes: mts, DenyCodeLayers: c.DenyCodeLayers, TensorAllow: c.TensorAllow,
		AllowArchives: c.AllowArchives, MaxConfigBytes: c.MaxConfigBytes,
		AllowFormats: c.Formats.Allow, AllowUnknown: c.Formats.Unknown == "allow",
		AllowTorchScript: c.Formats.TorchScript == "allow", References: c.References.options()}
	if f := c.Formats.Safetensors; f != nil {
		o.Safetensors = content.SafetensorsOptions{MaxHeaderBytes: f.MaxHeaderBytes, MaxTensors: int(f.MaxTensors)}
	}
	if f := c.Formats.GGUF; f != nil {
		o.GGUF = content.GGUFOptions{MaxStringBytes: f.MaxStringBytes, MaxArrayElements: f.MaxArrayElements,
			MaxKV: f.MaxKV, MaxTensors: f.MaxTensors, AllowChatTemplateDunder: f.AllowChatTemplateDunder}
	}
	if f := c.Formats.Zip; f != nil {
		o.Zip = content.ZipOptions{MaxEntries: int(f.MaxEntries), MaxDeflatedMember: f.MaxDeflatedMember,
			MaxInflatedMember: f.MaxInflatedMember, MaxUncompressed: f.MaxUncompressed}
	}
	if f := c.Formats.Keras; f != nil {
		o.Keras = content.KerasOptions{Modules: f.Modules, Registered: f.Registered, AllowLambda: f.Lambda == "allow"}
	}
	if f := c.Formats.ONNX; f != nil {
		o.ONNX = content.ONNXOptions{Domains: f.Domains}
	}
	if f := c.Formats.NeMo; f != nil {
		o.NeMo = content.NeMoOptions{Targets: f.Targets}
	}
	if f := c.Formats.Skops; f != nil {
		o.Skops = content.SkopsOptions{Trusted: f.Trusted}
	}
	if f := c.Formats.TensorFlow; f != nil {
		o.TensorFlow = content.TensorFlowOptions{AllowOps: f.AllowOps, DenyOps: f.DenyOps}
	}
	if f := c.Formats.TFLite; f != nil {
		o.TFLite = content.TFLiteOptions{CustomOps: f.CustomOps, AllowFlex: f.Flex == "allow"}
	}
	o.Pickle = content.PickleOptions{Mode: content.PickleMode(c.Formats.Pickle.Mode), Allow: c.Formats.Pickle.Allow}
	return o
}
