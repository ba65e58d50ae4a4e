package chattemplate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// unescapePython resolves a Jinja string literal's escapes exactly as jinja2's
// lexer does: value.encode("ascii", "backslashreplace").decode("unicode-escape").
// Non-ASCII characters are first replaced by \xNN, \uNNNN or \UNNNNNNNN (so a
// backslash before one escapes the backslash-replacement, as in Python), then
// the ASCII text is decoded with Python's unicode-escape rules: \\ \' \" \a \b
// \f \n \r \t \v, \<newline>, octal \ooo, \xNN, \uNNNN, \UNNNNNNNN, \N{name};
// any other backslash stays.
//
// \N{name} resolves the names of printable ASCII characters (case-insensitive,
// as Python); any other name becomes U+FFFD. Unicode gives no alias to an
// ASCII letter, digit or "_", so a name that is not in the table can never
// produce one of the characters the checks look for.
func unescapePython(rs []rune) (string, error) {
	var b []byte
	for _, r := range rs {
		switch {
		case r < 0x80:
			b = append(b, byte(r))
		case r <= 0xff:
			b = append(b, fmt.Sprintf(`\x%02x`, r)...)
		case r <= 0xffff:
			b = append(b, fmt.Sprintf(`\u%04x`, r)...)
		default:
			b = append(b, fmt.Sprintf(`\U%08x`, r)...)
		}
	}
	var out strings.Builder
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out.WriteByte(c)
			continue
		}
		i++
		if i >= len(b) {
			return "", errors.New("\\ at end of string")
		}
		c = b[i]
		switch c {
		case '\n':
		case '\\', '\'', '"':
			out.WriteByte(c)
		case 'a':
			out.WriteByte(7)
		case 'b':
			out.WriteByte(8)
		case 'f':
			out.WriteByte(12)
		case 'n':
			out.WriteByte('\n')
		case 'r':
			out.WriteByte('\r')
		case 't':
			out.WriteByte('\t')
		case 'v':
			out.WriteByte(11)
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := rune(c - '0')
			for k := 0; k < 2 && i+1 < len(b) && b[i+1] >= '0' && b[i+1] <= '7'; k++ {
				i++
				v = v*8 + rune(b[i]-'0')
			}
			out.WriteRune(v)
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			if i+n >= len(b) || !allHex(b[i+1:i+1+n]) {
				return "", fmt.Errorf("truncated \\%c%s escape", c, strings.Repeat("X", n))
			}
			v, _ := strconv.ParseUint(string(b[i+1:i+1+n]), 16, 32)
			if v > 0x10ffff {
				return "", errors.New("illegal Unicode character")
			}
			i += n
			if v >= 0xd800 && v <= 0xdfff {
				v = utf8.RuneError // a lone surrogate: no ASCII character
			}
			out.WriteRune(rune(v))
		case 'N':
			if i+1 >= len(b) || b[i+1] != '{' {
				return "", errors.New("malformed \\N character escape")
			}
			j := i + 2
			for j < len(b) && b[j] != '}' {
				j++
			}
			if j >= len(b) || j == i+2 {
				return "", errors.New("malformed \\N character escape")
			}
			if r, ok := asciiNames[strings.ToUpper(string(b[i+2:j]))]; ok {
				out.WriteRune(r)
			} else {
				out.WriteRune(utf8.RuneError)
			}
			i = j
		default:
			out.WriteByte('\\')
			out.WriteByte(c)
		}
	}
	return out.String(), nil
}

func allHex(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// pyRepr quotes s roughly as Python's repr does, for messages.
func pyRepr(s string) string {
	q := strconv.Quote(s)
	if !strings.Contains(s, "'") {
		q = "'" + strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`) + "'"
	}
	return q
}
