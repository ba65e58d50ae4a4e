package inflate

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"math/rand"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// ref inflates data with compress/flate: the output, whether the stream
// ended (io.EOF), whether it was corrupt, and how many bytes it read.
func ref(data []byte) (out []byte, done, corrupt bool, used int) {
	br := bytes.NewReader(data)
	out, err := io.ReadAll(flate.NewReader(br))
	used = len(data) - br.Len()
	switch {
	case err == nil:
		return out, true, false, used
	case errors.Is(err, io.ErrUnexpectedEOF):
		return out, false, false, used
	}
	var ce flate.CorruptInputError
	if !errors.As(err, &ce) {
		panic(err)
	}
	return out, false, true, used
}

// mine feeds data in the pieces sizes gives (cycled), as the zip code does:
// what a Write did not consume follows the stream.
func mine(data []byte, sizes func() int) (out []byte, done, corrupt bool, used int) {
	f := New(func(p []byte) error {
		if len(p) > windowSize {
			panic("chunk larger than the window")
		}
		out = append(out, p...)
		return nil
	})
	for off := 0; off < len(data); {
		k := min(len(data)-off, max(1, sizes()))
		n, err := f.Write(data[off : off+k])
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				panic(err)
			}
			return out, false, true, -1
		}
		if f.Done() {
			used = off + n
			if int64(used) != f.InputUsed() {
				panic("InputUsed disagrees with Write")
			}
			return out, true, false, used
		}
		if n != k {
			panic("short write before the end")
		}
		off += k
	}
	return out, false, false, len(data)
}

func check(t *testing.T, name string, data []byte, sizes func() int) {
	t.Helper()
	wo, wd, wc, wu := ref(data)
	got, d, c, u := mine(data, sizes)
	if d != wd || c != wc {
		t.Fatalf("%s: done %v corrupt %v, compress/flate done %v corrupt %v", name, d, c, wd, wc)
	}
	if d && u != wu {
		t.Fatalf("%s: used %d bytes, compress/flate %d", name, u, wu)
	}
	// a complete stream, or what was inflated before the error
	if (d || c) && !bytes.Equal(got, wo) {
		t.Fatalf("%s: output differs (%d vs %d bytes)", name, len(got), len(wo))
	}
}

func compress(t testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// sample is data with matches near and far, literal runs and random bytes.
func sample(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	for len(b) < n {
		switch r.Intn(4) {
		case 0:
			k := r.Intn(300)
			for range k {
				b = append(b, byte(r.Intn(256)))
			}
		case 1:
			k := r.Intn(500)
			for range k {
				b = append(b, "abcde"[r.Intn(5)])
			}
		default:
			if len(b) > 0 {
				d := 1 + r.Intn(min(len(b), 40000))
				k := r.Intn(400)
				for range k {
					b = append(b, b[len(b)-d])
				}
			}
		}
	}
	return b[:n]
}

var levels = []int{flate.HuffmanOnly, flate.NoCompression, flate.BestSpeed, 2, 5, flate.DefaultCompression, flate.BestCompression}

func splitters(r *rand.Rand) map[string]func() int {
	return map[string]func() int{
		"whole":  func() int { return 1 << 30 },
		"1 byte": func() int { return 1 },
		"random": func() int { return 1 + r.Intn(100) },
		"mixed":  func() int { return []int{1, 3, 7, 1000, 70000}[r.Intn(5)] },
	}
}

func TestDifferential(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, n := range []int{0, 1, 100, 5000, 100000, 300000} {
		data := sample(r, n)
		for _, lvl := range levels {
			c := compress(t, data, lvl)
			for sn, sz := range splitters(r) {
				if sn == "1 byte" && len(c) > 50000 {
					continue
				}
				check(t, "", c, sz)
				// trailing bytes are not part of the stream
				check(t, "trailing", append(append([]byte(nil), c...), "PK\x07\x08trailer"...), sz)
			}
		}
	}
}

// TestFarMatches covers distances of the whole window (32768), where the
// copy's source is the byte being written.
func TestFarMatches(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	blk := make([]byte, windowSize)
	r.Read(blk)
	data := bytes.Repeat(blk, 4)
	for _, lvl := range levels {
		c := compress(t, data, lvl)
		check(t, "far", c, func() int { return 1 << 30 })
		check(t, "far", c, func() int { return 1 + r.Intn(5000) })
	}
}

func TestTruncated(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	data := sample(r, 70000)
	for _, lvl := range levels {
		c := compress(t, data, lvl)
		for i := 0; i < len(c); i += 1 + r.Intn(97) {
			check(t, "truncated", c[:i], func() int { return 1 + r.Intn(64) })
			_, d, _, _ := mine(c[:i], func() int { return 1 << 30 })
			if d {
				t.Fatalf("level %d: Done after %d of %d bytes", lvl, i, len(c))
			}
		}
	}
}

func TestCorrupt(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	data := sample(r, 20000)
	var nrej int
	for _, lvl := range levels {
		c := compress(t, data, lvl)
		for range 400 {
			m := append([]byte(nil), c...)
			for range 1 + r.Intn(3) {
				m[r.Intn(len(m))] ^= byte(1 << r.Intn(8))
			}
			check(t, "corrupt", m, func() int { return 1 + r.Intn(300) })
			if _, _, c, _ := ref(m); c {
				nrej++
			}
		}
	}
	if nrej == 0 {
		t.Fatal("no corrupted stream was rejected")
	}
	// hand-made streams
	for name, s := range map[string][]byte{
		"block type 3":           {0x07},
		"stored length mismatch": {0x01, 0x01, 0x00, 0xff, 0xff, 'a'},
		"distance too far":       compressFixedFar(),
		"empty":                  {},
		"stored empty final":     {0x01, 0x00, 0x00, 0xff, 0xff},
	} {
		check(t, name, s, func() int { return 1 })
	}
}

// compressFixedFar is a fixed-Huffman block that starts with a match.
func compressFixedFar() []byte {
	// BFINAL=1, BTYPE=01; length symbol 257 (code 0000001, 7 bits), distance 0 (00000)
	return []byte{0x03, 0x02, 0x00, 0x00}
}

func TestCallbackError(t *testing.T) {
	c := compress(t, bytes.Repeat([]byte("x"), 100000), 6)
	stop := errors.New("stop")
	var got int
	f := New(func(p []byte) error {
		got += len(p)
		if got > 50000 {
			return stop
		}
		return nil
	})
	if _, err := f.Write(c); err != stop {
		t.Fatalf("Write: %v, want the callback's error", err)
	}
	if _, err := f.Write(c); err != stop || f.Done() {
		t.Fatalf("after an error: %v, done %v", err, f.Done())
	}
}

func FuzzInflate(f *testing.F) {
	r := rand.New(rand.NewSource(4))
	for _, lvl := range levels {
		f.Add(compress(f, sample(r, 3000), lvl), uint8(7))
	}
	f.Add(compress(f, nil, 6), uint8(1))
	f.Add([]byte{0x01, 0x00, 0x00, 0xff, 0xff}, uint8(2))
	f.Add(compressFixedFar(), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		i := 0
		sizes := func() int { i++; return 1 + int(split)*i%97 }
		check(t, "fuzz", data, sizes)
	})
}

// BenchmarkInflate compares Inflater (32 KiB writes, as the zip code gets
// them) with compress/flate reading the same stream in 32 KiB reads, on
// mixed data (matches near and far, literal runs) and tensor-like bytes (4
// bits of entropy each), both at the default level. cpu-MB/s is output per
// second of process CPU time, which a loaded machine distorts less.
func BenchmarkInflate(b *testing.B) {
	r := rand.New(rand.NewSource(5))
	tensor := make([]byte, 8<<20)
	r.Read(tensor)
	for i := range tensor {
		tensor[i] &= 0x0f
	}
	for _, d := range []struct {
		name string
		data []byte
	}{{"mixed", sample(r, 8<<20)}, {"tensor", tensor}} {
		c := compress(b, d.data, flate.DefaultCompression)
		b.Run(d.name+"/inflate", func(b *testing.B) {
			b.SetBytes(int64(len(d.data)))
			start := cpuTime()
			for b.Loop() {
				f := New(func(p []byte) error { return nil })
				for off := 0; off < len(c); off += 32 << 10 {
					if _, err := f.Write(c[off:min(len(c), off+32<<10)]); err != nil {
						b.Fatal(err)
					}
				}
				if !f.Done() {
					b.Fatal("not done")
				}
			}
			b.ReportMetric(float64(len(d.data))*float64(b.N)/(cpuTime()-start).Seconds()/1e6, "cpu-MB/s")
		})
		b.Run(d.name+"/compress-flate", func(b *testing.B) {
			b.SetBytes(int64(len(d.data)))
			buf := make([]byte, 32<<10)
			start := cpuTime()
			for b.Loop() {
				fr := flate.NewReader(bytes.NewReader(c))
				for {
					_, err := fr.Read(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(len(d.data))*float64(b.N)/(cpuTime()-start).Seconds()/1e6, "cpu-MB/s")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestMemoryBound: what an Inflater holds after a stream of many dynamic
// blocks with long codes, fed in 1-byte and 64 KiB writes, stays within
// the documented 88 KiB.
func TestMemoryBound(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	c := compress(t, sample(r, 4<<20), flate.BestCompression)
	for _, step := range []int{1, 64 << 10} {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		f := New(func([]byte) error { return nil })
		for off := 0; off < len(c); off += step {
			if _, err := f.Write(c[off:min(len(c), off+step)]); err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		held := int64(ms.HeapAlloc) - int64(base)
		runtime.KeepAlive(f)
		t.Logf("%d-byte writes: %d bytes held (subtables %d entries)", step, held, cap(f.lit.sub)+cap(f.dist.sub))
		if !f.Done() || held > 88<<10 {
			t.Fatalf("done %v, %d bytes held", f.Done(), held)
		}
	}
}
