package content_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"runtime"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// Every validator streams: the proof is a model file of at least 1 GiB per
// format, generated as it is fed (literal headers and records around a
// bulk of one reused 1 MiB block of random bytes: never stored on disk or
// in memory), through the validator as the proxy feeds it, in 1 MiB
// chunks. BenchmarkStream1GiB reports each validator's MB/s over it; the
// memory test below checks the live heap stays under streamBound however
// large the file. Adding a format is one entry in streamSamples.

// streamBulk is the bulk of every sample (tensor data, initializers,
// storages): 1 GiB.
const streamBulk = 1 << 30

// streamBound is the memory bound every validator is held to (issue 15:
// at most 64 MiB whatever the file size).
const streamBound = 64 << 20

// streamChunk is the write size (what the proxy's copy loop hands over).
const streamChunk = 1 << 20

// streamBlock is the 1 MiB block the bulk repeats: random bytes (a fixed
// seed), so no validator sees a run of zeros it could take a shortcut on.
var streamBlock = sync.OnceValue(func() []byte {
	b := make([]byte, streamChunk)
	rand.New(rand.NewSource(15)).Read(b)
	return b
})

// streamBulkCRC is the CRC-32 of streamBulk bytes of the block (for zip
// headers), computed once.
var streamBulkCRC = sync.OnceValue(func() uint32 {
	var c uint32
	for range streamBulk / streamChunk {
		c = crc32.Update(c, crc32.IEEETable, streamBlock())
	}
	return c
})

// streamSample is one generated file: literal parts (headers, small
// records) and bulk parts (a count of bytes of the repeated block) in file
// order; the bulk parts add up to streamBulk.
type streamSample struct {
	name      string
	parts     []streamPart
	inspector func(size int64) content.Inspector
}

// streamPart is literal bytes, or bulk bytes of the repeated block.
type streamPart struct {
	lit  []byte
	bulk int64
}

func lit(b []byte) streamPart { return streamPart{lit: b} }
func bulk(n int64) streamPart { return streamPart{bulk: n} }

// headed is a head, the whole bulk, then tails.
func headed(head []byte, tails ...[]byte) []streamPart {
	ps := []streamPart{lit(head), bulk(streamBulk)}
	for _, t := range tails {
		ps = append(ps, lit(t))
	}
	return ps
}

func (s streamSample) size() int64 {
	var n int64
	for _, p := range s.parts {
		n += int64(len(p.lit)) + p.bulk
	}
	return n
}

// feed writes the file through in (literal parts whole, bulk in
// streamChunk writes, calling every after each 128 MiB of bulk), then
// closes it.
func (s streamSample) feed(in content.Inspector, every func()) error {
	block := streamBlock()
	var done int64
	for _, p := range s.parts {
		if len(p.lit) > 0 {
			if _, err := in.Write(p.lit); err != nil {
				return err
			}
		}
		for left := p.bulk; left > 0; {
			n := min(left, int64(len(block)))
			if _, err := in.Write(block[:n]); err != nil {
				return err
			}
			left -= n
			done += n
			if every != nil && done%(128<<20) == 0 {
				every()
			}
		}
	}
	return in.Close()
}

// streamSamples are the ≥ 1 GiB samples, one per validator, each laid
// out as the format's writer lays it out.
var streamSamples = sync.OnceValue(func() []streamSample {
	scan := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	st := safetensorsSample()
	return []streamSample{
		st,
		ggufSample(),
		npySample(),
		onnxSample(),
		torchZipSample(scan),
		pickleSample(scan),
		// The dispatcher (NewInspector) as the proxy runs it: the
		// executable sniff and format detection on the first 4 KiB, then
		// the format's validator. An Ollama tensor layer is raw data (the
		// opaque path: size check, speculative pickle walk, end-of-blob
		// zip watch); a ModelPack weight layer named model.safetensors.
		{name: "dispatch-ollama-tensor", parts: []streamPart{bulk(streamBulk)}, inspector: func(size int64) content.Inspector {
			return mustInspector(content.NewInspector(content.Options{}, "application/vnd.ollama.image.tensor", "", size))
		}},
		{name: "dispatch-modelpack-safetensors", parts: st.parts, inspector: func(size int64) content.Inspector {
			return mustInspector(content.NewInspector(content.Options{}, "application/vnd.cncf.model.weight.v1.raw", "model.safetensors", size))
		}},
	}
})

func mustInspector(in content.Inspector, err error) content.Inspector {
	if err != nil {
		panic(err)
	}
	return in
}

// safetensorsSample: one U8 tensor of 1 GiB (modelcorpus.SafetensorsRaw:
// 8-byte length, JSON header padded to 8 bytes).
func safetensorsSample() streamSample {
	h := fmt.Sprintf(`{"__metadata__":{"format":"pt"},"model.embed_tokens.weight":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}`, streamBulk, streamBulk)
	return streamSample{name: "safetensors", parts: headed(modelcorpus.SafetensorsRaw(h, 0)),
		inspector: func(size int64) content.Inspector { return content.NewSafetensorsInspector(content.Options{}, size) }}
}

// ggufSample: modelcorpus.GGUF's layout (v3, ValidGGUFSpec's metadata, the
// tensor infos padded to 32 bytes) with one F32 tensor of 1 GiB. The
// header is written for an 8-element tensor and its dimension patched, so
// the generator never writes the data.
func ggufSample() streamSample {
	spec := modelcorpus.ValidGGUFSpec()
	spec.Tensors = []modelcorpus.GGUFTensor{{Name: "token_embd.weight", Dims: []uint64{8}, Type: 0}}
	b := modelcorpus.GGUF(spec)
	head := b[:len(b)-32] // the 8 float32 of data
	var dim [8]byte
	binary.LittleEndian.PutUint64(dim[:], 8)
	at := bytes.LastIndex(head, append([]byte("token_embd.weight\x01\x00\x00\x00"), dim[:]...))
	if at < 0 {
		panic("gguf sample: tensor info not found")
	}
	binary.LittleEndian.PutUint64(head[at+len("token_embd.weight")+4:], streamBulk/4)
	return streamSample{name: "gguf", parts: headed(head),
		inspector: func(size int64) content.Inspector { return content.NewGGUFInspector(content.Options{}, size) }}
}

// npySample: a .npy of 2^28 float32 as numpy's _wrap_header writes it
// (version 1.0, header padded with spaces to a 64-byte boundary).
func npySample() streamSample {
	return streamSample{name: "npy", parts: headed(npyFile(1, npyHeader("'<f4'", fmt.Sprintf("(%d,)", streamBulk/4)), nil)),
		inspector: func(size int64) content.Inspector { return content.NewNPYInspector(content.Options{}, size) }}
}

// onnxSample: a ModelProto whose graph (modelcorpus.BenignONNX's nodes and
// initializers) gains an initializer of 1 GiB of raw_data, the layout
// onnx.save writes for large inline initializers.
func onnxSample() streamSample {
	tensor := protowire.AppendTag(nil, 1, protowire.VarintType)
	tensor = protowire.AppendVarint(tensor, streamBulk/4)
	tensor = protowire.AppendTag(tensor, 2, protowire.VarintType)
	tensor = protowire.AppendVarint(tensor, 1) // FLOAT
	tensor = protowire.AppendTag(tensor, 8, protowire.BytesType)
	tensor = protowire.AppendString(tensor, "lm_head.weight")
	tensor = protowire.AppendTag(tensor, 9, protowire.BytesType)
	tensor = protowire.AppendVarint(tensor, streamBulk)
	graph := modelcorpus.ONNXGraphProto(modelcorpus.BenignONNX(16).Graph)
	graph = protowire.AppendTag(graph, 5, protowire.BytesType)
	graph = protowire.AppendVarint(graph, uint64(len(tensor)+streamBulk))
	graph = append(graph, tensor...)
	model := protowire.AppendTag(nil, 1, protowire.VarintType)
	model = protowire.AppendVarint(model, 10)
	model = protowire.AppendTag(model, 7, protowire.BytesType)
	model = protowire.AppendVarint(model, uint64(len(graph)+streamBulk))
	model = append(model, graph...)
	return streamSample{name: "onnx", parts: headed(model),
		inspector: func(size int64) content.Inspector { return content.NewONNXInspector(content.Options{}, size) }}
}

// torchZipSample: a torch.save checkpoint (zip: archive/data.pkl, the
// state-dict pickle modelcorpus writes, archive/byteorder, then
// archive/data/0, one float32 storage of 1 GiB, stored, then
// archive/version), written by Go's archive/zip with the bulk's size and
// CRC in the headers; the bulk is counted through the writer, not kept.
func torchZipSample(opts content.Options) streamSample {
	tensors := []modelcorpus.TorchTensor{{Name: "model.embed_tokens.weight", StorageType: "FloatStorage", Key: "0", Shape: []int64{streamBulk / 4}}}
	var rec recordingWriter
	zw := zip.NewWriter(&rec)
	put := func(name string, data []byte) {
		w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Store, CRC32: crc32.ChecksumIEEE(data),
			CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data))})
		if err != nil {
			panic(err)
		}
		w.Write(data)
	}
	put("archive/data.pkl", modelcorpus.StateDictPickle(tensors, 2))
	put("archive/byteorder", []byte("little"))
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "archive/data/0", Method: zip.Store, CRC32: streamBulkCRC(),
		CompressedSize64: streamBulk, UncompressedSize64: streamBulk})
	if err != nil {
		panic(err)
	}
	zw.Flush() // the zip writer buffers: its local header belongs to the head
	rec.gap(w, streamBulk)
	zw.Flush()
	put("archive/version", []byte("3\n"))
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return streamSample{name: "torch-zip", parts: headed(rec.head, rec.tail.Bytes()),
		inspector: func(size int64) content.Inspector { return content.NewZipInspector(opts, size) }}
}

// recordingWriter keeps what a writer writes before and after one gap
// whose bytes are counted, not kept.
type recordingWriter struct {
	head          []byte
	tail          bytes.Buffer
	inGap, gapped bool
}

func (r *recordingWriter) Write(p []byte) (int, error) {
	switch {
	case r.inGap:
		return len(p), nil
	case r.gapped:
		return r.tail.Write(p)
	}
	r.head = append(r.head, p...)
	return len(p), nil
}

// gap writes n bytes of the bulk through w (the zip writer counts them)
// without keeping them; the caller flushes w's buffer before and after.
func (r *recordingWriter) gap(w io.Writer, n int64) {
	r.inGap = true
	block := streamBlock()
	for left := n; left > 0; left -= int64(len(block)) {
		w.Write(block[:min(left, int64(len(block)))])
	}
	r.inGap, r.gapped = false, true
}

// pickleSample: a protocol-4 pickle of a list of 64 bytes objects of
// 16 MiB each (PROTO 4, EMPTY_LIST, MARK, BINBYTES8 x 64, APPENDS, STOP;
// 16 MiB is the walker's default cap on one argument): the walker's path
// over large arguments. The opcode-dense case (a 20,000-tensor state
// dict) is BenchmarkPickleWalker.
func pickleSample(opts content.Options) streamSample {
	const per = 16 << 20
	ps := []streamPart{lit([]byte{0x80, 4, ']', '('})}
	for range streamBulk / per {
		ps = append(ps, lit(append([]byte{0x8e}, binary.LittleEndian.AppendUint64(nil, per)...)), bulk(per))
	}
	ps = append(ps, lit([]byte{'e', '.'}))
	return streamSample{name: "pickle", parts: ps,
		inspector: func(size int64) content.Inspector { return content.NewPickleInspector(opts, size) }}
}

// BenchmarkStream1GiB reports each validator's throughput over a ≥ 1 GiB
// sample (MB/s from b.SetBytes; cpu-MB/s from process CPU time, which the
// shared machine's load distorts less).
func BenchmarkStream1GiB(b *testing.B) {
	for _, s := range streamSamples() {
		b.Run(s.name, func(b *testing.B) {
			streamBulkCRC()
			b.SetBytes(s.size())
			b.ReportAllocs()
			b.ResetTimer()
			clk := startCPU()
			for b.Loop() {
				if err := s.feed(s.inspector(s.size()), nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			clk.report(b, s.size())
		})
	}
}

// TestValidatorsStreamInBoundedMemory feeds every ≥ 1 GiB sample through
// its validator and measures the live heap (after a forced GC, so garbage
// not yet collected does not count) after every 128 MiB of bulk: its
// growth over the start must stay under streamBound, and so must all it
// allocates over the stream (no allocation per chunk). The validator is
// being fed, so whatever it holds is counted. No timing is asserted.
func TestValidatorsStreamInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 1 GiB per validator")
	}
	for _, s := range streamSamples() {
		t.Run(s.name, func(t *testing.T) {
			streamBulkCRC()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			base, total := int64(ms.HeapAlloc), ms.TotalAlloc
			var peak int64
			in := s.inspector(s.size())
			sample := func() {
				runtime.GC()
				runtime.ReadMemStats(&ms)
				peak = max(peak, int64(ms.HeapAlloc)-base)
			}
			if err := s.feed(in, sample); err != nil {
				t.Fatalf("%s sample of %d bytes refused: %v", s.name, s.size(), err)
			}
			if !in.HeaderDone() {
				t.Fatal("HeaderDone false after Close")
			}
			runtime.KeepAlive(in)
			runtime.ReadMemStats(&ms)
			allocated := ms.TotalAlloc - total
			t.Logf("%s: %d bytes streamed, live heap growth at most %.2f MiB, %.2f MiB allocated in all", s.name, s.size(), float64(peak)/(1<<20), float64(allocated)/(1<<20))
			if peak > streamBound {
				t.Fatalf("%s: live heap grew by %d bytes streaming %d bytes (bound %d)", s.name, peak, s.size(), streamBound)
			}
			// Nor may a validator allocate in proportion to the file
			// (garbage a busy proxy would collect per pulled GiB).
			if allocated > streamBound {
				t.Fatalf("%s: %d bytes allocated streaming %d bytes (bound %d)", s.name, allocated, s.size(), streamBound)
			}
		})
	}
}

// deflatedSegment is 1 MiB of tensor-like bytes (4 bits of entropy a byte,
// with repeats near and 3 KiB back) and its deflate encoding by
// compress/flate at level 1, ended by a sync flush (non-final blocks that
// end on a byte boundary and refer only to their own bytes): repeated,
// then closed by a final empty block, it is one valid deflate stream of
// any length, generated as it is fed.
var deflatedSegment = sync.OnceValues(func() (raw, seg []byte) {
	raw = make([]byte, streamChunk)
	for i, x := range streamBlock() {
		raw[i] = x & 0x0f
	}
	for j := 8192; j+512 <= len(raw); j += 8192 {
		copy(raw[j:j+512], raw[j-3000:])
	}
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	w.Write(raw)
	w.Flush()
	return raw, b.Bytes()
})

// deflateFinal is a final fixed-Huffman block with only its end of block.
var deflateFinal = []byte{0x03, 0x00}

// TestZipDeflatedMemberStreams: a zip whose one deflated member inflates
// to 256 MiB (128 MiB compressed; a zipped SavedModel or
// np.savez_compressed output), its sizes in the local header or in a data
// descriptor, is accepted with the live heap growing by little: the member
// is inflated as it arrives (verify/content/inflate), not buffered. Before,
// it was refused (MaxDeflatedMember, 64 MiB of compressed bytes buffered);
// with the cap raised, the whole compressed member was held.
func TestZipDeflatedMemberStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	raw, seg := deflatedSegment()
	const copies = 256
	var crc uint32
	for range copies {
		crc = crc32.Update(crc, crc32.IEEETable, raw)
	}
	csize := int64(copies*len(seg) + len(deflateFinal))
	for _, dd := range []bool{false, true} {
		t.Run(fmt.Sprintf("descriptor=%v", dd), func(t *testing.T) {
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			base := int64(ms.HeapAlloc)
			var peak int64
			in := content.NewZipInspector(content.Options{}, -1)
			zw := zip.NewWriter(writerFunc(func(p []byte) (int, error) { return in.Write(p) }))
			fh := &zip.FileHeader{Name: "saved_model/variables/variables.data-00000-of-00001", Method: zip.Deflate,
				CRC32: crc, CompressedSize64: uint64(csize), UncompressedSize64: copies * uint64(len(raw))}
			if dd {
				fh.Flags = 0x8
			}
			w, err := zw.CreateRaw(fh)
			if err != nil {
				t.Fatal(err)
			}
			for i := range copies {
				if _, err := w.Write(seg); err != nil {
					t.Fatalf("after %d MiB: %v", i, err)
				}
				if i%32 == 31 {
					runtime.GC()
					runtime.ReadMemStats(&ms)
					peak = max(peak, int64(ms.HeapAlloc)-base)
				}
			}
			if _, err := w.Write(deflateFinal); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			if err := in.Close(); err != nil {
				t.Fatalf("refused: %v", err)
			}
			runtime.KeepAlive(in)
			t.Logf("%d MiB deflated member (%d compressed bytes): live heap growth at most %.2f MiB", copies, csize, float64(peak)/(1<<20))
			if peak > 4<<20 {
				t.Fatalf("live heap grew by %d bytes", peak)
			}
		})
	}
}
