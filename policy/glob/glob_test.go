package glob

import (
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pattern string
		yes     []string
		no      []string
	}{
		{"upstream.local/app/**",
			[]string{"upstream.local/app", "upstream.local/app/web", "upstream.local/app/a/b/c"},
			[]string{"upstream.local/apps", "upstream.local/ap", "other/app/web", "upstream.local"}},
		{"upstream.local/app/*",
			[]string{"upstream.local/app/web", "upstream.local/app/x"},
			[]string{"upstream.local/app", "upstream.local/app/a/b", "upstream.local/app/"}},
		{"upstream.local/*/web",
			[]string{"upstream.local/app/web", "upstream.local/x/web"},
			[]string{"upstream.local/web", "upstream.local/a/b/web"}},
		{"upstream.local/**/web",
			[]string{"upstream.local/web", "upstream.local/a/web", "upstream.local/a/b/c/web"},
			[]string{"upstream.local/a/webx", "upstream.local/a/web/x"}},
		{"**",
			[]string{"a", "a/b", "docker.io/library/nginx"},
			[]string{""}},
		{"**/nginx",
			[]string{"nginx", "docker.io/library/nginx"},
			[]string{"docker.io/library/nginx2", "docker.io/nginx/x"}},
		{"docker.io/library/nginx",
			[]string{"docker.io/library/nginx"},
			[]string{"docker.io/library/nginx/x", "docker.io/library/ngin", "Docker.io/library/nginx", "docker.io/library"}},
		{"docker.io/library/ng?nx",
			[]string{"docker.io/library/nginx", "docker.io/library/ngXnx"},
			[]string{"docker.io/library/ngnx", "docker.io/library/ngiinx"}},
		{"a/?",
			[]string{"a/b", "a/é"},
			[]string{"a/", "a/bc", "a"}},
		{"a/b*",
			[]string{"a/b", "a/bcd"},
			[]string{"a/cb", "a/b/c"}},
		{"a/*b",
			[]string{"a/b", "a/xxb", "a/bbb"},
			[]string{"a/bx", "a/x/b"}},
		{"a/*b*c*",
			[]string{"a/bc", "a/xbyczz", "a/bbcc"},
			[]string{"a/cb", "a/b/c"}},
		{"a/[abc]",
			[]string{"a/a", "a/c"},
			[]string{"a/d", "a/ab", "a/"}},
		{"a/[a-c]x",
			[]string{"a/ax", "a/bx"},
			[]string{"a/dx", "a/x"}},
		{"a/[!a-c]x",
			[]string{"a/dx", "a/zx"},
			[]string{"a/ax", "a/cx", "a/x"}},
		{"a/[^0-9]",
			[]string{"a/q"},
			[]string{"a/5"}},
		{"a/[]]",
			[]string{"a/]"},
			[]string{"a/a"}},
		{`a/\*`,
			[]string{"a/*"},
			[]string{"a/x"}},
		{`a/\?x`,
			[]string{"a/?x"},
			[]string{"a/bx"}},
		{"a/**/b/**/c",
			[]string{"a/b/c", "a/x/b/y/c", "a/x/y/b/c", "a/b/z/z/c"},
			[]string{"a/c", "a/b", "a/x/c/b"}},
		{"a/**/**/b",
			[]string{"a/b", "a/x/b", "a/x/y/b"},
			[]string{"a/x"}},
		{"a.b/c", // '.' is literal, not a regexp wildcard
			[]string{"a.b/c"},
			[]string{"axb/c"}},
		{"a+/(b)|c", // regexp syntax is literal
			[]string{"a+/(b)|c"},
			[]string{"aa/b", "a/c"}},
		{"registry:5000/x/**",
			[]string{"registry:5000/x/y"},
			[]string{"registry:5001/x/y"}},
		{"*/library/*",
			[]string{"docker.io/library/nginx", "quay.io/library/x"},
			[]string{"docker.io/library", "docker.io/a/library/x"}},
		{"up/models/**/*-lora",
			[]string{"up/models/x-lora", "up/models/a/b/x-lora", "up/models/-lora"},
			[]string{"up/models/lora", "up/models/x-lora/y"}},
		{"up/**",
			[]string{"up/a"},
			[]string{"upx/a", "u/p"}},
		{"up/a*a*a*a*a*a*b",
			[]string{"up/aaaaaab"},
			[]string{"up/" + strings.Repeat("a", 200)}}, // backtracking stays linear-ish
	}
	n := 0
	for _, c := range cases {
		g, err := Compile(c.pattern)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.pattern, err)
		}
		n++
		for _, s := range c.yes {
			if !g.Match(s) {
				t.Errorf("%q should match %q", c.pattern, s)
			}
		}
		for _, s := range c.no {
			if g.Match(s) {
				t.Errorf("%q should not match %q", c.pattern, s)
			}
		}
	}
	if n < 25 {
		t.Fatalf("only %d patterns", n)
	}
}

func TestGlobEmptySegments(t *testing.T) {
	g, _ := Compile("a/*/b")
	if g.Match("a//b") {
		t.Error("* must not match an empty segment")
	}
	g2, _ := Compile("a/**/b")
	if !g2.Match("a//b") {
		// "**" spans any segments, including empty ones.
		t.Error("** should span an empty segment")
	}
}

func TestGlobSyntaxErrors(t *testing.T) {
	cases := map[string]struct {
		offset int
		msg    string
	}{
		"":          {0, "empty pattern"},
		"/a":        {0, "must not start"},
		"a/":        {1, "must not end"},
		"a//b":      {2, "empty path segment"},
		"a/b**":     {3, "whole path segment"},
		"a/***":     {2, "whole path segment"},
		"a/[abc":    {2, "unclosed"},
		"a/[":       {2, "unclosed"},
		`a/b\`:      {3, "escapes nothing"},
		`a/\/b`:     {2, "escapes nothing"},
		"a/[z-a]":   {5, "invalid range"},
		"a/x[!]":    {3, "unclosed"},
		"a/\xffbad": {2, "invalid UTF-8"},
	}
	for pat, want := range cases {
		_, err := Compile(pat)
		if err == nil {
			t.Errorf("Compile(%q): no error", pat)
			continue
		}
		ge, ok := err.(*SyntaxError)
		if !ok {
			t.Errorf("Compile(%q): %T", pat, err)
			continue
		}
		if ge.Offset != want.offset || !strings.Contains(ge.Msg, want.msg) {
			t.Errorf("Compile(%q) = offset %d %q, want offset %d containing %q", pat, ge.Offset, ge.Msg, want.offset, want.msg)
		}
	}
}

func FuzzGlob(f *testing.F) {
	for _, s := range []string{"a/**/b", "a/*", "[a-z]?/x", `\*`} {
		f.Add(s, "a/b/c")
	}
	f.Fuzz(func(t *testing.T, pat, s string) {
		g, err := Compile(pat)
		if err != nil {
			return
		}
		_ = g.Match(s)
		// A pattern without metacharacters matches exactly itself.
		if !strings.ContainsAny(pat, `*?[\`) && g.Match(s) != (s == pat) {
			t.Fatalf("literal %q vs %q", pat, s)
		}
	})
}
