package content

import (
	"strings"
	"unicode/utf8"
)

// Keras v3 .keras archives (keras.saving.save_model, saving_lib.py) are
// zips: metadata.json, config.json, model.weights.h5 (or
// model.weights.npz) and, for layers with assets, files under assets/.
// Python's zipfile writes them (ZIP_STORED, in that order). Keras's loader
// (_load_model_from_fileobj) reads config.json first, json.loads it and
// deserialises it (deserialize_keras_object) before it looks for the
// weights; it never reads metadata.json. So, whatever the layer is called:
//
//   - a top-level config.json always gets the JSON check (whatever its
//     first bytes: json.loads does not sniff), accepting the NaN, Infinity
//     and -Infinity Python's json writes;
//   - it gets checkKerasConfig in any zip where Keras would build an object
//     from it: a class_name key at any depth (deserialize_keras_object
//     recurses into plain dicts and lists; a config without class_name,
//     such as a Hugging Face config.json, yields plain values);
//   - a zip whose top level holds config.json and a member only a Keras
//     archive holds (metadata.json, model.weights.h5, model.weights.npz,
//     assets/...) is a Keras archive, and also gets:
//   - metadata.json, when present: a strict JSON object with a string
//     keras_version (Keras writes keras_version and date_saved);
//   - the members, against what Keras's loader reads: config.json, one
//     weights file (model.weights.h5, read by h5py; or model.weights.npz,
//     a nested zip, refused unless the rule allows archives), and files
//     under assets/ (DiskIOStore extracts the whole archive to a temporary
//     directory and layers read their own asset files). Any other member
//     is refused: the loader never reads it, but extracts it to disk. A
//     missing weights file is refused too (the loader raises; no honest
//     archive lacks one).
//
// Python's zipfile looks members up by exact name (case-sensitive; it cuts
// a name at NUL and, on Windows, turns backslashes into slashes): the zip's
// path rules refuse NUL, backslashes, "./" and names differing only in
// case, so only the exact "config.json" is Keras's configuration.
//
// Every member is still inspected as a layer of its name would be
// (NewInspector): model.weights.h5 by the HDF5 validator, assets by
// content. The configuration is checked as soon as config.json was read
// and, for the member rules, a marker seen (Keras writes metadata.json
// first, so a malicious configuration is refused before the weights stream
// by); the member rules when each member's header arrives and at Close.
//
// Memory: config.json is the bytes its JSON validator already buffered
// (at most MaxConfigBytes, default 64 MiB), kept without copying until the
// check (until Close when the zip is not a Keras archive); metadata.json
// at most kerasMaxMetadata.

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
	marked               bool   // a member only a Keras archive holds was seen (metadata.json, weights, assets/)
	configChecked        bool   // config.json passed the Keras configuration check
	recognised           bool   // config.json and a marker both seen; configuration checked
	weights              string // weights member seen
}

// kerasMemberBytes returns the bytes a member's validator holds, to be
// read before its Close releases them: those its JSON validator buffered,
// or, when the format is decided only at Close (a member of unknown size
// shorter than the sniff window), the bytes held for sniffing.
func kerasMemberBytes(in Inspector) []byte {
	if c, ok := in.(*configInspector); ok {
		return c.buf // config.json (zip.go's decide)
	}
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
	if _, ok := in.(*configInspector); ok {
		return true
	}
	ai, ok := in.(*autoInspector)
	if !ok || ai.format != FormatJSON {
		return false
	}
	return bufferedJSON(ai.inner) != nil
}

// kerasCollect records config.json and metadata.json after their own
// validators passed (b: their bytes, json: judged as JSON). A config.json
// is checked as a Keras configuration as soon as the zip is recognised as
// a Keras archive, or at once when Keras would deserialise something from
// it (kerasConfigDeserialises); metadata.json once the zip is recognised.
func (z *ZipInspector) kerasCollect(e *zipEntry, b []byte, json bool) error {
	k := &z.keras
	switch e.name {
	case kerasConfigName:
		k.config, k.configJSON, k.configSeen, k.configAt = b, json, true, e.offset
		if k.marked {
			return z.kerasRecognised()
		}
		if json && kerasConfigDeserialises(b) {
			return z.kerasCheckConfig()
		}
	case kerasMetadataName:
		if len(b) > kerasMaxMetadata {
			b, json = nil, false
		}
		k.metadata, k.metaJSON, k.metaSeen, k.metaAt = b, json, true, e.offset
		if k.recognised {
			return z.kerasCheckMetadata()
		}
	}
	return nil
}

// kerasConfigDeserialises reports whether Keras's loader would build an
// object from a JSON config.json: json.loads then
// deserialize_keras_object, which recurses into every dict without
// class_name and config and every list, and builds every object with a
// class_name (serialization_lib.py). A config with no class_name key at
// any depth yields plain values (a Hugging Face config.json); any other
// gets the Keras configuration check, whatever the zip holds besides.
func kerasConfigDeserialises(b []byte) bool {
	found := false
	// Only class_name is kept (the other keys are checked for
	// duplicates by hash, heldlimits.go).
	p := &jsonParser{b: b, pyFloats: true, keep: func(k string) bool { return k == "class_name" }, onObject: func(m map[string]any) error {
		if _, ok := m["class_name"]; ok {
			found = true
			return errString("found")
		}
		return nil
	}}
	p.ws()
	_, err := p.value(0, "")
	return found || err != nil // unparsable here: fail closed (the check reports it)
}

// kerasRecognised checks a zip just recognised as a Keras archive: its
// metadata when read, its configuration, and the members seen so far.
func (z *ZipInspector) kerasRecognised() error {
	k := &z.keras
	k.recognised = true
	if k.metaSeen {
		if err := z.kerasCheckMetadata(); err != nil {
			return err
		}
	}
	if err := z.kerasCheckConfig(); err != nil {
		return err
	}
	for _, e := range z.entries {
		if err := z.kerasMember(e.name, e.offset); err != nil {
			return err
		}
	}
	return nil
}

func (z *ZipInspector) kerasCheckMetadata() error {
	k := &z.keras
	if !k.metaJSON {
		return z.kerasFail(k.metaAt, "metadata.json is not a JSON file of at most %d bytes", kerasMaxMetadata)
	}
	md := k.metadata
	k.metadata = nil
	if r := kerasMetadataProblem(md); r != "" {
		return z.kerasFail(k.metaAt, "metadata.json: %s", r)
	}
	return nil
}

// kerasCheckConfig runs the Keras configuration check on config.json,
// once.
func (z *ZipInspector) kerasCheckConfig() error {
	k := &z.keras
	if k.configChecked {
		return nil
	}
	if !k.configJSON {
		return z.kerasFail(k.configAt, "config.json is not a JSON model configuration")
	}
	cfg := k.config
	k.config = nil
	if err := checkKerasConfig(z.memberOpts(), FormatKeras, "config.json", cfg); err != nil {
		f := err.(*Finding)
		return z.kerasFail(k.configAt, "%s", f.Reason)
	}
	k.configChecked = true
	return nil
}

// kerasMarker reports whether a top-level member marks a Keras archive:
// metadata.json, a weights file or an asset.
func kerasMarker(name string) bool {
	return name == kerasMetadataName || name == kerasWeightsH5 || name == kerasWeightsNPZ || strings.HasPrefix(name, kerasAssetsDir)
}

// kerasMember applies the member rule of a recognised Keras archive, and
// recognises one when a marker follows config.json.
func (z *ZipInspector) kerasMember(name string, off int64) error {
	k := &z.keras
	if !k.recognised {
		if !kerasMarker(name) {
			return nil
		}
		k.marked = true
		if !k.configSeen {
			return nil
		}
		if err := z.kerasRecognised(); err != nil {
			return err
		}
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
