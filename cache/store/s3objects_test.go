package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
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
	ctx := context.Background()
	d, err := s3driver.FromParameters(ctx, b.StorageConfig(root)["parameters"].(map[string]any))
	if err != nil {
		t.Fatal(err)
	}
	opts := store.Options{}
	if bound {
		if opts.Objects, err = store.S3Objects(d); err != nil {
			t.Fatal(err)
		}
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
