// Package bytesize parses the byte sizes written in the policy file and the
// proxy configuration ("16MiB", "512KiB", "100MB", "1048576"). It imports
// only the standard library.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Parse parses a byte size: a plain integer, or a number with one of the
// units B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of
// 1024). Sizes must be positive and fit in an int64.
func Parse(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q must start with a number", s)
	}
	n, err := strconv.ParseUint(s[:i], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	unit := strings.TrimSpace(s[i:])
	mult := map[string]uint64{
		"": 1, "B": 1,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q has unknown unit %q", s, unit)
	}
	if n == 0 {
		return 0, fmt.Errorf("size %q must be greater than zero", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(n * mult), nil
}
