package content

import (
	"sort"
	"strings"
)

// Layer kinds decide which sniffed formats a declared media type may carry.
type layerKind int

const (
	kindAny        layerKind = iota // no expectation (exact type listed by the user, ORAS files)
	kindWeights                     // raw model file
	kindGGUF                        // GGUF only
	kindArchive                     // declared tar / tar+gzip / tar+zstd packaging
	kindConfig                      // JSON/YAML/tokenizer files
	kindText                        // licenses, docs, system prompts
	kindTemplate                    // chat templates (Jinja / Go text/template)
	kindJSON                        // JSON only
	kindCode                        // scripts, notebooks
	kindDataset                     // datasets
	kindZip                         // zip bundles (MCP bundles)
	kindTensorBlob                  // Ollama per-tensor layers
)

// formatsFor lists the sniffed formats each layer kind may contain. kindAny
// is handled separately (everything, subject to pickle/archive policy).
var formatsFor = map[layerKind][]string{
	kindWeights:    {FormatSafetensors, FormatGGUF, FormatPickle, FormatLegacyTorch, FormatZip, FormatNPY, FormatBinary, FormatText, FormatONNX, FormatHDF5, FormatTFLite},
	kindGGUF:       {FormatGGUF},
	kindArchive:    {FormatTar, FormatGzip, FormatZstd},
	kindConfig:     {FormatJSON, FormatText, FormatNPY, FormatBinary},
	kindText:       {FormatText, FormatJSON, FormatImage},
	kindTemplate:   {FormatText, FormatJSON},
	kindJSON:       {FormatJSON},
	kindCode:       {FormatText, FormatBinary, FormatJSON, FormatNPY},
	kindDataset:    {FormatJSON, FormatText, FormatBinary, FormatImage, FormatNPY},
	kindZip:        {FormatZip},
	kindTensorBlob: {FormatBinary, FormatSafetensors, FormatNPY},
}

// mediaTypeSets are the named sets usable in Options.MediaTypes. Each maps
// layer media types to their kind; configs lists the config media types of
// manifests in that family.
type mediaTypeSet struct {
	layers  map[string]layerKind
	configs []string
}

var mediaTypeSets = map[string]mediaTypeSet{}

func init() {
	mp := mediaTypeSet{layers: map[string]layerKind{}, configs: []string{
		"application/vnd.cncf.model.config.v1+json", "application/vnd.cnai.model.config.v1+json"}}
	for _, prefix := range []string{"application/vnd.cncf.model.", "application/vnd.cnai.model."} {
		for _, k := range []struct {
			name string
			kind layerKind
		}{{"weight", kindWeights}, {"weight.config", kindConfig}, {"doc", kindText}, {"code", kindCode}, {"dataset", kindDataset}} {
			mp.layers[prefix+k.name+".v1.raw"] = k.kind
			for _, t := range []string{".v1.tar", ".v1.tar+gzip", ".v1.tar+zstd"} {
				mp.layers[prefix+k.name+t] = kindArchive
			}
		}
	}
	mediaTypeSets["modelpack"] = mp

	kit := mediaTypeSet{layers: map[string]layerKind{}, configs: []string{
		"application/vnd.kitops.modelkit.config.v1+json", "application/vnd.jozu.model.config.v1+json"}}
	for _, t := range []string{"model", "modelpart", "dataset", "code", "docs"} {
		kit.layers["application/vnd.kitops.modelkit."+t+".v1.tar"] = kindArchive
		kit.layers["application/vnd.kitops.modelkit."+t+".v1.tar+gzip"] = kindArchive
		kit.layers["application/vnd.kitops.modelkit."+t+".v1.tar+zstd"] = kindArchive
	}
	kit.layers["application/vnd.kitops.modelkit.mcpb.v1.raw"] = kindZip
	kit.layers["application/vnd.jozu.model.content.v1.tar+gzip"] = kindArchive
	mediaTypeSets["kitops"] = kit

	ol := mediaTypeSet{layers: map[string]layerKind{
		"application/vnd.ollama.image.model":     kindGGUF,
		"application/vnd.ollama.image.adapter":   kindGGUF,
		"application/vnd.ollama.image.projector": kindGGUF,
		"application/vnd.ollama.image.draft":     kindGGUF,
		"application/vnd.ollama.image.embed":     kindGGUF,
		"application/vnd.ollama.image.template":  kindTemplate,
		"application/vnd.ollama.image.prompt":    kindTemplate,
		"application/vnd.ollama.image.system":    kindText,
		"application/vnd.ollama.image.params":    kindJSON,
		"application/vnd.ollama.image.messages":  kindJSON,
		"application/vnd.ollama.image.license":   kindText,
		"application/vnd.ollama.image.json":      kindJSON,
		"application/vnd.ollama.image.tensor":    kindTensorBlob,
	}, configs: []string{"application/vnd.docker.container.image.v1+json"}}
	mediaTypeSets["ollama"] = ol

	mediaTypeSets["docker-ai"] = mediaTypeSet{layers: map[string]layerKind{
		"application/vnd.docker.ai.gguf.v3":             kindGGUF,
		"application/vnd.docker.ai.gguf.v3.lora":        kindGGUF,
		"application/vnd.docker.ai.gguf.v3.mmproj":      kindGGUF,
		"application/vnd.docker.ai.license":             kindText,
		"application/vnd.docker.ai.chat.template.jinja": kindTemplate,
	}, configs: []string{"application/vnd.docker.ai.model.config.v0.1+json"}}

	// ORAS: `oras push file` labels raw file bytes as an OCI tar layer, so
	// these types carry anything; bytes are still sniffed and checked.
	mediaTypeSets["oras"] = mediaTypeSet{layers: map[string]layerKind{
		"application/vnd.oci.image.layer.v1.tar":      kindAny,
		"application/vnd.oci.image.layer.v1.tar+gzip": kindAny,
		"application/vnd.oci.image.layer.v1.tar+zstd": kindAny,
	}, configs: []string{"application/vnd.unknown.config.v1+json", "application/vnd.oci.empty.v1+json",
		"application/vnd.oci.image.config.v1+json"}}
}

// MediaTypeSetNames returns the names usable in Options.MediaTypes.
func MediaTypeSetNames() []string {
	out := make([]string, 0, len(mediaTypeSets))
	for n := range mediaTypeSets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// MediaTypeSet returns the layer media types of a named set (nil if the
// name is unknown).
func MediaTypeSet(name string) []string {
	s, ok := mediaTypeSets[name]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(s.layers))
	for m := range s.layers {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// knownKind returns the kind of a layer media type across all sets.
func knownKind(mt string) (layerKind, bool) {
	for _, s := range mediaTypeSets {
		if k, ok := s.layers[mt]; ok {
			return k, true
		}
	}
	return kindAny, false
}

// layerAllowed reports whether mt is allowed by opts.MediaTypes (set names or
// exact strings). An empty list allows everything.
func (o Options) layerAllowed(mt string) bool {
	if len(o.MediaTypes) == 0 {
		return true
	}
	for _, m := range o.MediaTypes {
		if m == mt {
			return true
		}
		if s, ok := mediaTypeSets[m]; ok {
			if _, ok := s.layers[mt]; ok {
				return true
			}
		}
	}
	return false
}

func (o Options) configAllowed(mt string) bool {
	if len(o.MediaTypes) == 0 {
		return true
	}
	for _, m := range o.MediaTypes {
		if m == mt {
			return true
		}
		if s, ok := mediaTypeSets[m]; ok {
			for _, c := range s.configs {
				if c == mt {
					return true
				}
			}
		}
	}
	return false
}

func isCodeMediaType(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.cncf.model.code.") ||
		strings.HasPrefix(mt, "application/vnd.cnai.model.code.") ||
		strings.HasPrefix(mt, "application/vnd.kitops.modelkit.code.")
}

var codeExts = []string{".py", ".pyc", ".pyd", ".pyo", ".ipynb", ".sh", ".bash", ".zsh", ".so", ".dylib", ".dll",
	".exe", ".bat", ".cmd", ".ps1", ".js", ".mjs", ".llamafile", ".jar", ".whl", ".egg"}

// codeFileExt returns the code extension of a file name, or "".
func codeFileExt(title string) string {
	l := strings.ToLower(title)
	for _, e := range codeExts {
		if strings.HasSuffix(l, e) {
			return e
		}
	}
	return ""
}
