package policy

import (
	"strings"
	"testing"
)

func TestContentKeras(t *testing.T) {
	o, err := loadFormats(t, `keras: {modules: [mypkg.layers, __main__], registered: ["MyPackage>MyLayer"], lambda: allow}`)
	if err != nil {
		t.Fatal(err)
	}
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
		if _, err := loadFormats(t, bad.yaml); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v", bad.yaml, err)
		}
	}
}
