package config

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// TestLightImports keeps configuration and audit code light (issue 14):
// they use the glob matcher and the size parser from their leaf packages,
// which import only the standard library, and must not import the policy
// engine, verify or sigstore again (which they once did, only for those two
// helpers). It asks the go tool, which every test run has.
//
// The config names signal providers with verify/signals' types (issue 17):
// that package and the strict JSON reader it uses are light (standard
// library, Prometheus, an LRU) and allowed; anything heavy they came to
// import would show here through config's own dependencies.
func TestLightImports(t *testing.T) {
	lightVerify := map[string]bool{"verify/signals": true, "verify/strictjson": true}
	const mod = "github.com/pullgate/pullgate/"
	deps := func(pkg string) map[string]bool {
		t.Helper()
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", mod+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		m := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			path, std, ok := strings.Cut(line, " ")
			if !ok {
				t.Fatalf("go list output %q", line)
			}
			m[path] = std == "true"
		}
		if len(m) < 2 {
			t.Fatalf("go list -deps %s listed %d packages", pkg, len(m))
		}
		return m
	}
	for _, leaf := range []string{"policy/glob", "policy/bytesize"} {
		for path, std := range deps(leaf) {
			if !std && path != mod+leaf {
				t.Errorf("%s imports %s: a leaf package imports only the standard library", leaf, path)
			}
		}
	}
	for _, pkg := range []string{"proxy/config", "proxy/audit"} {
		d := deps(pkg)
		if _, ok := d[mod+"policy/glob"]; !ok {
			t.Errorf("%s no longer imports policy/glob: check that this test still guards what it should", pkg)
		}
		var heavy []string
		for path := range d {
			if lightVerify[strings.TrimPrefix(path, mod)] {
				continue
			}
			if path == mod+"policy" || strings.HasPrefix(path, mod+"verify") || strings.Contains(path, "sigstore") {
				heavy = append(heavy, path)
			}
		}
		if len(heavy) > 0 {
			sort.Strings(heavy)
			t.Errorf("%s imports %d heavy packages (the policy engine, verify or sigstore), e.g. %s; use policy/glob and policy/bytesize",
				pkg, len(heavy), strings.Join(heavy[:min(len(heavy), 3)], ", "))
		}
	}
}
