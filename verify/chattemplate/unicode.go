package chattemplate

// rangeTable is a sorted list of inclusive code point ranges.
type rangeTable [][2]rune

func (t rangeTable) has(r rune) bool {
	lo, hi := 0, len(t)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch {
		case r < t[m][0]:
			hi = m
		case r > t[m][1]:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// isSpace is Python's \s (str.isspace).
func isSpace(r rune) bool {
	return r < 0x80 && (r == ' ' || r >= 9 && r <= 13 || r >= 0x1c && r <= 0x1f) || r >= 0x80 && pySpace.has(r)
}

// isDigit is Python's \d for str patterns (Unicode decimal digits).
func isDigit(r rune) bool { return r >= '0' && r <= '9' || r >= 0x80 && pyDigit.has(r) }

// isNameChar is the character class of jinja2's name regex.
func isNameChar(r rune) bool {
	if r < 0x80 {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_'
	}
	return jinjaNameChar.has(r)
}

// isIdentifier is Python's str.isidentifier.
func isIdentifier(rs []rune) bool {
	if len(rs) == 0 {
		return false
	}
	for i, r := range rs {
		if r < 0x80 {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || i > 0 && r >= '0' && r <= '9' {
				continue
			}
			return false
		}
		if i == 0 && !pyIDStart.has(r) || i > 0 && !pyIDContinue.has(r) {
			return false
		}
	}
	return true
}
