package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestContentKeras(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        keras: {modules: [mypkg.layers, __main__], registered: ["MyPackage>MyLayer"], lambda: allow}
`})
	p, err := Load(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := p.Rules[0].Content.Options()
	if strings.Join(o.Keras.Modules, ",") != "mypkg.layers,__main__" || strings.Join(o.Keras.Registered, ",") != "MyPackage>MyLayer" || !o.Keras.AllowLambda {
		t.Fatalf("keras options %+v", o.Keras)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ yaml, want string }{
		{`keras: {module: [mypkg]}`, "module"},
		{`keras: {modules: [builtins]}`, "builtins"},
		{`keras: {modules: ["os/path"]}`, "not a Python module name"},
		{`keras: {registered: [MyLayer]}`, "Package>Name"},
		{`keras: {lambda: yes}`, "lambda"},
	} {
		d := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        ` + bad.yaml + "\n"})
		if _, err := Load(filepath.Join(d, "p.yaml")); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v", bad.yaml, err)
		}
	}
}
