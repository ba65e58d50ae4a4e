package content

import (
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// TestValidUTF8 checks the vocabulary UTF-8 DFA against utf8.Valid on every
// string of up to 3 bytes, every 4-byte string starting with a lead byte
// F0-F4 whose other bytes are continuation or boundary bytes, and random
// strings up to 40 bytes (past the utf8.Valid cut-over).
func TestValidUTF8(t *testing.T) {
	check := func(p []byte) {
		if got, want := validUTF8(p), utf8.Valid(p); got != want {
			t.Fatalf("validUTF8(% x) = %v, utf8.Valid = %v", p, got, want)
		}
	}
	check(nil)
	var p [4]byte
	for a := 0; a < 256; a++ {
		p[0] = byte(a)
		check(p[:1])
		for b := 0; b < 256; b++ {
			p[1] = byte(b)
			check(p[:2])
			for c := 0; c < 256; c++ {
				p[2] = byte(c)
				check(p[:3])
			}
		}
	}
	edge := []byte{0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff}
	for a := 0xf0; a <= 0xf4; a++ {
		for b := 0; b < 256; b++ {
			for _, c := range edge {
				for _, d := range edge {
					p = [4]byte{byte(a), byte(b), c, d}
					check(p[:])
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	pieces := [][]byte{[]byte("a"), []byte("\u0120"), []byte("\u4e2d"), []byte("\U0001F600"), {0x80}, {0xc3}, {0xed, 0xa0, 0x80}, {0xf4, 0x90}, {0xe0, 0x80}}
	for i := 0; i < 200000; i++ {
		var s []byte
		for len(s) < 1+r.IntN(40) {
			s = append(s, pieces[r.IntN(len(pieces))]...)
		}
		check(s)
	}
}

func FuzzValidUTF8(f *testing.F) {
	for _, s := range []string{"", "a", "\u0120hello", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "token\xe4\xb8"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := validUTF8(p), utf8.Valid(p); got != want {
			t.Fatalf("validUTF8(% x) = %v, utf8.Valid = %v", p, got, want)
		}
	})
}
