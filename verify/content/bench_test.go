package content_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// cpuClock measures process CPU time (user+system). The shared CI machine
// is often oversubscribed, so wall-clock ns/op alone under-reports
// throughput; the cpu-* metrics show what the code itself costs.
type cpuClock struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{cpuNow()} }

// report adds cpu-ms/op and, when bytes > 0, cpu-MB/s.
func (c cpuClock) report(b *testing.B, bytes int64) {
	d := cpuNow() - c.start
	if d <= 0 || b.N == 0 {
		return
	}
	per := d / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds())/1000, "cpu-ms/op")
	if bytes > 0 {
		b.ReportMetric(float64(bytes)/per.Seconds()/1e6, "cpu-MB/s")
	}
}

// header16MiB returns a safetensors file prefix (8 + N header bytes) whose
// header is just under 16 MiB, with ~130k tensors, plus the data length.
func header16MiB() ([]byte, int64) {
	var sb strings.Builder
	sb.Grow(16 << 20)
	sb.WriteByte('{')
	sb.WriteString(`"__metadata__":{"format":"pt"}`)
	var off int64
	for i := 0; sb.Len() < 16<<20-256; i++ {
		fmt.Fprintf(&sb, `,"model.layers.%d.self_attn.q_proj.lora_A.weight":{"dtype":"BF16","shape":[2,3],"data_offsets":[%d,%d]}`, i, off, off+12)
		off += 12
	}
	sb.WriteByte('}')
	h := []byte(sb.String())
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h))
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	return append(out, h...), off
}

func BenchmarkSafetensorsHeader16MiB(b *testing.B) {
	hdr, dataLen := header16MiB()
	size := int64(len(hdr)) + dataLen
	b.SetBytes(int64(len(hdr)))
	b.ResetTimer()
	clk := startCPU()
	for i := 0; i < b.N; i++ {
		in := content.NewSafetensorsInspector(content.Options{}, size)
		for off := 0; off < len(hdr); off += 1 << 20 {
			if _, err := in.Write(hdr[off:min(off+1<<20, len(hdr))]); err != nil {
				b.Fatal(err)
			}
		}
		if !in.HeaderDone() {
			b.Fatal("header not done")
		}
	}
	b.StopTimer()
	clk.report(b, int64(len(hdr)))
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/header")
}

func BenchmarkSafetensorsStream(b *testing.B) {
	ts := []modelcorpus.STTensor{{Name: "w", DType: "BF16", Shape: []uint64{1 << 27}}} // 256 MiB
	h, dataLen := modelcorpus.SafetensorsHeader(ts, nil)
	prefix := modelcorpus.SafetensorsRaw(h, 0)
	size := int64(len(prefix)) + int64(dataLen)
	chunk := make([]byte, 1<<20)
	b.SetBytes(size)
	b.ResetTimer()
	clk := startCPU()
	for i := 0; i < b.N; i++ {
		in := content.NewSafetensorsInspector(content.Options{}, size)
		if _, err := in.Write(prefix); err != nil {
			b.Fatal(err)
		}
		for left := int64(dataLen); left > 0; left -= int64(len(chunk)) {
			if _, err := in.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
				b.Fatal(err)
			}
		}
		if err := in.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	clk.report(b, size)
}

// benchStream feeds data in chunks of chunk bytes through a fresh
// inspector per iteration, reporting throughput and CPU time.
func benchStream(b *testing.B, data []byte, chunk int, newInspector func() content.Inspector) {
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	clk := startCPU()
	for i := 0; i < b.N; i++ {
		in := newInspector()
		for off := 0; off < len(data); off += chunk {
			if _, err := in.Write(data[off:min(off+chunk, len(data))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := in.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	clk.report(b, int64(len(data)))
}

func BenchmarkPickleWalker(b *testing.B) {
	data := modelcorpus.BigStateDict(20000, 2)
	opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	benchStream(b, data, 64<<10, func() content.Inspector { return content.NewPickleInspector(opts, int64(len(data))) })
}

func BenchmarkTorchZipStream(b *testing.B) {
	ts := []modelcorpus.TorchTensor{{Name: "w", StorageType: "FloatStorage", Key: "0", Shape: []int64{1 << 22}}} // 16 MiB
	data := modelcorpus.TorchZip(ts)
	opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	benchStream(b, data, 1<<20, func() content.Inspector { return content.NewZipInspector(opts, int64(len(data))) })
}
