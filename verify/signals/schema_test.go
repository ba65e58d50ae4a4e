package signals

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// schema is the part of JSON Schema docs/signals-answer.schema.json uses.
type schema struct {
	Type                 string             `json:"type"`
	Required             []string           `json:"required"`
	Properties           map[string]*schema `json:"properties"`
	AdditionalProperties *bool              `json:"additionalProperties"`
	Items                *schema            `json:"items"`
	MaxItems             *int               `json:"maxItems"`
	Enum                 []string           `json:"enum"`
	Const                string             `json:"const"`
}

// TestSchemaMatchesParser keeps the published schema and ParseAnswer
// saying the same thing: the same properties (and the Go fields), the
// same required ones (each enforced), the same enums and bounds, and a
// full answer using every property accepted.
func TestSchemaMatchesParser(t *testing.T) {
	b, err := os.ReadFile("../../docs/signals-answer.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	full := map[string]any{
		"apiVersion": APIVersion,
		"provider":   map[string]any{"name": "sandbox", "version": "1.2.0", "dbVersion": "db-7"},
		"subject":    map[string]any{"digest": digestA},
		"status":     "done",
		"verdict":    "clean",
		"findings":   []any{map[string]any{"id": "F1", "severity": "low", "message": "m"}},
		"facts":      map[string]any{"egressAttempts": 0},
		"evidence":   []any{map[string]any{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}},
		"ttl":        60,
	}
	parse := func(v map[string]any) error {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseAnswer(b, digestA)
		return err
	}
	if err := parse(full); err != nil {
		t.Fatalf("an answer with every property of the schema: %v", err)
	}
	if s.Const != "" || s.Properties["apiVersion"].Const != APIVersion {
		t.Errorf("schema apiVersion %q, parser %q", s.Properties["apiVersion"].Const, APIVersion)
	}
	if !slices.Equal(s.Properties["status"].Enum, []string{StatusDone, StatusPending}) {
		t.Errorf("status enum %v", s.Properties["status"].Enum)
	}
	if !slices.Equal(s.Properties["findings"].Items.Properties["severity"].Enum, Severities) {
		t.Errorf("severity enum %v, parser %v", s.Properties["findings"].Items.Properties["severity"].Enum, Severities)
	}
	if *s.Properties["findings"].MaxItems != MaxFindings || *s.Properties["evidence"].MaxItems != MaxEvidence {
		t.Errorf("maxItems differ from MaxFindings/MaxEvidence")
	}
	// Each object the schema describes against the Go type ParseAnswer
	// decodes into, and what removing each property does.
	for _, c := range []struct {
		path   string
		sch    *schema
		goType reflect.Type
		obj    func(m map[string]any) map[string]any
	}{
		{"$", &s, reflect.TypeFor[Answer](), func(m map[string]any) map[string]any { return m }},
		{"$.provider", s.Properties["provider"], reflect.TypeFor[ProviderInfo](), func(m map[string]any) map[string]any { return m["provider"].(map[string]any) }},
		{"$.subject", s.Properties["subject"], reflect.TypeFor[Answer]().Field(2).Type, func(m map[string]any) map[string]any { return m["subject"].(map[string]any) }},
		{"$.findings[0]", s.Properties["findings"].Items, reflect.TypeFor[Finding](), func(m map[string]any) map[string]any {
			return m["findings"].([]any)[0].(map[string]any)
		}},
	} {
		if c.sch.AdditionalProperties == nil || *c.sch.AdditionalProperties {
			t.Errorf("%s: the parser refuses unknown keys; the schema must say additionalProperties: false", c.path)
		}
		var props, goFields []string
		for k := range c.sch.Properties {
			props = append(props, k)
		}
		for i := range c.goType.NumField() {
			goFields = append(goFields, strings.Split(c.goType.Field(i).Tag.Get("json"), ",")[0])
		}
		sort.Strings(props)
		sort.Strings(goFields)
		if !slices.Equal(props, goFields) {
			t.Errorf("%s: schema properties %v, Go fields %v", c.path, props, goFields)
		}
		for _, k := range props {
			m := clone(full)
			delete(c.obj(m), k)
			err := parse(m)
			if req := slices.Contains(c.sch.Required, k); req != (err != nil) {
				t.Errorf("%s.%s: required in the schema %v, parser without it: %v", c.path, k, req, err)
			}
		}
		m := clone(full)
		c.obj(m)["x-extra"] = 1
		if parse(m) == nil {
			t.Errorf("%s: unknown key accepted", c.path)
		}
	}
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}
