package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	s3driver "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/test/harness"
)

// openS3 opens a store on a real MinIO bucket through distribution's s3
// driver, with bound reads (Objects) or without (the driver alone).
func openS3(t testing.TB, b *harness.S3, root string, bound bool) *store.Store {
	t.Helper()
	var wrap func(store.Objects) store.Objects
	if bound {
		wrap = func(o store.Objects) store.Objects { return o }
	}
	return openS3With(t, b, root, wrap)
}

// openS3With opens a store whose Objects (S3Objects) are wrapped by wrap
// (nil: a store without Objects).
func openS3With(t testing.TB, b *harness.S3, root string, wrap func(store.Objects) store.Objects) *store.Store {
	t.Helper()
	ctx := context.Background()
	d, err := s3driver.FromParameters(ctx, b.StorageConfig(root)["parameters"].(map[string]any))
	if err != nil {
		t.Fatal(err)
	}
	opts := store.Options{}
	if wrap != nil {
		o, err := store.S3Objects(d)
		if err != nil {
			t.Fatal(err)
		}
		opts.Objects = wrap(o)
	}
	s, err := store.Open(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomFile(t testing.TB, size int) (digest.Digest, string, []byte) {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	p := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return digest.FromBytes(b), p, b
}

// The record of a committed copy is the identity the write returned; a
// replacement of the same size (within the same second or not) does not
// match it, and a read bound to the record never returns its bytes.
func TestS3ObjectsBindRecordToWrite(t *testing.T) {
	b := harness.StartS3(t)
	for _, versioned := range []bool{false, true} {
		t.Run(fmt.Sprintf("versioned=%v", versioned), func(t *testing.T) {
			ctx := context.Background()
			root := fmt.Sprintf("/bind-%v", versioned)
			if versioned {
				if _, err := b.Client.PutBucketVersioningWithContext(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(b.Bucket),
					VersioningConfiguration: &s3.VersioningConfiguration{Status: aws.String(s3.BucketVersioningStatusEnabled)}}); err != nil {
					t.Fatalf("enable versioning: %v", err)
				}
			}
			s := openS3(t, b, root, true)
			// Single PUT and multipart upload (the driver's 10 MiB parts).
			for _, size := range []int{256 << 10, 12 << 20} {
				dg, file, data := randomFile(t, size)
				if err := s.CommitFile(ctx, dg, file, int64(size)); err != nil {
					t.Fatal(err)
				}
				rec, ok := s.Recorded(dg)
				if !ok || rec.ETag == "" || (versioned && rec.Version == "") {
					t.Fatalf("%d bytes: no record of the write's identity: %+v %v", size, rec, ok)
				}
				if id, err := s.Identify(ctx, dg); err != nil || !s.Verified(dg, id) {
					t.Fatalf("%d bytes: committed copy not verified: %+v %v", size, id, err)
				}
				rc, err := s.ReaderOf(ctx, dg, rec, 100)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(rc)
				rc.Close()
				if !bytes.Equal(got, data[100:]) {
					t.Fatalf("%d bytes: bound read returned other bytes", size)
				}
				bad := bytes.Clone(data)
				bad[size/2] ^= 0xff
				key := b.StorageConfig(root)["parameters"].(map[string]any)["rootdirectory"].(string)[1:] + "/blobs/sha256/" + dg.Encoded()[:2] + "/" + dg.Encoded() + "/data"
				if _, err := b.Client.PutObjectWithContext(ctx, &s3.PutObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key), Body: bytes.NewReader(bad)}); err != nil {
					t.Fatal(err)
				}
				if id, err := s.Identify(ctx, dg); err != nil || s.Verified(dg, id) {
					t.Errorf("%d bytes: the replacement counts as the verified copy (%+v, %v)", size, id, err)
				}
				// Unversioned: the read fails (If-Match). Versioned: it reads
				// the version written, which the replacement did not change.
				rc, err = s.ReaderOf(ctx, dg, rec, 0)
				switch {
				case err == nil:
					got, _ := io.ReadAll(rc)
					rc.Close()
					if !versioned || !bytes.Equal(got, data) {
						t.Errorf("%d bytes: read bound to the write's identity returned %d bytes (versioned %v), want ErrReplaced or the written bytes", size, len(got), versioned)
					}
				case !errors.Is(err, store.ErrReplaced):
					t.Errorf("%d bytes: read bound to the write's identity: %v, want ErrReplaced", size, err)
				}
			}
		})
	}
}

func blobKey(b *harness.S3, root string, dg digest.Digest) string {
	return b.StorageConfig(root)["parameters"].(map[string]any)["rootdirectory"].(string)[1:] +
		"/blobs/sha256/" + dg.Encoded()[:2] + "/" + dg.Encoded() + "/data"
}

// colliding is S3 as it answers for an object an attacker replaced by an
// MD5 collision of the verified blob (in a bucket without versioning, the
// ETag is that MD5): whatever ETag the read is conditional on, the object
// in its place has it. Reads go to MinIO, conditional on the ETag the
// object has now.
type colliding struct{ store.Objects }

func (c colliding) Get(ctx context.Context, p string, id store.ObjectID, offset int64) (io.ReadCloser, error) {
	now, _, err := c.Head(ctx, p)
	if err != nil {
		return nil, err
	}
	id.ETag = now.ETag
	return c.Objects.Get(ctx, p, id, offset)
}

// A record is bound to the SHA-256 checksum the write returned (the blob's
// digest for a single PUT; the digest of the parts' digests for a
// multipart upload), and a read whose response carries another checksum,
// or none, is a replaced copy (ErrReplaced, the record dropped, hashed as
// any unverified copy) even though its ETag matches the record's.
func TestS3ObjectsBindRecordToChecksum(t *testing.T) {
	b := harness.StartS3(t)
	ctx := context.Background()
	const root = "/checksum"
	s := openS3(t, b, root, true)
	attacked := openS3With(t, b, root, func(o store.Objects) store.Objects { return colliding{o} })

	// The pinned MinIO keeps SHA-256 checksums: writes are bound by them.
	var objs store.Objects
	openS3With(t, b, "/probe", func(o store.Objects) store.Objects { objs = o; return o })
	if id, err := objs.Probe(ctx); err != nil || id.Binding() != "sha256" {
		t.Fatalf("probe: %+v (%s), %v; want binding sha256", id, id.Binding(), err)
	}
	if keys := b.Keys(t, "probe/"); len(keys) != 0 {
		t.Errorf("the probe left %v", keys)
	}
	for _, size := range []int{256 << 10, 12 << 20} {
		dg, file, data := randomFile(t, size)
		for _, st := range []*store.Store{s, attacked} {
			if err := st.CommitFile(ctx, dg, file, int64(size)); err != nil {
				t.Fatal(err)
			}
		}
		rec, ok := s.Recorded(dg)
		want := base64.StdEncoding.EncodeToString(sha256Sum(data))
		if size > 10<<20 { // two parts of the driver's 10 MiB chunks
			want = base64.StdEncoding.EncodeToString(sha256Sum(append(sha256Sum(data[:10<<20]), sha256Sum(data[10<<20:])...))) + "-2"
		}
		if !ok || rec.Checksum != want {
			t.Fatalf("%d bytes: record %+v (%v), want SHA-256 checksum %s", size, rec, ok, want)
		}

		// Another writer puts bytes in the key whose ETag is the
		// record's: an MD5 collision (simulated by colliding), or the
		// same bytes written without a checksum (a real PUT).
		bad := bytes.Clone(data)
		bad[size/2] ^= 0xff
		key := blobKey(b, root, dg)
		if _, err := b.Client.PutObjectWithContext(ctx, &s3.PutObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key), Body: bytes.NewReader(bad)}); err != nil {
			t.Fatal(err)
		}
		arec, _ := attacked.Recorded(dg)
		for _, off := range []int64{0, 100} {
			rc, err := attacked.ReaderOf(ctx, dg, arec, off)
			if err == nil {
				got, _ := io.ReadAll(rc)
				rc.Close()
				t.Errorf("%d bytes at %d: the colliding copy was read as the verified one (%d bytes, replacement: %v)", size, off, len(got), bytes.Equal(got, bad[off:]))
			} else if !errors.Is(err, store.ErrReplaced) {
				t.Errorf("%d bytes at %d: %v, want ErrReplaced", size, off, err)
			}
		}
		if _, ok := attacked.Recorded(dg); ok {
			t.Errorf("%d bytes: the record of the replaced copy is kept", size)
		}
		if id, err := attacked.Identify(ctx, dg); err != nil || attacked.Verified(dg, id) {
			t.Errorf("%d bytes: the replacement counts as verified (%+v, %v)", size, id, err)
		}

		// The same bytes without a checksum: same ETag (for a single
		// PUT), no SHA-256.
		if _, err := b.Client.PutObjectWithContext(ctx, &s3.PutObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
		id, err := s.Identify(ctx, dg)
		if err != nil || id.Checksum != "" || id.Version != "" {
			t.Fatalf("%d bytes: identify the rewrite: %+v %v", size, id, err)
		}
		if size < 10<<20 && id.ETag != rec.ETag {
			t.Fatalf("a rewrite of the same bytes has ETag %s, the record %s", id.ETag, rec.ETag)
		}
		if _, err := s.ReaderOf(ctx, dg, rec, 0); !errors.Is(err, store.ErrReplaced) {
			t.Errorf("%d bytes: read of a copy without the recorded checksum: %v, want ErrReplaced", size, err)
		}
		// A copy known by its ETag alone (no checksum, no version) is
		// never recorded: it is hashed whenever it is read.
		s.MarkVerified(dg, id)
		if _, ok := s.Recorded(dg); ok || s.Verified(dg, id) {
			t.Errorf("%d bytes: a copy bound by its ETag alone was recorded as verified: %+v", size, id)
		}
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// The cost of binding the record to the write, side by side with the old
// path (the driver alone: upload to _uploads, server-side copy into place,
// Stat for size and Last-Modified) and with the alternative (hash every
// copy read from the shared store). Run with
//
//	go test -run - -bench S3 -benchtime 20x ./cache/store/
func BenchmarkS3(b *testing.B) {
	s3b := harness.StartS3(b)
	ctx := context.Background()
	for _, size := range []int{1 << 20, 32 << 20} {
		dg, file, _ := randomFile(b, size)
		for _, bound := range []bool{false, true} {
			name := map[bool]string{false: "driver", true: "bound"}[bound]
			s := openS3(b, s3b, fmt.Sprintf("/bench-%s-%d", name, size), bound)
			b.Run(fmt.Sprintf("commit/%s/%dMiB", name, size>>20), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					_ = s.Delete(ctx, dg)
					if err := s.CommitFile(ctx, dg, file, int64(size)); err != nil {
						b.Fatal(err)
					}
				}
			})
			// A verified copy served whole: driver = Stat + GET (the record
			// compared with size and Last-Modified), bound = one GET with
			// If-Match.
			b.Run(fmt.Sprintf("serve-verified/%s/%dMiB", name, size>>20), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					var rc io.ReadCloser
					var err error
					if bound {
						rec, _ := s.Recorded(dg)
						rc, err = s.ReaderOf(ctx, dg, rec, 0)
					} else {
						id, ierr := s.Identify(ctx, dg)
						if ierr != nil || !s.Verified(dg, id) {
							b.Fatalf("not verified: %v", ierr)
						}
						rc, err = s.Reader(ctx, dg, 0)
					}
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, rc)
					rc.Close()
				}
			})
			if bound {
				// A range of a verified copy, read under its record (in a
				// bucket without versioning a range GET carries no
				// checksum: the object is read from its start and the
				// bytes before the range skipped).
				b.Run(fmt.Sprintf("range-4KiB/bound/%dMiB", size>>20), func(b *testing.B) {
					rec, _ := s.Recorded(dg)
					for b.Loop() {
						rc, err := s.ReaderOf(ctx, dg, rec, int64(size/2))
						if err != nil {
							b.Fatal(err)
						}
						_, _ = io.CopyN(io.Discard, rc, 4096)
						rc.Close()
					}
				})
				continue
			}
			// The alternative: every copy from a shared store hashed as it
			// is served (a 200), and a range only after the whole copy was
			// hashed (read twice: hashed, then the range).
			b.Run(fmt.Sprintf("serve-hash-every-copy/%dMiB", size>>20), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					hashCopy(b, s, dg)
				}
			})
			b.Run(fmt.Sprintf("range-4KiB/bound-or-driver/%dMiB", size>>20), func(b *testing.B) {
				for b.Loop() {
					rc, err := s.Reader(ctx, dg, int64(size/2))
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.CopyN(io.Discard, rc, 4096)
					rc.Close()
				}
			})
			b.Run(fmt.Sprintf("range-4KiB/hash-every-copy/%dMiB", size>>20), func(b *testing.B) {
				for b.Loop() {
					hashCopy(b, s, dg)
					rc, err := s.Reader(ctx, dg, int64(size/2))
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.CopyN(io.Discard, rc, 4096)
					rc.Close()
				}
			})
		}
	}
}

// hashCopy reads a whole stored copy and hashes it.
func hashCopy(b *testing.B, s *store.Store, dg digest.Digest) {
	rc, err := s.Reader(context.Background(), dg, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(sha256.New(), rc); err != nil {
		b.Fatal(err)
	}
}
