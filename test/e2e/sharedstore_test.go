package e2e

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// Replicas sharing one S3 bucket (a real MinIO server) through
// distribution's s3 driver, as deploy/kubernetes/overlays/s3-replicas runs
// them: what one replica verified and stored, another serves without the
// upstream, also one started before the content arrived; a replica started
// during an upstream outage serves it offline; a stored object damaged in
// the bucket is never served whole, and is fetched again.
func TestSharedS3StoreReplicas(t *testing.T) {
	bucket := harness.StartS3(t)
	up := harness.StartUpstream(t, harness.UpstreamOptions{})
	// 12 MiB layers: the s3 driver uploads them in several parts.
	img := up.PushImage(t, "open/app", "v1", harness.ImageOptions{Layers: 2, LayerSize: 12 << 20, Static: true})
	const root = "/pullgate-e2e"
	shared := gate.Options{Upstreams: []*harness.Upstream{up}, TagTTL: "1ms",
		Edit: func(doc map[string]any) { doc["storage"] = bucket.StorageConfig(root) }}
	a := gate.Start(t, shared)
	b := gate.Start(t, shared) // started before the content exists

	if d, err := harness.GGCRPull(a.Ref(up, "open/app:v1")); err != nil || d != img.Digest {
		t.Fatalf("pull through replica a: %s %v", d, err)
	}
	keys := bucket.Keys(t, strings.TrimPrefix(root, "/")+"/blobs/")
	for _, bl := range append([]harness.Blob{img.Config}, img.Layers...) {
		if !slices.Contains(keys, objectKey(root, bl.Digest)) {
			t.Fatalf("blob %s is not in the bucket after replica a's pull (keys %v)", bl.Digest, keys)
		}
	}
	if uploads := bucket.Keys(t, strings.TrimPrefix(root, "/")+"/_uploads/"); len(uploads) != 0 {
		t.Errorf("uploads left behind: %v", uploads)
	}

	t.Run("a second replica serves what the first stored", func(t *testing.T) {
		up.Reg.ResetCounts()
		if d, err := harness.GGCRPull(b.Ref(up, "open/app:v1")); err != nil || d != img.Digest {
			t.Fatalf("pull through replica b: %s %v", d, err)
		}
		if n := up.Count("GET", "/blobs/"); n != 0 {
			t.Errorf("replica b fetched %d blobs from the upstream; they were in the shared store", n)
		}
		if n := up.Count("GET", "/manifests/sha256:"); n != 0 {
			t.Errorf("replica b fetched the manifest by digest %d times; it was in the shared store", n)
		}
		// A range from the shared store (replica b never verified this copy:
		// it is hashed whole first).
		st, _, body, err := harness.Get(ctx(t), b.URL+"/v2/"+up.Name+"/open/app/blobs/"+img.Layers[0].Digest, map[string]string{"Range": "bytes=1000-1999"})
		if err != nil || st != http.StatusPartialContent || !bytes.Equal(body, img.Layers[0].Data[1000:2000]) {
			t.Errorf("range from the shared store: %d, %d bytes, %v", st, len(body), err)
		}
	})

	t.Run("a damaged object is never served whole", func(t *testing.T) {
		layer := img.Layers[1]
		bad := bytes.Clone(layer.Data)
		bad[len(bad)/2] ^= 0xff
		if _, err := bucket.Client.PutObject(&s3.PutObjectInput{Bucket: aws.String(bucket.Bucket),
			Key: aws.String(objectKey(root, layer.Digest)), Body: bytes.NewReader(bad)}); err != nil {
			t.Fatal(err)
		}
		c := gate.Start(t, shared) // has verified no copy
		u := c.URL + "/v2/" + up.Name + "/open/app/blobs/" + layer.Digest
		// The manifest first: blobs are served only under an allowed manifest.
		if st, _, _, err := harness.Get(ctx(t), c.URL+"/v2/"+up.Name+"/open/app/manifests/v1", nil); err != nil || st != http.StatusOK {
			t.Fatalf("manifest through replica c: %d %v", st, err)
		}
		st, _, body, err := harness.Get(ctx(t), u, nil)
		if err == nil && st == http.StatusOK && len(body) == len(bad) && !bytes.Equal(body, layer.Data) {
			t.Fatal("the damaged object was served whole")
		}
		// Whether that response was cut off or already the refetched copy,
		// the next one is the right blob, and so is the bucket's object.
		st, _, body, err = harness.Get(ctx(t), u, nil)
		if err != nil || st != http.StatusOK || !bytes.Equal(body, layer.Data) {
			t.Fatalf("after the damage was found: %d, %d bytes, %v", st, len(body), err)
		}
		obj, err := bucket.Client.GetObject(&s3.GetObjectInput{Bucket: aws.String(bucket.Bucket), Key: aws.String(objectKey(root, layer.Digest))})
		if err != nil {
			t.Fatalf("the refetched blob is not in the bucket: %v", err)
		}
		defer obj.Body.Close()
		var got bytes.Buffer
		if _, err := got.ReadFrom(obj.Body); err != nil || !bytes.Equal(got.Bytes(), layer.Data) {
			t.Fatalf("the bucket still holds a damaged copy (%d bytes, %v)", got.Len(), err)
		}
	})

	t.Run("a replica started during an upstream outage serves the verified image", func(t *testing.T) {
		up.Down()
		d := gate.Start(t, shared)
		for _, r := range []string{"open/app:v1", "open/app@" + img.Digest} {
			if got, err := harness.GGCRPull(d.Ref(up, r)); err != nil || got != img.Digest {
				t.Errorf("offline pull %s through a new replica: %s %v", r, got, err)
			}
		}
		res := harness.CraneDigest(t, d.Ref(up, "open/app:v1"))
		if res.Err != nil || strings.TrimSpace(res.Stdout) != img.Digest {
			t.Errorf("offline crane digest through a new replica: %v", res)
		}
	})
}

// objectKey is the bucket key of a stored blob under the driver's root.
func objectKey(root, dgst string) string {
	alg, hex, _ := strings.Cut(dgst, ":")
	return strings.TrimPrefix(root, "/") + "/blobs/" + alg + "/" + hex[:2] + "/" + hex + "/data"
}
