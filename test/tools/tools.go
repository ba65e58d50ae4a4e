// Package tools finds the real client binaries the end-to-end tests drive
// (crane, oras, regctl, skopeo, cosign v2/v3, distribution's registry, containerd,
// MinIO, Sigstore's fulcio and timestamp-server, the OCI conformance suite).
// test/tools/install.sh installs them into .tools/bin. A missing tool skips
// the test locally, and fails it when PULLGATE_REQUIRE_TOOLS=1 (set by CI),
// so CI never passes by skipping.
package tools

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is the repository's .tools/bin directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".tools", "bin")
}

// Lookup returns the path of a tool, or "" when it is not installed.
func Lookup(name string) string {
	p := filepath.Join(Dir(), name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// Required reports whether missing tools must fail tests instead of skipping.
func Required() bool { return os.Getenv("PULLGATE_REQUIRE_TOOLS") == "1" }

// Need returns the path of a tool or ends the test: skip locally, fail in CI.
func Need(t testing.TB, name string) string {
	t.Helper()
	p := Lookup(name)
	if p == "" {
		if Required() {
			t.Fatalf("%s is not installed (run test/tools/install.sh)", name)
		}
		t.Skipf("%s is not installed (run test/tools/install.sh)", name)
	}
	return p
}

// RunWithPullgate builds the pullgate CLI once into a temporary directory,
// points *bin at it, runs the package's tests and exits (for TestMain).
func RunWithPullgate(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "pullgate-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "pullgate")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", *bin, "./cmd/pullgate")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/pullgate: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Build compiles one of the repository's commands (e.g. "./cmd/pullgate-signal-vuln")
// into the test's temporary directory and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}
