package store

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
)

// Objects is direct access to the objects behind a storage driver whose
// writes report the identity of the object they created and whose reads
// can be bound to an identity (S3: the SHA-256 checksum the server computed
// of what it stored, the version ID in a versioned bucket, and the ETag). A
// store opened with Objects (Options.Objects) records a verified copy by
// the identity its write returned, not by what a later look at the object
// says, and reads a recorded copy only under that identity: bytes another
// writer put in its place are never taken for the verified ones, however
// quickly they came and whatever their size. An identity that names no
// bytes by more than an ETag (an MD5, which an attacker can collide; see
// ObjectID.Binds) is never recorded: such copies are hashed on every read.
type Objects interface {
	// Put writes size bytes of f, which hash to dgst, to the driver path
	// p. The object appears whole or not at all. It returns the identity
	// of the object written.
	Put(ctx context.Context, p string, dgst digest.Digest, f *os.File, size int64) (ObjectID, error)
	// Head returns the identity and size of the object at p now
	// (ErrNotFound when there is none).
	Head(ctx context.Context, p string) (ObjectID, int64, error)
	// Get reads the object at p from offset, on condition that it has
	// identity id: the condition is part of the read itself (ErrReplaced
	// when the object has another identity, ErrNotFound when it is gone).
	Get(ctx context.Context, p string, id ObjectID, offset int64) (io.ReadCloser, error)
	// Probe writes and removes a small object and returns the identity
	// the write returned: what binds reads in this store (for logs).
	Probe(ctx context.Context) (ObjectID, error)
}

// ObjectID identifies one write of an object.
type ObjectID struct {
	ETag    string
	Version string // empty unless the store keeps versions
	// Checksum is the SHA-256 checksum the store computed of the object
	// as written (S3 flexible checksums: base64, with "-N" for a
	// multipart upload of N parts), empty when the store keeps none.
	Checksum string
}

// Binds reports whether id names the bytes of one write by more than its
// ETag: by their SHA-256 checksum, or by a version ID (a version's bytes
// never change; "null" is the version a bucket without versioning, or with
// versioning suspended, overwrites). An ETag alone is, in a bucket without
// versioning and without SSE-KMS, the MD5 of the object: bytes with an MD5
// collision of a verified blob would match it.
func (id ObjectID) Binds() bool { return id.Checksum != "" || id.versioned() }

func (id ObjectID) versioned() bool { return id.Version != "" && id.Version != "null" }

// Binding names what binds reads of a copy with this identity, for logs.
func (id ObjectID) Binding() string {
	switch {
	case id.Checksum != "" && id.versioned():
		return "sha256+version"
	case id.Checksum != "":
		return "sha256"
	case id.versioned():
		return "version"
	}
	return "none"
}

// ErrReplaced is a read bound to an identity the stored object no longer
// has: it was rewritten or replaced.
var ErrReplaced = errors.New("stored object was replaced")

// objectFileID is the FileID of an object of a store with Objects.
func objectFileID(id ObjectID, size int64) FileID {
	return FileID{Size: size, ETag: id.ETag, Version: id.Version, Checksum: id.Checksum}
}

func (id FileID) objectID() ObjectID {
	return ObjectID{ETag: id.ETag, Version: id.Version, Checksum: id.Checksum}
}

// BindsReads reports whether ReaderOf reads only the copy it is given
// (a store with Objects, or the local filesystem, whose callers read an
// open file): then bytes read through it and hashed are that copy's. On a
// store with Objects this holds for identities that bind
// (ObjectID.Binds); no others are recorded as verified.
func (s *Store) BindsReads() bool { return s.objects != nil }

// Recorded returns the identity of the copy of dgst this process verified,
// if it holds a record of one.
func (s *Store) Recorded(dgst digest.Digest) (FileID, bool) {
	return s.verified.Get(dgst)
}

// ReaderOf opens the stored copy of dgst that has identity id at offset.
// With Objects the read is bound to id: ErrReplaced when the object has
// another identity now (the record of id is dropped), ErrNotFound when it
// is gone. Other driver stores cannot bind a read: they read whatever is
// stored (they are private to the process: the in-memory driver).
func (s *Store) ReaderOf(ctx context.Context, dgst digest.Digest, id FileID, offset int64) (io.ReadCloser, error) {
	if s.objects == nil {
		return s.Reader(ctx, dgst, offset)
	}
	rc, err := s.objects.Get(ctx, blobPath(dgst), id.objectID(), offset)
	switch {
	case errors.Is(err, ErrNotFound):
		s.forget(dgst)
		return nil, ErrNotFound
	case errors.Is(err, ErrReplaced):
		s.verified.Remove(dgst)
		return nil, err
	case err != nil:
		return nil, err
	}
	s.touch(dgst)
	return rc, nil
}

// commitObject uploads a verified file straight to its place (an S3 PUT or
// multipart upload is atomic: no upload area and server-side copy are
// needed) and records the identity the write returned, if it binds.
func (s *Store) commitObject(ctx context.Context, dgst digest.Digest, f *os.File, size int64) error {
	id, err := s.objects.Put(ctx, blobPath(dgst), dgst, f, size)
	if err != nil {
		return err
	}
	s.add(ctx, dgst, size)
	s.MarkVerified(dgst, objectFileID(id, size)) // not if id does not bind
	return nil
}

// keepVerified reports (and marks as used) a stored copy of dgst that this
// process verified: a commit keeps it rather than writing it again.
func (s *Store) keepVerified(ctx context.Context, dgst digest.Digest) bool {
	if _, ok := s.Has(dgst); ok {
		if id, err := s.Identify(ctx, dgst); err == nil && s.Verified(dgst, id) {
			s.touch(dgst)
			return true
		}
	}
	return false
}
