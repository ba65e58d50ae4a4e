package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/aws/aws-sdk-go/service/s3/s3manager"
	s3driver "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/opencontainers/go-digest"
)

// s3Objects is Objects for distribution's s3 driver: it uses the driver's
// own S3 client and settings (bucket, root directory, encryption, storage
// class, ACL, part size), so that it reaches the same objects with the same
// credentials. The driver returns no ETag or checksum from a write, and its
// Stat has none: this is why blob writes and blob reads of such a store go
// through here.
//
// Writes carry S3 flexible checksums (SHA-256): the server checks each
// part against it and keeps the checksum of what it stored (the blob's own
// digest for a single PUT; for a multipart upload the SHA-256 of the
// parts' SHA-256s, "-N"), which is returned by the write and by every GET
// of the whole object with checksum mode on. A read of a recorded copy is
// bound to that checksum, not to the ETag alone (the MD5 of the object, or
// of its parts, in a bucket without SSE-KMS: collisions of MD5 are cheap).
type s3Objects struct {
	d        *s3driver.Driver
	client   *s3.S3
	bucket   string
	partSize int64
	// the driver's object settings
	acl, sse, kmsKey, class *string
}

// S3Objects returns direct access to the objects of an s3 driver store. It
// fails when the driver's layout is not the one this was written for (its
// client and settings are read from the driver's exported fields).
func S3Objects(d *s3driver.Driver) (Objects, error) {
	v := reflect.ValueOf(d.StorageDriver)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("store: s3 driver of unexpected type %T", d.StorageDriver)
	}
	o := &s3Objects{d: d}
	var encrypt bool
	var keyID, class, acl string
	var chunk int
	fields := []struct {
		name string
		dst  any
	}{{"S3", &o.client}, {"Bucket", &o.bucket}, {"ChunkSize", &chunk}, {"Encrypt", &encrypt},
		{"KeyID", &keyID}, {"StorageClass", &class}, {"ObjectACL", &acl}}
	for _, f := range fields {
		fv := v.FieldByName(f.name)
		dst := reflect.ValueOf(f.dst).Elem()
		if !fv.IsValid() || !fv.CanInterface() || fv.Type() != dst.Type() {
			return nil, fmt.Errorf("store: s3 driver %T has no field %s of type %s (distribution version not supported)", d.StorageDriver, f.name, dst.Type())
		}
		dst.Set(fv)
	}
	if o.client == nil || o.bucket == "" {
		return nil, errors.New("store: s3 driver has no client or bucket")
	}
	o.partSize = int64(chunk)
	if o.partSize < s3manager.MinUploadPartSize {
		o.partSize = s3manager.DefaultUploadPartSize
	}
	o.acl = aws.String(acl)
	if encrypt {
		o.sse = aws.String(s3.ServerSideEncryptionAes256)
		if keyID != "" {
			o.sse, o.kmsKey = aws.String(s3.ServerSideEncryptionAwsKms), aws.String(keyID)
		}
	}
	if class != "NONE" {
		o.class = aws.String(class)
	}
	return o, nil
}

func (o *s3Objects) key(p string) *string { return aws.String(o.d.S3BucketKey(p)) }

const (
	contentType = "application/octet-stream"
	// s3PartsInFlight bounds the parts of one multipart upload sent at
	// once (s3manager's default concurrency).
	s3PartsInFlight = 5
)

func b64(sum []byte) string { return base64.StdEncoding.EncodeToString(sum) }

func (o *s3Objects) Put(ctx context.Context, p string, dgst digest.Digest, f *os.File, size int64) (ObjectID, error) {
	part := max(o.partSize, (size+s3manager.MaxUploadParts-1)/s3manager.MaxUploadParts)
	if size <= part {
		var sum []byte
		if dgst.Algorithm() == digest.SHA256 && dgst.Validate() == nil {
			sum, _ = hex.DecodeString(dgst.Encoded()) // the caller hashed f to dgst
		} else {
			h := sha256.New()
			if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
				return ObjectID{}, err
			}
			sum = h.Sum(nil)
		}
		return o.putOne(ctx, o.key(p), io.NewSectionReader(f, 0, size), b64(sum))
	}
	return o.putParts(ctx, o.key(p), f, size, part)
}

// putOne writes body, whose SHA-256 is sum (base64), with one PUT.
func (o *s3Objects) putOne(ctx context.Context, key *string, body io.ReadSeeker, sum string) (ObjectID, error) {
	out, err := o.client.PutObjectWithContext(ctx, &s3.PutObjectInput{Bucket: aws.String(o.bucket), Key: key, Body: body,
		ContentType: aws.String(contentType), ACL: o.acl, ServerSideEncryption: o.sse, SSEKMSKeyId: o.kmsKey, StorageClass: o.class,
		ChecksumAlgorithm: aws.String(s3.ChecksumAlgorithmSha256), ChecksumSHA256: aws.String(sum)})
	if err != nil {
		return ObjectID{}, err
	}
	return written(*key, out.ETag, out.VersionId, out.ChecksumSHA256, sum)
}

// putParts writes size bytes of f by a multipart upload of part-sized parts.
func (o *s3Objects) putParts(ctx context.Context, key *string, f *os.File, size, part int64) (ObjectID, error) {
	mp, err := o.client.CreateMultipartUploadWithContext(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(o.bucket), Key: key,
		ContentType: aws.String(contentType), ACL: o.acl, ServerSideEncryption: o.sse, SSEKMSKeyId: o.kmsKey, StorageClass: o.class,
		ChecksumAlgorithm: aws.String(s3.ChecksumAlgorithmSha256)})
	if err != nil {
		return ObjectID{}, err
	}
	abort := func() {
		_, _ = o.client.AbortMultipartUploadWithContext(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
			Bucket: aws.String(o.bucket), Key: key, UploadId: mp.UploadId})
	}
	n := int((size + part - 1) / part)
	parts := make([]*s3.CompletedPart, n)
	sums := make([]byte, n*sha256.Size)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	slots := make(chan struct{}, s3PartsInFlight)
	for i := range n {
		select {
		case slots <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			off := int64(i) * part
			sec := io.NewSectionReader(f, off, min(part, size-off))
			h := sha256.New()
			_, err := io.Copy(h, sec)
			sum := h.Sum(sums[i*sha256.Size : i*sha256.Size])
			var out *s3.UploadPartOutput
			if err == nil {
				_, err = sec.Seek(0, io.SeekStart)
			}
			if err == nil {
				out, err = o.client.UploadPartWithContext(pctx, &s3.UploadPartInput{Bucket: aws.String(o.bucket), Key: key,
					UploadId: mp.UploadId, PartNumber: aws.Int64(int64(i + 1)), Body: sec,
					ChecksumAlgorithm: aws.String(s3.ChecksumAlgorithmSha256), ChecksumSHA256: aws.String(b64(sum))})
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("part %d: %w", i+1, err)
				}
				mu.Unlock()
				cancel()
				return
			}
			parts[i] = &s3.CompletedPart{ETag: out.ETag, PartNumber: aws.Int64(int64(i + 1)), ChecksumSHA256: aws.String(b64(sum))}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		abort()
		return ObjectID{}, firstErr
	}
	out, err := o.client.CompleteMultipartUploadWithContext(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(o.bucket), Key: key,
		UploadId: mp.UploadId, MultipartUpload: &s3.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		abort()
		return ObjectID{}, err
	}
	composite := sha256.Sum256(sums)
	return written(*key, out.ETag, out.VersionId, out.ChecksumSHA256, b64(composite[:])+"-"+strconv.Itoa(n))
}

// written is the identity a write returned. A checksum other than the one
// of the bytes sent is an error (the server stored something else); none
// at all is a store without flexible checksums, whose copies bind only by
// version (see ObjectID.Binds).
func written(key string, etag, version, checksum *string, want string) (ObjectID, error) {
	id := ObjectID{ETag: aws.StringValue(etag), Version: aws.StringValue(version), Checksum: aws.StringValue(checksum)}
	if id.ETag == "" {
		return ObjectID{}, fmt.Errorf("store: the S3 server returned no ETag for %s", key)
	}
	if id.Checksum != "" && id.Checksum != want {
		return ObjectID{}, fmt.Errorf("store: the S3 server stored %s with SHA-256 checksum %s, not %s (the bytes sent)", key, id.Checksum, want)
	}
	return id, nil
}

// Probe writes and removes a small object beside the store's content and
// returns the identity the write returned: what binds reads of recorded
// copies in this bucket (ObjectID.Binding), for the log at start.
func (o *s3Objects) Probe(ctx context.Context) (ObjectID, error) {
	key := o.key("/pullgate/binding-probe")
	body := []byte("pullgate: which identity does a write return?\n")
	sum := sha256.Sum256(body)
	id, err := o.putOne(ctx, key, bytes.NewReader(body), b64(sum[:]))
	if err != nil {
		return ObjectID{}, err
	}
	in := &s3.DeleteObjectInput{Bucket: aws.String(o.bucket), Key: key}
	if id.versioned() {
		in.VersionId = aws.String(id.Version) // leave no version behind
	}
	_, _ = o.client.DeleteObjectWithContext(ctx, in)
	return id, nil
}

func (o *s3Objects) Head(ctx context.Context, p string) (ObjectID, int64, error) {
	out, err := o.client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(o.bucket), Key: o.key(p),
		ChecksumMode: aws.String(s3.ChecksumModeEnabled)})
	if err != nil {
		return ObjectID{}, 0, s3Error(err)
	}
	return ObjectID{ETag: aws.StringValue(out.ETag), Version: aws.StringValue(out.VersionId), Checksum: aws.StringValue(out.ChecksumSHA256)},
		aws.Int64Value(out.ContentLength), nil
}

// Get reads under id: If-Match its ETag, its version if it has one, and
// (with checksum mode on) its SHA-256 checksum, which the response must
// carry before a byte is read. S3 returns no checksum for a range: a read
// at an offset is a range only when a version binds it; otherwise the
// whole object is read, its checksum checked, and the bytes before the
// offset skipped.
func (o *s3Objects) Get(ctx context.Context, p string, id ObjectID, offset int64) (io.ReadCloser, error) {
	if id.ETag == "" {
		return nil, ErrReplaced // nothing to bind the read to
	}
	in := &s3.GetObjectInput{Bucket: aws.String(o.bucket), Key: o.key(p), IfMatch: aws.String(id.ETag)}
	if id.Version != "" {
		in.VersionId = aws.String(id.Version)
	}
	if id.Checksum != "" {
		in.ChecksumMode = aws.String(s3.ChecksumModeEnabled)
	}
	var skip int64
	if offset > 0 {
		if id.Checksum != "" && !id.versioned() {
			skip = offset
		} else {
			in.Range = aws.String("bytes=" + strconv.FormatInt(offset, 10) + "-")
		}
	}
	out, err := o.client.GetObjectWithContext(ctx, in)
	if err != nil {
		var ae awserr.Error
		if in.Range != nil && errors.As(err, &ae) && ae.Code() == "InvalidRange" {
			return io.NopCloser(eofReader{}), nil // offset at the end: no bytes to serve
		}
		return nil, s3Error(err)
	}
	// The response describes the bytes it carries: a server that ignored
	// If-Match is caught here, before anything is read, and so is an
	// object whose ETag matches but whose bytes are others (an MD5
	// collision of the verified blob).
	if aws.StringValue(out.ETag) != id.ETag || (id.Version != "" && aws.StringValue(out.VersionId) != id.Version) ||
		(id.Checksum != "" && in.Range == nil && aws.StringValue(out.ChecksumSHA256) != id.Checksum) {
		out.Body.Close()
		return nil, ErrReplaced
	}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, out.Body, skip); err != nil {
			out.Body.Close()
			if errors.Is(err, io.EOF) {
				return io.NopCloser(eofReader{}), nil // offset past the end
			}
			return nil, err
		}
	}
	return out.Body, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// s3Error maps S3's answers to the store's errors.
func s3Error(err error) error {
	var rf awserr.RequestFailure
	if errors.As(err, &rf) {
		switch rf.StatusCode() {
		case http.StatusNotFound:
			return ErrNotFound
		case http.StatusPreconditionFailed:
			return ErrReplaced
		}
	}
	return err
}
