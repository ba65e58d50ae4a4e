package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/aws/aws-sdk-go/service/s3/s3manager"
	s3driver "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// s3Objects is Objects for distribution's s3 driver: it uses the driver's
// own S3 client and settings (bucket, root directory, encryption, storage
// class, ACL, part size), so that it reaches the same objects with the same
// credentials. The driver returns no ETag from a write, and its Stat has
// none: this is why blob writes and blob reads of such a store go through
// here.
type s3Objects struct {
	d        *s3driver.Driver
	client   *s3.S3
	bucket   string
	partSize int64
	put      s3manager.UploadInput // the driver's object settings
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
	o.put = s3manager.UploadInput{
		Bucket:      aws.String(o.bucket),
		ContentType: aws.String("application/octet-stream"),
		ACL:         aws.String(acl),
	}
	if encrypt {
		o.put.ServerSideEncryption = aws.String("AES256")
		if keyID != "" {
			o.put.ServerSideEncryption, o.put.SSEKMSKeyId = aws.String("aws:kms"), aws.String(keyID)
		}
	}
	if class != "NONE" {
		o.put.StorageClass = aws.String(class)
	}
	return o, nil
}

func (o *s3Objects) key(p string) *string { return aws.String(o.d.S3BucketKey(p)) }

func (o *s3Objects) Put(ctx context.Context, p string, f *os.File, size int64) (ObjectID, error) {
	in := o.put
	in.Key = o.key(p)
	in.Body = io.NewSectionReader(f, 0, size)
	up := s3manager.NewUploaderWithClient(o.client, func(u *s3manager.Uploader) {
		if o.partSize >= s3manager.MinUploadPartSize {
			u.PartSize = o.partSize
		}
	})
	out, err := up.UploadWithContext(ctx, &in)
	if err != nil {
		return ObjectID{}, err
	}
	if out.ETag == nil || *out.ETag == "" {
		return ObjectID{}, fmt.Errorf("store: the S3 server returned no ETag for %s", *in.Key)
	}
	return ObjectID{ETag: *out.ETag, Version: aws.StringValue(out.VersionID)}, nil
}

func (o *s3Objects) Head(ctx context.Context, p string) (ObjectID, int64, error) {
	out, err := o.client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(o.bucket), Key: o.key(p)})
	if err != nil {
		return ObjectID{}, 0, s3Error(err)
	}
	return ObjectID{ETag: aws.StringValue(out.ETag), Version: aws.StringValue(out.VersionId)}, aws.Int64Value(out.ContentLength), nil
}

func (o *s3Objects) Get(ctx context.Context, p string, id ObjectID, offset int64) (io.ReadCloser, error) {
	if id.ETag == "" {
		return nil, ErrReplaced // nothing to bind the read to
	}
	in := &s3.GetObjectInput{Bucket: aws.String(o.bucket), Key: o.key(p), IfMatch: aws.String(id.ETag),
		Range: aws.String("bytes=" + strconv.FormatInt(offset, 10) + "-")}
	if id.Version != "" {
		in.VersionId = aws.String(id.Version)
	}
	out, err := o.client.GetObjectWithContext(ctx, in)
	if err != nil {
		var ae awserr.Error
		if errors.As(err, &ae) && ae.Code() == "InvalidRange" {
			return io.NopCloser(eofReader{}), nil // offset at the end: no bytes to serve
		}
		return nil, s3Error(err)
	}
	// The response describes the bytes it carries: a server that ignored
	// If-Match is caught here, before anything is read.
	if aws.StringValue(out.ETag) != id.ETag || (id.Version != "" && aws.StringValue(out.VersionId) != id.Version) {
		out.Body.Close()
		return nil, ErrReplaced
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
