package policy

import (
	"testing"

	"github.com/pullgate/pullgate/policy/glob"
)

func BenchmarkMatch(b *testing.B) {
	p := &Policy{}
	for i, pat := range []string{"up/blocked/**", "up/team-*/private/**", "docker.io/library/*", "up/models/**/*-lora", "up/app/**", "**"} {
		g, err := glob.Compile(pat)
		if err != nil {
			b.Fatal(err)
		}
		p.Rules = append(p.Rules, &Rule{Name: string(rune('a' + i)), globs: []*glob.Pattern{g}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := p.Match("up/app/frontend/web"); r == nil || r.Name != "e" {
			b.Fatal("wrong rule")
		}
	}
}
