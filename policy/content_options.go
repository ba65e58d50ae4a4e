package policy

import "github.com/pullgate/pullgate/verify/content"

// Options turns a rule's content section into the validators' options, so
// that the proxy and `pullgate inspect` run exactly the same checks.
func (c *Content) Options() content.Options {
	o := content.Options{MediaTypes: c.MediaTypes, DenyCodeLayers: c.DenyCodeLayers, TensorAllow: c.TensorAllow}
	if f := c.Formats.Safetensors; f != nil {
		o.Safetensors = content.SafetensorsOptions{MaxHeaderBytes: f.MaxHeaderBytes, MaxTensors: int(f.MaxTensors)}
	}
	if f := c.Formats.GGUF; f != nil {
		o.GGUF = content.GGUFOptions{MaxStringBytes: f.MaxStringBytes, MaxArrayElements: f.MaxArrayElements,
			MaxKV: f.MaxKV, MaxTensors: f.MaxTensors, AllowChatTemplateDunder: f.AllowChatTemplateDunder}
	}
	o.Pickle = content.PickleOptions{Mode: content.PickleMode(c.Formats.Pickle.Mode), Allow: c.Formats.Pickle.Allow}
	return o
}
