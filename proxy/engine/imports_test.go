package engine

import (
	"go/build"
	"slices"
	"testing"
)

// The engine decides without HTTP: the proxy serves what it decides, and
// `pullgate verify` (and what comes next) calls it alike.
func TestEngineImportsNoHTTP(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, banned := range []string{"net/http", "net/http/httputil", "github.com/go-chi/chi/v5",
		"github.com/pullgate/pullgate/proxy", "github.com/pullgate/pullgate/proxy/ocierr", "github.com/pullgate/pullgate/proxy/clientauth"} {
		if slices.Contains(pkg.Imports, banned) {
			t.Errorf("package engine imports %s", banned)
		}
	}
}
