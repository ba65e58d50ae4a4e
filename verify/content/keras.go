package content

import (
	"strings"
	"unicode/utf8"
)

// Keras v3 .keras archives (keras.saving.save_model, saving_lib.py) are
// zips: metadata.json, config.json, model.weights.h5 (or
// model.weights.npz) and, for layers with assets, files under assets/.
// Python's zipfile writes them (ZIP_STORED, in that order). The zip
// validator recognises one by structure, whatever the layer is called: a
// zip whose top level holds both config.json and metadata.json. It then
// checks, whatever the order of the members:
//
//   - config.json with checkKerasConfig (its own validator, the JSON config
//     check, ran too);
//   - metadata.json: a strict JSON object with a string keras_version
//     (Keras writes keras_version and date_saved; its loader never reads it);
//   - the members, against what Keras's loader reads
//     (_load_model_from_fileobj): config.json, one weights file
//     (model.weights.h5, read by h5py; or model.weights.npz, a nested zip,
//     refused unless the rule allows archives), and files under assets/
//     (DiskIOStore extracts the whole archive to a temporary directory and
//     layers read their own asset files). Any other member is refused: the
//     loader never reads it, but extracts it to disk. A missing weights file
//     is refused too (the loader raises; no honest archive lacks one).
//
// Every member is still inspected as a layer of its name would be
// (NewInspector): model.weights.h5 by the HDF5 validator, assets by
// content. The configuration is checked as soon as config.json and
// metadata.json have both been read (Keras writes them first, so a
// malicious configuration is refused before the weights stream by); the
// member rules when each member's header arrives and at Close.
//
// Memory: config.json is the bytes its JSON validator already buffered
// (at most MaxConfigBytes, default 64 MiB), kept without copying until the
// check; metadata.json at most kerasMaxMetadata.

const (
	kerasConfigName   = "config.json"
	kerasMetadataName = "metadata.json"
	kerasWeightsH5    = "model.weights.h5"
	kerasWeightsNPZ   = "model.weights.npz"
	kerasAssetsDir    = "assets/"
	kerasMaxMetadata  = 1 << 20
)

// kerasArchive tracks what makes a zip a Keras archive.
type kerasArchive struct {
	config, metadata     []byte // the members' bytes, once their own validators passed
	configSeen, metaSeen bool   // member closed
	configJSON, metaJSON bool   // member was judged as a JSON file
	configAt, metaAt     int64  // local header offsets
	recognised           bool   // config.json and metadata.json both read; configuration checked
	weights              string // weights member seen
}

// kerasMemberBytes returns the bytes a member's validator holds, to be
// read before its Close releases them: those its JSON validator buffered,
// or, when the format is decided only at Close (a member of unknown size
// shorter than the sniff window), the bytes held for sniffing.
func kerasMemberBytes(in Inspector) []byte {
	ai, ok := in.(*autoInspector)
	if !ok {
		return nil
	}
	if ai.inner == nil {
		return ai.head
	}
	if bi := bufferedJSON(ai.inner); bi != nil {
		return bi.buf
	}
	return nil
}

// bufferedJSON is the BufferedInspector that checked a JSON file (a config
// inspector embeds one), nil for any other inspector.
func bufferedJSON(in Inspector) *BufferedInspector {
	switch t := in.(type) {
	case *BufferedInspector:
		return t
	case *configInspector:
		return t.BufferedInspector
	}
	return nil
}

// kerasJudgedJSON reports, after its Close, whether a member was judged
// and checked as a JSON file.
func kerasJudgedJSON(in Inspector) bool {
	ai, ok := in.(*autoInspector)
	if !ok || ai.format != FormatJSON {
		return false
	}
	return bufferedJSON(ai.inner) != nil
}

// kerasCollect records config.json and metadata.json after their own
// validators passed (b: their bytes, json: judged as JSON), and checks the
// archive as a Keras archive once both were read.
func (z *ZipInspector) kerasCollect(e *zipEntry, b []byte, json bool) error {
	k := &z.keras
	switch e.name {
	case kerasConfigName:
		k.config, k.configJSON, k.configSeen, k.configAt = b, json, true, e.offset
	case kerasMetadataName:
		if len(b) > kerasMaxMetadata {
			b, json = nil, false
		}
		k.metadata, k.metaJSON, k.metaSeen, k.metaAt = b, json, true, e.offset
	default:
		return nil
	}
	if !k.configSeen || !k.metaSeen {
		return nil
	}
	return z.kerasRecognised()
}

// kerasRecognised checks a zip just recognised as a Keras archive: its
// metadata, its configuration, and the members seen so far.
func (z *ZipInspector) kerasRecognised() error {
	k := &z.keras
	k.recognised = true
	if !k.metaJSON {
		return z.kerasFail(k.metaAt, "metadata.json is not a JSON file of at most %d bytes", kerasMaxMetadata)
	}
	if r := kerasMetadataProblem(k.metadata); r != "" {
		return z.kerasFail(k.metaAt, "metadata.json: %s", r)
	}
	if !k.configJSON {
		return z.kerasFail(k.configAt, "config.json is not a JSON model configuration")
	}
	cfg := k.config
	k.config, k.metadata = nil, nil
	if err := checkKerasConfig(z.memberOpts(), FormatKeras, "config.json", cfg); err != nil {
		f := err.(*Finding)
		return z.kerasFail(k.configAt, "%s", f.Reason)
	}
	for _, e := range z.entries {
		if err := z.kerasMember(e.name, e.offset); err != nil {
			return err
		}
	}
	return nil
}

// kerasMember applies the member rule of a recognised Keras archive.
func (z *ZipInspector) kerasMember(name string, off int64) error {
	k := &z.keras
	if !k.recognised {
		return nil
	}
	switch {
	case name == kerasConfigName || name == kerasMetadataName:
		return nil
	case name == kerasWeightsH5 || name == kerasWeightsNPZ:
		if k.weights != "" && k.weights != name {
			return z.kerasFail(off, "both %s and %s: Keras loads %s and ignores the other", k.weights, name, kerasWeightsH5)
		}
		k.weights = name
		return nil
	case strings.HasPrefix(name, kerasAssetsDir):
		return nil
	}
	return z.kerasFail(off, "member %q is not one Keras's loader reads (config.json, metadata.json, %s or %s, assets/...); "+
		"it extracts every member to disk, so a file it does not need is refused (no key admits it)", name, kerasWeightsH5, kerasWeightsNPZ)
}

// kerasClose runs the checks of a Keras archive that need every member.
func (z *ZipInspector) kerasClose() error {
	if !z.keras.recognised {
		return nil
	}
	if z.keras.weights == "" {
		return z.kerasFail(-1, "no %s or %s: Keras's loader refuses an archive without weights", kerasWeightsH5, kerasWeightsNPZ)
	}
	return nil
}

func (z *ZipInspector) kerasFail(off int64, reason string, args ...any) error {
	z.err = newFinding(FormatKeras, off, "Keras archive: "+reason, args...)
	return z.err
}

// kerasMetadataProblem checks metadata.json: a strict JSON object whose
// keras_version (and date_saved, when present) are strings.
func kerasMetadataProblem(b []byte) string {
	if !utf8.Valid(b) {
		return "not valid UTF-8"
	}
	p := &jsonParser{b: b}
	p.ws()
	v, err := p.value(0, "")
	if err != nil {
		if f, ok := err.(*Finding); ok {
			return f.Reason
		}
		return err.Error()
	}
	p.ws()
	if p.i != len(p.b) {
		return "unexpected data after the JSON value"
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "not a JSON object"
	}
	if _, ok := m["keras_version"].(string); !ok {
		return "no keras_version string"
	}
	if d, ok := m["date_saved"]; ok {
		if _, ok := d.(string); !ok {
			return "date_saved is not a string"
		}
	}
	return ""
}
