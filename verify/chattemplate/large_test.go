package chattemplate

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Large hostile shapes (long dependency chains, deep loops, many calls) are
// analysed in bounded time with the right verdict.
func TestLargeTemplatesBounded(t *testing.T) {
	var b strings.Builder
	want := map[string]string{
		"set chain forward": "", "set chain backward": "string operations", "many ifs with many sets": "",
		"macro calls": "", "pollution": "refused", "namespaces": "nested too deeply", "nested loops": "",
		"long expression": "syntax tree nested", "call chain": "",
	}
	gen := map[string]func() string{
		"set chain forward": func() string {
			b.Reset()
			b.WriteString("{% set a0 = 'x' %}")
			for i := 1; i < 20000; i++ {
				fmt.Fprintf(&b, "{%% set a%d = a%d %%}", i, i-1)
			}
			b.WriteString("{{ z[a19999] }}")
			return b.String()
		},
		"set chain backward": func() string {
			b.Reset()
			for i := 20000; i > 0; i-- {
				fmt.Fprintf(&b, "{%% set a%d = a%d %%}", i, i-1)
			}
			b.WriteString("{% set a0 = 'x' ~ 'y' %}{{ z[a20000] }}")
			return b.String()
		},
		"many ifs with many sets": func() string {
			b.Reset()
			for i := 0; i < 5000; i++ {
				fmt.Fprintf(&b, "{%% set v%d = 1 %%}", i)
			}
			for i := 0; i < 5000; i++ {
				fmt.Fprintf(&b, "{%% if x %%}{{ z[v%d] }}{%% endif %%}", i)
			}
			return b.String()
		},
		"macro calls": func() string {
			b.Reset()
			b.WriteString("{% macro m(a, b, c, d) %}{{ z[a] }}{{ m(b, c, d, a) }}{% endmacro %}")
			for i := 0; i < 10000; i++ {
				fmt.Fprintf(&b, "{{ m(%d, %d, %d, [%d]) }}", i, i, i, i)
			}
			return b.String()
		},
		"pollution": func() string {
			b.Reset()
			for i := 0; i < 10000; i++ {
				fmt.Fprintf(&b, "{{ l%d.append([[[l%d]]]) }}{%% for k in l%d %%}{{ z[k] }}{%% endfor %%}", i, i+1, i)
			}
			return b.String()
		},
		"namespaces": func() string {
			b.Reset()
			b.WriteString("{% set ns = namespace(a0=0) %}")
			for i := 1; i < 10000; i++ {
				fmt.Fprintf(&b, "{%% set ns.a%d = [ns.a%d] %%}{{ z[ns.a%d] }}", i, i-1, i)
			}
			return b.String()
		},
		"nested loops": func() string {
			b.Reset()
			for i := 0; i < 120; i++ {
				fmt.Fprintf(&b, "{%% for k%d, v in d%d.items() %%}{{ d%d[k%d] }}", i, i, i, i)
			}
			for i := 0; i < 120; i++ {
				b.WriteString("{% endfor %}")
			}
			return strings.Repeat(b.String(), 50)
		},
		"long expression": func() string {
			return "{{ z[" + strings.Repeat("a + ", 60000) + "a] }}"
		},
		"call chain": func() string {
			return "{{ x" + strings.Repeat(".a()", 120) + " }}"
		},
	}
	for name, g := range gen {
		src := g()
		t0 := time.Now()
		err := CheckJinja(src)
		t.Logf("%-26s %7d bytes %10v", name, len(src), time.Since(t0))
		switch w := want[name]; {
		case w == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case w != "" && (err == nil || !strings.Contains(err.Error(), w)):
			t.Errorf("%s: got %v, want %q", name, err, w)
		}
	}
}
