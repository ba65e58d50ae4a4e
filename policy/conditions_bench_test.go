package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// BenchmarkConditions is a cold decision of a rule with the five example
// constraints (read the config, build the document, evaluate every
// condition): the CEL side of the Rego comparison of issue 16.
func BenchmarkConditions(b *testing.B) {
	var conds []string
	for _, f := range []string{"non-root", "base-pinned", "fresh", "no-secret-env"} {
		p, err := Load(filepath.Join("..", "docs", "examples", f+".yaml"))
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range p.Rules[0].Require.Conditions {
			conds = append(conds, "        - "+strings.ReplaceAll(strings.TrimSpace(yamlQuote(c.Expr)), "\n", " "))
		}
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	src := "rules:\n  - name: all\n    match: [\"**\"]\n    require:\n      conditions:\n" + strings.Join(conds, "\n") + "\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		b.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		b.Fatal(err)
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D", "PYTHON_VERSION=3.13.1", "PYTHON_SHA256=9cf9427bee9e2242e3877dd0f6b641c1853ca461f39d6503ce260a59c80bf0d9"}
	cfg := imageConfig(b, "1000", env, condNow.Add(-time.Hour))
	mf := imageManifest(b, cfg, MediaTypeOCIConfig, map[string]string{"org.opencontainers.image.base.digest": digest.FromString("b").String()})
	md := digest.FromBytes(mf)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		a, err := ReadArtifact(ArtifactSubject{Repository: "up/app", Digest: md}, mf, false, MediaTypeOCIConfig, digest.FromBytes(cfg), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if d := p.Evaluate(Input{Repository: "up/app", Digest: md, Artifact: a, Now: condNow}); !d.Allowed {
			b.Fatal(d.Reasons)
		}
	}
}

func yamlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
