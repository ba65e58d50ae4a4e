package bytesize

import (
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]int64{"16MiB": 16 << 20, "1": 1, "512KiB": 512 << 10, "100MB": 100_000_000, "2GiB": 2 << 30, "7 B": 7, "1TiB": 1 << 40}
	for s, want := range good {
		if got, err := Parse(s); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "MiB", "16mib", "-1", "1.5MiB", "9223372036854775807KiB", "99999999999999999999"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

// FuzzParse: Parse never panics; what it accepts is positive, and a plain
// number (no unit) parses to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"16MiB", "1", "512KiB", "100MB", "7 B", "1TiB", "0", "", "MiB", "1.5MiB",
		"9223372036854775807", "9223372036854775807KiB", "99999999999999999999", " 3 GB ", "-1", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("Parse(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n <= 0 {
			t.Fatalf("Parse(%q) = %d, want > 0", s, n)
		}
		if v, perr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); perr == nil && v != n {
			t.Fatalf("Parse(%q) = %d, want %d", s, n, v)
		}
	})
}
