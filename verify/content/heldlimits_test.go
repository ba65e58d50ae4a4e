package content

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// Each cap of heldlimits.go: a file at the cap passes, one over it is
// refused with the limit named (TestHeldConfigPeakMemory measures what
// the caps bound).

// feedAll writes b to in and closes it.
func feedAll(in Inspector, b []byte) error {
	if _, err := in.Write(b); err != nil {
		return err
	}
	return in.Close()
}

// padJSON pads a JSON object with spaces before its closing brace to n
// bytes.
func padJSON(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	if len(b) > n {
		t.Fatalf("%d bytes do not fit in %d", len(b), n)
	}
	return append(append(b[:len(b)-1:len(b)-1], bytes.Repeat([]byte{' '}, n-len(b))...), '}')
}

func wantRefused(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want a refusal naming %q", err, want)
	}
}

// zeros is a JSON array of n zeros.
func zeros(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("0,", n), ",") + "]"
}

func TestKerasConfigCaps(t *testing.T) {
	cfg := []byte(`{"class_name": "Sequential", "config": {"name": "s", "layers": []}}`)
	t.Run("bytes", func(t *testing.T) {
		for _, tc := range []struct {
			opts Options
			cap  int
		}{{Options{}, kerasMaxConfig}, {Options{MaxConfigBytes: 1 << 20}, 1 << 20}} {
			b := padJSON(t, bytes.Clone(cfg), tc.cap)
			if err := feedAll(newKerasConfigJSONInspector(tc.opts, int64(len(b))), b); err != nil {
				t.Fatalf("config.json of %d bytes (the cap) refused: %v", len(b), err)
			}
			b = padJSON(t, bytes.Clone(cfg), tc.cap+1)
			wantRefused(t, feedAll(newKerasConfigJSONInspector(tc.opts, int64(len(b))), b), itoa(tc.cap)+"-byte limit for a zip's top-level config.json")
		}
	})
	t.Run("values", func(t *testing.T) {
		// The root, class_name, config, name, layers: 5 values, then
		// the zeros of "weights".
		at := func(n int) []byte {
			return []byte(`{"class_name": "Sequential", "config": {"name": "s", "layers": ` + zeros(n-5) + `}}`)
		}
		if err := checkKerasConfig(Options{}, FormatKeras, "config.json", at(kerasMaxValues)); err != nil {
			t.Fatalf("%d values refused: %v", kerasMaxValues, err)
		}
		wantRefused(t, checkKerasConfig(Options{}, FormatKeras, "config.json", at(kerasMaxValues+1)), "more than 262144 JSON values")
		b := at(kerasMaxValues)
		if err := feedAll(newKerasConfigJSONInspector(Options{}, int64(len(b))), b); err != nil {
			t.Fatalf("config.json of %d values refused: %v", kerasMaxValues, err)
		}
		b = at(kerasMaxValues + 1)
		wantRefused(t, feedAll(newKerasConfigJSONInspector(Options{}, int64(len(b))), b), "more than 262144 JSON values")
	})
	t.Run("duplicates", func(t *testing.T) {
		// Keys the check does not keep are still checked for
		// duplicates (by hash, then compared).
		wantRefused(t, checkKerasConfig(Options{}, FormatKeras, "config.json", []byte(`{"class_name": "Sequential", "config": {"x": 1, "name": "s", "x": 2}}`)), `duplicate key "x"`)
		wantRefused(t, checkKerasConfig(Options{}, FormatKeras, "config.json", []byte(`{"class_name": "Sequential", "class_name": "Lambda"}`)), `duplicate key "class_name"`)
	})
}

func TestSkopsSchemaCaps(t *testing.T) {
	root, _ := modelcorpus.SkopsLogisticRegression()
	schema := func(extra int) []byte {
		b, err := json.Marshal(root)
		if err != nil {
			t.Fatal(err)
		}
		if extra < 0 {
			return b
		}
		// A member the walker reads as plain data: extra values.
		return append(b[:len(b)-1], []byte(`, "pad": `+zeros(extra-1)+`}`)...)
	}
	if err := CheckSkopsSchema(Options{}, schema(-1)); err != nil {
		t.Fatalf("benign schema refused: %v", err)
	}
	t.Run("bytes", func(t *testing.T) {
		b := padJSON(t, schema(-1), skopsMaxSchema)
		if err := feedAll(newSkopsSchemaInspector(Options{}, int64(len(b))), b); err != nil {
			t.Fatalf("schema.json of %d bytes (the cap) refused: %v", len(b), err)
		}
		b = padJSON(t, schema(-1), skopsMaxSchema+1)
		wantRefused(t, feedAll(newSkopsSchemaInspector(Options{}, int64(len(b))), b), itoa(skopsMaxSchema)+"-byte limit for a skops schema")
	})
	t.Run("values", func(t *testing.T) {
		p := &jsonParser{b: schema(-1), keepAll: true}
		p.value(0, "")
		base := p.values
		if err := CheckSkopsSchema(Options{}, schema(skopsMaxValues-base)); err != nil {
			t.Fatalf("%d values refused: %v", skopsMaxValues, err)
		}
		wantRefused(t, CheckSkopsSchema(Options{}, schema(skopsMaxValues-base+1)), "more than 131072 JSON values")
	})
}

func TestNeMoConfigCaps(t *testing.T) {
	const cfg = "name: m\nmodel:\n  encoder:\n    _target_: nemo.collections.asr.modules.ConformerEncoder\n"
	// "a: [0,...]" adds 2(3+commas) to the bound of cfg.
	base := yamlNodeBound([]byte(cfg))
	at := func(bound int) []byte {
		commas := (bound-base)/2 - 3
		return []byte(cfg + "a: [0" + strings.Repeat(",0", commas) + "]\n")
	}
	if n := yamlNodeBound(at(nemoMaxNodes)); n != nemoMaxNodes {
		t.Fatalf("bound %d, want %d", n, nemoMaxNodes)
	}
	if _, err := checkNeMoConfig(Options{}, at(nemoMaxNodes)); err != nil {
		t.Fatalf("config with a node bound of %d refused: %v", nemoMaxNodes, err)
	}
	wantRefused(t, func() error { _, err := checkNeMoConfig(Options{}, at(nemoMaxNodes+2)); return err }(), "more than the 131072 the check parses")
	t.Run("bytes", func(t *testing.T) {
		pad := func(n int) []byte { return []byte(cfg + "#" + strings.Repeat(" ", n-len(cfg)-1)) }
		b := pad(nemoMaxConfig)
		if err := feedAll(newNeMoConfigInspector(Options{}, int64(len(b)), 0, false), b); err != nil {
			t.Fatalf("model_config.yaml of %d bytes (the cap) refused: %v", len(b), err)
		}
		b = pad(nemoMaxConfig + 1)
		wantRefused(t, feedAll(newNeMoConfigInspector(Options{}, int64(len(b)), 0, false), b), "larger than "+itoa(nemoMaxConfig)+" bytes (the limit for a NeMo configuration")
	})
}

var yamlBoundSeeds = []string{"x", "a: 1", "[a: 1]", "{a, b, c}", "- - - 0", "a:\n  b: 1\n  c: 2\n", "{a: {b: {c: 0}}}", "- a: 1\n- b:\n- ? c\n  : d\n",
	"a: &x [1, 2]\nb: *x\nc: {<<: {d: 1}}\n", "[[[[0]]]]", "? [a, b]\n: {c: d}\n", "a: |\n  text\n  more\n", "[{a}, {b}, {}]", "a: !!str 1\r\nb: 2"}

// The bound is an upper bound on the nodes yaml.v3 builds (the walk
// counts them: nemoWalker's budget), on shapes that start two nodes at
// one indicator.
func TestYAMLNodeBound(t *testing.T) {
	for _, doc := range yamlBoundSeeds {
		nodes := countYAMLNodes(t, doc)
		if b := yamlNodeBound([]byte(doc)); b < nodes {
			t.Errorf("%q: bound %d < %d nodes", doc, b, nodes)
		}
	}
}

// FuzzYAMLNodeBound checks the bound against yaml.v3 on any document it
// parses: the NeMo check relies on it to refuse before parsing.
func FuzzYAMLNodeBound(f *testing.F) {
	for _, s := range yamlBoundSeeds {
		f.Add(s)
	}
	f.Add(modelcorpus.NeMoASRConfig)
	f.Fuzz(func(t *testing.T, doc string) {
		if len(doc) > 4096 {
			return
		}
		var n yaml.Node
		func() {
			defer func() { recover() }()
			if yaml.Unmarshal([]byte(doc), &n) != nil {
				n = yaml.Node{}
			}
		}()
		if n.Kind == 0 {
			return
		}
		if c, b := nodesOf(&n), yamlNodeBound([]byte(doc)); b < c {
			t.Fatalf("%q: bound %d < %d nodes", doc, b, c)
		}
	})
}

func nodesOf(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += nodesOf(k)
	}
	return c
}

// countYAMLNodes counts the nodes yaml.v3 builds for doc.
func countYAMLNodes(t *testing.T, doc string) int {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatalf("%q: %v", doc, err)
	}
	var count func(*yaml.Node) int
	count = func(n *yaml.Node) int {
		c := 1
		for _, k := range n.Content {
			c += count(k)
		}
		return c
	}
	return count(&n)
}

// FuzzLeanConfigJSON checks that the lean JSON config parse (what
// checkConfigJSON keeps) judges as the full one: the same verdict, the
// same remote-code hook and the same load-time references.
func FuzzLeanConfigJSON(f *testing.F) {
	for _, s := range []string{`{"auto_map": {"AutoModel": "org/repo--m.M", "AutoTokenizer": ["a--t.T", null]}}`,
		`{"custom_pipelines": {"t": {"impl": "org/repo--p.P", "x": 1}}, "_name_or_path": "org/base"}`,
		`{"_class_name": ["m", "P"], "unet": ["evil", "U"], "vae": ["diffusers", "V", 3]}`,
		`{"model": {"vocab": {"a": 0, "b": 1, "a": 2}}}`, `{"a": {"b": {"c": {"d": 1, "d": 2}}}}`, `[{"auto_map": 1}]`,
		`{"auto_map": null, "base_model_name_or_path": "x/y"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		parse := func(lean bool) (map[string]any, error) {
			p := &jsonParser{b: b, lean: lean}
			p.ws()
			v, err := p.value(0, "")
			top, _ := v.(map[string]any)
			return top, err
		}
		full, errFull := parse(false)
		lean, errLean := parse(true)
		if (errFull == nil) != (errLean == nil) {
			t.Fatalf("%q: full %v, lean %v", s, errFull, errLean)
		}
		if errFull != nil || full == nil {
			return
		}
		if a, b := remoteCodeHook(full), remoteCodeHook(lean); a != b {
			t.Fatalf("%q: hook %q vs %q", s, a, b)
		}
		ra, ea := configReferences(full)
		rb, eb := configReferences(lean)
		if !reflect.DeepEqual(ra, rb) || (ea == nil) != (eb == nil) {
			t.Fatalf("%q: references %v %v vs %v %v", s, ra, ea, rb, eb)
		}
	})
}

// A generic YAML config (any *.yaml layer) is parsed whole too: its node
// count is bounded before yaml.v3 builds the nodes.
func TestYAMLConfigNodeCap(t *testing.T) {
	const cfg = "name: m\n"
	base := yamlNodeBound([]byte(cfg))
	at := func(bound int) []byte {
		commas := (bound-base)/2 - 3
		return []byte(cfg + "a: [0" + strings.Repeat(",0", commas) + "]\n")
	}
	if n := yamlNodeBound(at(maxYAMLParseNodes)); n != maxYAMLParseNodes {
		t.Fatalf("bound %d, want %d", n, maxYAMLParseNodes)
	}
	if err := checkYAMLConfig(Options{}, at(maxYAMLParseNodes)); err != nil {
		t.Fatalf("YAML config with a node bound of %d refused: %v", maxYAMLParseNodes, err)
	}
	wantRefused(t, checkYAMLConfig(Options{}, at(maxYAMLParseNodes+2)), "refuses more than 131072 nodes")
}

// A held file declared larger than its limit is refused at its first
// write: its declared size (from the upstream) was used to size the
// buffer, so a config.json declared as 64 GiB allocated 64 GiB.
func TestBufferedDeclaredSizeOverLimit(t *testing.T) {
	in := newConfigInspector(Options{}, 64<<30)
	_, err := in.Write([]byte(`{"a": 1`))
	wantRefused(t, err, "larger than")
}

// yaml.v3 copies a %TAG directive's prefix into every node that uses it:
// 2 MiB of prefix and 2,000 tagged nodes parsed into 4 GiB. Refused
// before the parse, in UTF-8 and UTF-16.
func TestYAMLTagDirectiveRefused(t *testing.T) {
	doc := "%TAG !e! tag:x," + strings.Repeat("p", 1<<20) + "\n---\n" + strings.Repeat("- !e!x 1\n", 2000)
	wantRefused(t, checkYAMLConfig(Options{}, []byte(doc)), "%TAG directive")
	_, err := checkNeMoConfig(Options{}, []byte(doc))
	wantRefused(t, err, "%TAG directive")
	u := []byte{0xFF, 0xFE}
	for _, r := range "%TAG !e! tag:x,y\n---\n- !e!x 1\n" {
		u = append(u, byte(r), 0)
	}
	wantRefused(t, checkYAMLConfig(Options{}, u), "%TAG directive")
	if err := checkYAMLConfig(Options{}, []byte("a: !!str 1\nb: [x]\n")); err != nil {
		t.Fatalf("YAML without directives refused: %v", err)
	}
}

// An alias repeats its node, not its template check: 2,000 aliases of one
// 64 KiB template are checked once (38 s of CPU for 1 MiB before).
func TestYAMLTemplateAliasesCheckedOnce(t *testing.T) {
	tmpl := "{{ messages }}" + strings.Repeat("x", 64<<10)
	doc := "t: &a \"" + tmpl + "\"\nchat_template: [" + strings.TrimSuffix(strings.Repeat("*a, ", 2000), ", ") + "]\n"
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	w := yamlTemplateWalk{budget: maxYAMLNodes, checked: map[*yaml.Node]bool{}}
	if err := w.walk(Options{}, &n, "", 0, false); err != nil {
		t.Fatal(err)
	}
	if len(w.checked) != 1 {
		t.Fatalf("%d template checks for one anchored template", len(w.checked))
	}
	if err := checkYAMLConfig(Options{}, []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

// The keys of open objects checked by hash are capped: a vocabulary of
// maxOpenJSONKeys keys passes, one more is refused with the limit named.
func TestOpenJSONKeysCap(t *testing.T) {
	doc := func(n int) []byte {
		b := []byte(`{"model": {"vocab": {`)
		for i := range n {
			b = strconv.AppendInt(append(b, '"'), int64(i), 36)
			b = append(b, `":0,`...)
		}
		return append(b[:len(b)-1], "}}}"...)
	}
	if _, err := checkConfigJSON(Options{}, doc(maxOpenJSONKeys)); err != nil {
		t.Fatalf("%d keys refused: %v", maxOpenJSONKeys, err)
	}
	_, err := checkConfigJSON(Options{}, doc(maxOpenJSONKeys+1))
	wantRefused(t, err, "more than 2097152 keys in open JSON objects")
}
