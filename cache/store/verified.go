package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
)

// DefaultVerifiedEntries bounds the per-process record of verified blobs
// when Options.VerifiedEntries is 0.
const DefaultVerifiedEntries = 1 << 16

// FileID identifies one stored copy of a blob. On the local filesystem it
// is the file's size, modification time, device and inode: a copy
// rewritten or replaced after it was verified gets another FileID (unless
// the rewrite keeps size, inode and modification time: content changed
// without any trace in the file's metadata is caught only by the next
// process, which has no record). On a store with Objects (S3) it is the
// size and the identity the write returned (ETag, version ID), and reads
// of a recorded copy are bound to it (see Objects): its SHA-256 checksum
// or version must be known, an ETag alone is not recorded. On other drivers (the
// in-memory one) it is size and modification time.
type FileID struct {
	Size     int64
	ModTime  int64 // Unix nanoseconds
	Dev      uint64
	Ino      uint64
	ETag     string
	Version  string
	Checksum string
}

// LocalFileID is the identity of a file of the local filesystem store
// (from os.File.Stat or os.Stat).
func LocalFileID(fi os.FileInfo) FileID {
	id := FileID{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	id.Dev, id.Ino = devIno(fi)
	return id
}

func driverFileID(fi storagedriver.FileInfo) FileID {
	return FileID{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
}

// verifiedRecord is the bounded, per-process record of stored blobs whose
// bytes this process hashed to their digest, with the identity of the copy
// that was hashed.
func newVerifiedRecord(n int) *lru.Cache[digest.Digest, FileID] {
	if n <= 0 {
		n = DefaultVerifiedEntries
	}
	c, _ := lru.New[digest.Digest, FileID](n)
	return c
}

// Identify returns the identity of the stored copy of dgst as it is now.
func (s *Store) Identify(ctx context.Context, dgst digest.Digest) (FileID, error) {
	if _, ok := s.Has(dgst); !ok {
		return FileID{}, ErrNotFound
	}
	if s.localRoot != "" {
		fi, err := os.Stat(s.localPath(dgst))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				s.forget(dgst)
				return FileID{}, ErrNotFound
			}
			return FileID{}, err
		}
		return LocalFileID(fi), nil
	}
	if s.objects != nil {
		id, size, err := s.objects.Head(ctx, blobPath(dgst))
		if errors.Is(err, ErrNotFound) {
			s.forget(dgst)
		}
		if err != nil {
			return FileID{}, err
		}
		return objectFileID(id, size), nil
	}
	fi, err := s.d.Stat(ctx, blobPath(dgst))
	if err != nil {
		var nf storagedriver.PathNotFoundError
		if errors.As(err, &nf) {
			s.forget(dgst)
			return FileID{}, ErrNotFound
		}
		return FileID{}, err
	}
	return driverFileID(fi), nil
}

// Verified reports whether this process verified the stored copy of dgst
// that has identity id. A record of another copy (rewritten, replaced,
// restored) does not count.
func (s *Store) Verified(dgst digest.Digest, id FileID) bool {
	got, ok := s.verified.Get(dgst)
	return ok && got == id
}

// MarkVerified records that the copy of dgst with identity id hashed to
// dgst. Only callers that hashed exactly that copy may call it. On a store
// with Objects an identity that does not bind reads (an ETag alone, see
// ObjectID.Binds) is not recorded: that copy is hashed whenever it is read.
func (s *Store) MarkVerified(dgst digest.Digest, id FileID) {
	if s.objects != nil && !id.objectID().Binds() {
		return
	}
	s.verified.Add(dgst, id)
}

func (s *Store) localPath(dgst digest.Digest) string {
	return filepath.Join(s.localRoot, filepath.FromSlash(blobPath(dgst)))
}
