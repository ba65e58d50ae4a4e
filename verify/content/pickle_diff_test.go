package content

// Differential check of the table-driven walker against the switch it
// replaced (oldPickleWalker, pickle_old_test.go): the same bytes, cut at the
// same random chunk boundaries, must give the same consumed counts, events,
// findings (offset and reason), walker state and Globals().

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

type feeder interface {
	feed(b []byte, base int64) (int, uint8, error)
}

var diffConfigs = []struct {
	name   string
	opts   Options
	joblib bool
}{
	{"default", Options{}, false},
	{"joblib", Options{}, true},
	{"policy", Options{Pickle: PickleOptions{Allow: []string{"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
		"torch.FloatStorage", "__main__.Foo", "pkg.mod:Outer.Inner", "os.system", "numpy.dtype", "builtins.set", "numpy.ndarray",
		"numpy.core.multiarray._reconstruct", "joblib.numpy_pickle.NumpyArrayWrapper"}}}, false},
	{"limits", Options{Pickle: PickleOptions{MaxOps: 60, MaxStack: 9, MaxMemo: 5, MaxString: 100}}, false},
	{"joblib-limits", Options{Pickle: PickleOptions{MaxOps: 300, MaxStack: 20, MaxMemo: 30, MaxString: 300}}, true},
}

func diffWalkers(cfg int) (*pickleWalker, feeder, *pickleWalker, feeder) {
	c := diffConfigs[cfg]
	mk := func() *pickleWalker {
		return newPickleWalkerWith(c.opts, FormatPickle, pickleAllowFor(c.opts, c.joblib), c.joblib)
	}
	nw, ow := mk(), mk()
	return nw, nw, ow, &oldPickleWalker{ow}
}

func walkerState(w *pickleWalker) string {
	st := fmt.Sprint(len(w.stack))
	if len(w.stack) < 40 {
		st = fmt.Sprint(w.stack)
	}
	return fmt.Sprintf("ops=%d stack=%s marks=%v memo=%d/%d/%d frameEnd=%d proto=%d in=%v pickles=%d arena=%d tuples=%d dicts=%d/%d wrappers=%d storages=%d result=%v block=%+v",
		w.ops, st, w.marks, w.memoCount, len(w.memo), len(w.memoSparse), w.frameEnd, w.proto, w.inPickle, w.pickles,
		len(w.arena), len(w.tuples), len(w.dicts), w.dictItems, len(w.wrappers), len(w.storages), w.result, w.block)
}

// diffTrace feeds data cut at cuts (increasing offsets) and records every
// feed call's outcome and the walker state after it.
func diffTrace(w *pickleWalker, f feeder, data []byte, cuts []int) []string {
	var out []string
	var buf []byte
	base, pos := int64(0), 0
	for _, cut := range append(cuts, len(data)) {
		buf = append(buf, data[pos:cut]...)
		pos = cut
		for len(buf) > 0 {
			c, ev, err := f.feed(buf, base)
			out = append(out, fmt.Sprintf("feed(%d@%d) = %d ev=%d err=%v | %s", len(buf), base, c, ev, err, walkerState(w)))
			if err != nil {
				return append(out, fmt.Sprint(w.Globals()))
			}
			buf = buf[c:]
			base += int64(c)
			if ev == evMore {
				break
			}
		}
	}
	return append(out, fmt.Sprint(w.Globals()), fmt.Sprint(w.storages))
}

func randomCuts(n int, seed uint64) []int {
	if seed == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	maxChunk := 1 + int(seed%97)
	var cuts []int
	for p := rng.IntN(maxChunk) + 1; p < n; p += rng.IntN(maxChunk) + 1 {
		cuts = append(cuts, p)
	}
	return cuts
}

func checkDifferential(t *testing.T, data []byte, seed uint64) {
	t.Helper()
	cuts := randomCuts(len(data), seed)
	for cfg := range diffConfigs {
		nw, nf, ow, of := diffWalkers(cfg)
		got, want := diffTrace(nw, nf, data, cuts), diffTrace(ow, of, data, cuts)
		for i := 0; i < max(len(got), len(want)); i++ {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Fatalf("%s, seed %d, %d bytes, step %d:\n new: %s\n old: %s", diffConfigs[cfg].name, seed, len(data), i, g, w)
			}
		}
	}
}

// diffSeeds gathers pickles: the generated ones of the fuzz targets, every
// pickle the real model corpus carries (files, zip members, object NPY
// payloads) and the local fuzz caches of the pickle-walking targets.
func diffSeeds(t testing.TB) [][]byte {
	seeds := [][]byte{
		modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2),
		modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 4),
		modelcorpus.OsSystemPickle(), modelcorpus.BuiltinsEvalPickle(), modelcorpus.StackGlobalViaMemoPickle(),
		modelcorpus.PkgutilResolveNamePickle(), modelcorpus.BrokenPayloadFirstPickle(), modelcorpus.BrokenPickle(),
		modelcorpus.SubprocessPopenPickle(), modelcorpus.NonLiteralStackGlobalPickle(), modelcorpus.ReduceNonGlobalPickle(),
		modelcorpus.ExtOpcodePickle(), modelcorpus.DeepStackPickle(100),
		modelcorpus.LegacyTorch(modelcorpus.SmallTorchModel(), nil),
		modelcorpus.BigStateDict(50, 2), modelcorpus.BigStateDict(50, 4),
		[]byte("(dp0\nVa\np1\nI1\ns."),
	}
	root := "../../../shared/model-corpus"
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		seeds = append(seeds, corpusPicklesOf(b)...)
		return nil
	})
	if err != nil {
		t.Fatalf("model corpus: %v", err)
	}
	if c, err := os.UserCacheDir(); err == nil {
		gc := os.Getenv("GOCACHE")
		if gc == "" {
			gc = filepath.Join(c, "go-build")
		}
		for _, target := range []string{"FuzzPickle", "FuzzPickleRules", "FuzzJoblib", "FuzzNPY", "FuzzInspector", "FuzzPickleDifferential"} {
			seeds = append(seeds, fuzzCacheInputs(filepath.Join(gc, "fuzz/github.com/pullgate/pullgate/verify/content", target))...)
		}
	}
	return seeds
}

func corpusPicklesOf(b []byte) [][]byte {
	npyPayload := func(d []byte) []byte {
		if !bytes.HasPrefix(d, []byte("\x93NUMPY")) || len(d) < 12 {
			return nil
		}
		hl := 10 + int(binary.LittleEndian.Uint16(d[8:]))
		if d[6] >= 2 {
			hl = 12 + int(binary.LittleEndian.Uint32(d[8:]))
		}
		if hl > len(d) {
			return nil
		}
		return d[hl:]
	}
	if !bytes.HasPrefix(b, []byte("PK\x03\x04")) {
		if p := npyPayload(b); p != nil {
			return [][]byte{p}
		}
		return [][]byte{b}
	}
	var out [][]byte
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return [][]byte{b}
	}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			continue
		}
		d, _ := io.ReadAll(rc)
		rc.Close()
		if p := npyPayload(d); p != nil {
			d = p
		}
		if len(d) > 0 && len(d) < 4<<20 {
			out = append(out, d)
		}
	}
	return out
}

// fuzzCacheInputs reads the first []byte of each "go test fuzz v1" file.
func fuzzCacheInputs(dir string) [][]byte {
	ents, _ := os.ReadDir(dir)
	var out [][]byte
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if q, ok := strings.CutPrefix(l, "[]byte("); ok {
				if s, err := strconv.Unquote(strings.TrimSuffix(q, ")")); err == nil {
					out = append(out, []byte(s))
				}
				break
			}
		}
	}
	return out
}

func TestPickleDifferentialSeeds(t *testing.T) {
	seeds := diffSeeds(t)
	t.Logf("%d seed inputs", len(seeds))
	for i, s := range seeds {
		for _, seed := range []uint64{0, 1, 2, uint64(i)*7919 + 3, uint64(len(s))} {
			checkDifferential(t, s, seed)
		}
	}
}

func FuzzPickleDifferential(f *testing.F) {
	for i, s := range diffSeeds(f) {
		f.Add(s, uint64(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		checkDifferential(t, data, seed)
	})
}

func BenchmarkPickleFeed(b *testing.B) {
	data := modelcorpus.BigStateDict(20000, 2)
	for _, impl := range []string{"old", "new"} {
		b.Run(impl, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				w := newPickleWalker(Options{}, FormatPickle)
				w.presize(int64(len(data)))
				var f feeder = w
				if impl == "old" {
					f = &oldPickleWalker{w}
				}
				for off := 0; off < len(data); {
					c, ev, err := f.feed(data[off:min(off+64<<10, len(data))], int64(off))
					if err != nil {
						b.Fatal(err)
					}
					if ev == evStop {
						break
					}
					off += c
				}
			}
		})
	}
}

func TestPickleFeedCPU(t *testing.T) {
	if os.Getenv("PICKLE_CPU") == "" {
		t.Skip("set PICKLE_CPU=1")
	}
	data := modelcorpus.BigStateDict(20000, 2)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	threadCPU := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(1, &ru) // RUSAGE_THREAD
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var opsCount int64
	run := func(old bool) time.Duration {
		var d time.Duration
		for k := 0; k < 5; k++ {
			w := newPickleWalker(Options{}, FormatPickle)
			w.presize(int64(len(data)))
			var f feeder = w
			if old {
				f = &oldPickleWalker{w}
			}
			t0 := threadCPU()
			for off := 0; off < len(data); {
				c, ev, err := f.feed(data[off:min(off+64<<10, len(data))], int64(off))
				if err != nil {
					t.Fatal(err)
				}
				if ev == evStop {
					break
				}
				off += c
			}
			d += threadCPU() - t0
			opsCount = w.ops
		}
		return d
	}
	var olds, news []time.Duration
	for r := 0; r < 40; r++ {
		if r%2 == 0 {
			olds = append(olds, run(true))
			news = append(news, run(false))
		} else {
			news = append(news, run(false))
			olds = append(olds, run(true))
		}
		runtime.GC()
	}
	slices.Sort(olds)
	slices.Sort(news)
	t.Logf("%d opcodes; thread CPU per 5 walks of %d bytes: old median %v (min %v), new median %v (min %v)", opsCount, len(data), olds[len(olds)/2], olds[0], news[len(news)/2], news[0])
}
