package content

import (
	"bytes"
	"unicode/utf16"
)

// Limits of the configurations validators hold whole and parse (issue 15:
// every validator within 64 MiB whatever the file). A parse tree costs
// many times the bytes it comes from (a map entry, a string header, a
// node per value of two bytes), so each format's held configuration has
// its own cap, below content.maxConfigBytes (which lowers them all), and
// the parses count what they build. Measured peaks: docs/benchmarks.md
// ("Issue 15"), TestHeldConfigPeakMemory.

// kerasMaxValues bounds the JSON values of one Keras configuration (a
// large functional model has about 50 a layer: 2^18 is 5,000 layers).
// The Keras check keeps only the members it reads (kerasReadKey) and 16
// bytes a key of the open objects.
const kerasMaxValues = 1 << 18

// kerasReadKey reports whether the Keras check reads a member of an
// object (kerasChecker.object, tfOpLambdaFunction): only those are kept
// while the configuration is parsed.
func kerasReadKey(k string) bool {
	switch k {
	case "class_name", "module", "config", "registered_name", "spec_name", "function":
		return true
	}
	for _, fk := range kerasFileKeys {
		if k == fk {
			return true
		}
	}
	return false
}

// heldLimit is a format's cap on a held configuration: limit, or
// content.maxConfigBytes when that is lower.
func heldLimit(opts Options, limit int64) int64 { return min(opts.maxConfig(), limit) }

// kerasMaxConfig caps a zip's top-level config.json (Keras's model
// configuration, which the zip validator always parses as a JSON config
// and, with a class_name, as a Keras configuration). The JSON config
// check keeps its shallow levels whole: a hostile 4 MiB file peaks at
// about 45 MiB. A Keras 3 config.json of a large functional model is
// well under 1 MiB (about 1 KiB a layer).
const kerasMaxConfig = 4 << 20

// newKerasConfigJSONInspector is the JSON config check of a zip's
// top-level config.json, with the Keras caps.
func newKerasConfigJSONInspector(opts Options, size int64) *configInspector {
	opts.MaxConfigBytes = heldLimit(opts, kerasMaxConfig)
	opts.maxJSONValues = kerasMaxValues
	opts.tooManyJSONValues = "more than %d JSON values (the limit that bounds a Keras configuration's parse; no key raises it)"
	c := newConfigInspector(opts, size)
	c.tooLarge = "config.json larger than the %d-byte limit for a zip's top-level config.json (Keras's model configuration, parsed whole; content.maxConfigBytes lowers it, no key raises it)"
	return c
}

// skopsMaxSchema and skopsMaxValues cap a skops schema.json, which is
// parsed into a tree whole (every node at any depth is walked): about 190
// bytes a value, so 2^17 values and 4 MiB peak under 40 MiB. A fitted
// pipeline's schema has tens of values an estimator.
const (
	skopsMaxSchema = 4 << 20
	skopsMaxValues = 1 << 17
)

// nemoMaxConfig and nemoMaxNodes cap a NeMo model_config.yaml, which
// yaml.v3 parses into nodes of about 200 bytes each (a flow sequence
// takes two bytes a node: 64 MiB of "[0,0,...]" would parse into 6 GiB).
// The node count is bounded before the parse (yamlNodeBound). A NeMo
// configuration has a few thousand nodes (tens of thousands with an
// inline vocabulary).
const (
	nemoMaxConfig = 4 << 20
	nemoMaxNodes  = 1 << 17
)

// yamlNodeBound is an upper bound on the nodes yaml.v3 builds from b
// (the document node included), counted without parsing: every node but
// the document and its root starts after a line break or one of the
// indicators , [ { : - ? (line breaks: \n, \r, the last byte of NEL,
// LS and PS, whatever it belongs to), and each of those starts at most two nodes (a
// collection and its first entry, or a flow mapping's key and its empty
// value). Quoted and block scalars only make it count more.
func yamlNodeBound(b []byte) int {
	n := 1
	for _, c := range b {
		switch c {
		case '\n', '\r', 0x85, 0xa8, 0xa9, ',', '[', '{', ':', '-', '?':
			n++
		}
	}
	return 2 * n
}

// yamlTagDirective reports whether a YAML stream may have a %TAG
// directive: "%TAG" anywhere (yaml.v3 also breaks lines at NEL, LS and
// PS; stricter than a line-start check), read as yaml.v3 reads it:
// UTF-16 after its byte order mark. yaml.v3 stores every node's tag whole,
// the directive's prefix included, so one 2 MiB prefix used by 2,000 nodes
// costs 4 GiB: the node bound does not bound that.
func yamlTagDirective(b []byte) bool {
	text := b
	if len(b) >= 2 && (b[0] == 0xFF && b[1] == 0xFE || b[0] == 0xFE && b[1] == 0xFF) {
		le := b[0] == 0xFF
		u := make([]uint16, 0, len(b)/2)
		for i := 2; i+1 < len(b); i += 2 {
			if le {
				u = append(u, uint16(b[i])|uint16(b[i+1])<<8)
			} else {
				u = append(u, uint16(b[i])<<8|uint16(b[i+1]))
			}
		}
		text = []byte(string(utf16.Decode(u)))
	}
	return bytes.Contains(text, []byte("%TAG"))
}
