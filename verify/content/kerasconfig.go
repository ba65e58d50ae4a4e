package content

import "unicode/utf8"

// checkKerasConfig checks a Keras model configuration, JSON: the
// config.json of a Keras v3 .keras archive, or the model_config and
// training_config attributes of a legacy Keras HDF5 file. format names the
// container the finding is reported for, where the place inside it
// ("config.json", "root attribute model_config"). It returns a *Finding
// naming the offending class or module, nil for a configuration Keras
// deserialises without running code of the file.
//
// The JSON is parsed strictly (UTF-8, no duplicate keys, bounded depth),
// like every config file.
func checkKerasConfig(opts Options, format, where string, cfg []byte) error {
	if !utf8.Valid(cfg) {
		return newFinding(format, -1, "%s: not valid UTF-8", where)
	}
	p := &jsonParser{b: cfg}
	p.ws()
	v, err := p.value(0, "")
	if err != nil {
		return newFinding(format, -1, "%s: %v", where, err)
	}
	p.ws()
	if p.i != len(p.b) {
		return newFinding(format, -1, "%s: unexpected data after the JSON value", where)
	}
	return kerasObjectFinding(format, where, v)
}

// kerasObjectFinding walks a parsed Keras configuration.
func kerasObjectFinding(format, where string, v any) error {
	switch t := v.(type) {
	case map[string]any:
		if c, _ := t["class_name"].(string); c == "Lambda" {
			return newFinding(format, -1, "%s: Lambda layer (Keras deserialises its marshalled Python bytecode; CVE-2024-3660)", where)
		}
		for _, e := range t {
			if err := kerasObjectFinding(format, where, e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range t {
			if err := kerasObjectFinding(format, where, e); err != nil {
				return err
			}
		}
	}
	return nil
}
