package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// A replica stored (and verified) blobs in a shared S3 bucket; another
// writer then replaces them with different bytes of the same size, within
// the same second as the replica's write (S3 keeps Last-Modified to the
// second, so size and Last-Modified cannot tell the copies apart). The
// replica must not serve the replacement: not whole (200), not as a range
// (206). It must serve the right blob again afterwards.
func TestSharedS3ReplacedWithinTheSecond(t *testing.T) {
	bucket := harness.StartS3(t)
	up := harness.StartUpstream(t, harness.UpstreamOptions{})
	const root = "/pullgate-replace"
	a := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, TagTTL: "1ms",
		Edit: func(doc map[string]any) { doc["storage"] = bucket.StorageConfig(root) }})
	c := ctx(t)

	for attempt := 1; ; attempt++ {
		if attempt > 8 {
			t.Fatal("no attempt replaced both objects within the second of the replica's write")
		}
		tag := fmt.Sprintf("v%d", attempt)
		// 1 MiB layers: whole objects of one PUT; the replica serves them
		// from its record without hashing unless the record is bound to
		// what it wrote.
		img := up.PushImage(t, "open/race", tag, harness.ImageOptions{Layers: 2, LayerSize: 1 << 20, Static: true})
		if d, err := harness.GGCRPull(a.Ref(up, "open/race:"+tag)); err != nil || d != img.Digest {
			t.Fatalf("pull through the replica: %s %v", d, err)
		}
		bad := make([][]byte, len(img.Layers))
		sameSecond := true
		for i, l := range img.Layers {
			key := objectKey(root, l.Digest)
			before := headWhenStored(c, t, bucket, key)
			bad[i] = bytes.Clone(l.Data)
			bad[i][1500] ^= 0xff // inside the range asked for below
			if _, err := bucket.Client.PutObjectWithContext(c, &s3.PutObjectInput{Bucket: aws.String(bucket.Bucket),
				Key: aws.String(key), Body: bytes.NewReader(bad[i])}); err != nil {
				t.Fatal(err)
			}
			after := headWhenStored(c, t, bucket, key)
			if !before.LastModified.Equal(*after.LastModified) || *before.ContentLength != *after.ContentLength {
				sameSecond = false
			}
		}
		if !sameSecond {
			t.Logf("attempt %d: a replacement fell in the next second; trying again with new blobs", attempt)
			continue
		}
		t.Logf("attempt %d: both objects replaced within the second of the replica's write", attempt)

		whole, ranged := img.Layers[0], img.Layers[1]
		u := a.URL + "/v2/" + up.Name + "/open/race/blobs/"
		st, _, body, err := harness.Get(c, u+whole.Digest, nil)
		if err == nil && st == http.StatusOK && !bytes.Equal(body, whole.Data) {
			if bytes.Equal(body, bad[0]) {
				t.Error("200: the replica served the replaced object as the blob it verified")
			} else {
				t.Errorf("200: the replica served %d wrong bytes", len(body))
			}
		}
		st, _, body, err = harness.Get(c, u+ranged.Digest, map[string]string{"Range": "bytes=1000-1999"})
		if err == nil && st == http.StatusPartialContent && !bytes.Equal(body, ranged.Data[1000:2000]) {
			t.Error("206: the replica served a range of the replaced object")
		}
		// Found out, the replacement is gone and the blob is served again.
		for _, l := range img.Layers {
			st, _, body, err := harness.Get(c, u+l.Digest, nil)
			if err != nil || st != http.StatusOK || !bytes.Equal(body, l.Data) {
				t.Errorf("after the replacement was found: %s: %d, %d bytes, %v", l.Digest, st, len(body), err)
			}
		}
		return
	}
}

// headWhenStored waits until key is in the bucket (a replica commits after
// it served the blob) and returns its metadata.
func headWhenStored(ctx context.Context, t *testing.T, b *harness.S3, key string) *s3.HeadObjectOutput {
	t.Helper()
	for {
		h, err := b.Client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key)})
		if err == nil {
			return h
		}
		var rf awserr.RequestFailure
		if !errors.As(err, &rf) || rf.StatusCode() != http.StatusNotFound {
			t.Fatalf("head %s: %v", key, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s was never stored", key)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
