//go:build !unix

package store

import "os"

// devIno is not known here: the identity is size and modification time.
func devIno(os.FileInfo) (dev, ino uint64) { return 0, 0 }
