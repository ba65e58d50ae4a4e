package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// generate writes n distinct blobs of size bytes into the filesystem store
// at dir, in the layout pullgate's store uses
// (blobs/sha256/<2>/<hex>/data), directly: no pullgate, no registry. Blob
// i is the 8 bytes of i, the 8 bytes of seed and filler, so that stores
// generated with other seeds do not share blobs. It returns how long it
// took.
func generate(dir string, n, size int, seed uint64) (time.Duration, error) {
	start := time.Now()
	root := filepath.Join(dir, "blobs", "sha256")
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("%02x", i)), 0o750); err != nil {
			return 0, err
		}
	}
	size = max(size, 16)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	// Creating directories and files waits on the disk more than on
	// the CPU: more writers than cores.
	for w := 0; w < 4*runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, size)
			for j := range b[16:] {
				b[16+j] = byte(j)
			}
			binary.LittleEndian.PutUint64(b[8:], seed)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				binary.LittleEndian.PutUint64(b, uint64(i))
				sum := sha256.Sum256(b)
				hx := hex.EncodeToString(sum[:])
				d := filepath.Join(root, hx[:2], hx)
				err := os.Mkdir(d, 0o750)
				if err == nil || os.IsExist(err) {
					err = os.WriteFile(filepath.Join(d, "data"), b, 0o640)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return time.Since(start), nil
}
