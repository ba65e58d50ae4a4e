package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/engine"
)

// A policy that requires a signal provider pullgate's config does not
// configure is refused: at start (an error naming the rule and the
// provider) and on reload (the policy in force stays).
func TestPolicyNamingUnknownSignalProvider(t *testing.T) {
	e := newEnv(t)
	script := filepath.Join(e.dir, "vuln.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := func(provider string) {
		src := testPolicy + "  - name: scanned\n    match: [\"upstream.local/scanned/**\"]\n    require: {signals: [" + provider + "]}\n"
		if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := func(signals string) (*engine.Engine, error) {
		cfg, err := config.Parse(fmt.Appendf(nil, "storage: {path: %s}\nupstreams: [{name: %s, url: %s}]\npolicy: %s\n%s",
			filepath.Join(e.dir, "store"), up, e.up.URL, filepath.Join(e.dir, "policy.yaml"), signals))
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.OpenFilesystem(context.Background(), cfg.Resolve(cfg.Storage.Path), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		eng, err := engine.New(context.Background(), cfg, st, slog.New(slog.DiscardHandler), engine.Options{})
		if err == nil {
			t.Cleanup(func() { eng.Close() })
		}
		return eng, err
	}
	pol("vuln")
	if _, err := open(""); err == nil || !strings.Contains(err.Error(), `rule scanned: require.signals names provider "vuln", but pullgate's config has no signals section`) {
		t.Fatalf("no signals section: %v", err)
	}
	withVuln := "signals: [{name: vuln, exec: " + script + "}]\n"
	pol("sandbox")
	if _, err := open(withVuln); err == nil || !strings.Contains(err.Error(), `provider "sandbox", which pullgate's config does not configure (configured: vuln)`) {
		t.Fatalf("unknown provider: %v", err)
	}
	pol("vuln")
	eng, err := open(withVuln)
	if err != nil {
		t.Fatal(err)
	}
	rev := eng.Policy().Revision()
	pol("sandbox")
	if err := eng.ReloadPolicy(); err == nil || !strings.Contains(err.Error(), `provider "sandbox"`) {
		t.Fatalf("reload to an unknown provider: %v", err)
	}
	if eng.Policy().Revision() != rev {
		t.Fatal("a policy naming an unknown provider replaced the one in force")
	}
}
