package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// The S3 store fails: MinIO is killed (SIGKILL) while a replica uploads a
// large blob it verified, and later while a replica serves a stored blob.
// Clients get the verified blob or an error, never a short body presented
// as complete; no partial object is ever visible in the bucket; once MinIO
// is back on the same port and data, every replica pulls again without a
// restart, and what they store is whole.
func TestSharedS3StoreKilledMidUpload(t *testing.T) {
	bucket := harness.StartS3(t)
	up := harness.StartUpstream(t, harness.UpstreamOptions{Disk: true})
	const root = "/pullgate-fault"
	shared := gate.Options{Upstreams: []*harness.Upstream{up}, TagTTL: "1ms",
		Edit: func(doc map[string]any) { doc["storage"] = bucket.StorageConfig(root) }}
	a := gate.Start(t, shared)
	b := gate.Start(t, shared)
	c := ctx(t)
	blobURL := func(p *gate.Proxy, repo, dgst string) string {
		return p.URL + "/v2/" + up.Name + "/" + repo + "/blobs/" + dgst
	}

	// 1. Killed mid-upload. The replica commits a blob after it verified
	// it (the client is served from the local spool meanwhile); MinIO is
	// killed as soon as the upload of its parts is under way.
	var img *harness.Image
	for attempt := 1; ; attempt++ {
		if attempt > 4 {
			t.Fatal("no attempt caught the upload under way")
		}
		repo := fmt.Sprintf("open/big%d", attempt)
		// 48 MiB: several 10 MiB parts of a multipart upload.
		img = up.PushImage(t, repo, "v1", harness.ImageOptions{Layers: 1, LayerSize: 48 << 20, Static: true})
		layer := img.Layers[0]
		if st, _, _, err := harness.Get(c, a.URL+"/v2/"+up.Name+"/"+repo+"/manifests/v1", nil); err != nil || st != http.StatusOK {
			t.Fatalf("manifest: %d %v", st, err)
		}
		got := make(chan getResult, 1)
		go func() { got <- get(c, blobURL(a, repo, layer.Digest), nil) }()
		caught := waitForUpload(c, t, bucket, objectKey(root, layer.Digest))
		if caught {
			bucket.Kill()
		}
		r := <-got
		if r.err == nil && r.status == http.StatusOK && !bytes.Equal(r.body, layer.Data) {
			t.Fatalf("a short or wrong body was presented as the complete blob (%d of %d bytes)", len(r.body), len(layer.Data))
		}
		if !caught {
			t.Logf("attempt %d: the upload finished before it was seen; again with a new blob", attempt)
			continue
		}
		t.Logf("attempt %d: MinIO killed during the upload; the client got %d, %d bytes, %v", attempt, r.status, len(r.body), r.err)

		// While MinIO is down: the other replica answers the blob (from
		// the upstream) or fails; it never sends a partial blob as whole.
		r = get(c, blobURL(b, repo, layer.Digest), nil)
		if r.err == nil && r.status == http.StatusOK && !bytes.Equal(r.body, layer.Data) {
			t.Fatalf("store down: replica b presented %d wrong bytes as the blob", len(r.body))
		}
		t.Logf("store down: replica b answered %d, %d bytes, %v: %.300s", r.status, len(r.body), r.err, r.body)
		break
	}

	bucket.Restart(t)
	layer := img.Layers[0]
	key := objectKey(root, layer.Digest)
	// Nothing partial: the interrupted upload left no object.
	if keys := bucket.Keys(t, strings.TrimPrefix(root, "/")+"/blobs/"); containsKey(keys, key) {
		checkWhole(c, t, bucket, key, layer.Digest)
	}

	// 2. Back: every replica pulls without a restart, and the blob is
	// stored whole.
	for name, p := range map[string]*gate.Proxy{"a": a, "b": b} {
		if d, err := harness.GGCRPull(p.Ref(up, img.Repo+":v1")); err != nil || d != img.Digest {
			t.Fatalf("after MinIO came back, pull through replica %s: %s %v", name, d, err)
		}
	}
	headWhenStored(c, t, bucket, key)
	checkWhole(c, t, bucket, key, layer.Digest)

	// 3. Killed while a replica serves the stored blob: the response is
	// cut short, not completed with other bytes or presented as whole.
	resp, err := do(c, blobURL(b, img.Repo, layer.Digest))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("serving the stored blob: %v %v", resp, err)
	}
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	bucket.Kill()
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := append(first, rest...)
	if err == nil {
		if bytes.Equal(body, layer.Data) {
			t.Log("the whole blob was already in flight when MinIO died")
		} else {
			t.Fatalf("store killed mid-serve: %d bytes presented as the complete blob", len(body))
		}
	} else if !bytes.Equal(body, layer.Data[:len(body)]) {
		t.Fatalf("store killed mid-serve: the bytes sent before the error are wrong")
	}
	bucket.Restart(t)
	for name, p := range map[string]*gate.Proxy{"a": a, "b": b} {
		r := get(c, blobURL(p, img.Repo, layer.Digest), nil)
		if r.err != nil || r.status != http.StatusOK || !bytes.Equal(r.body, layer.Data) {
			t.Fatalf("after the second restart, replica %s: %d, %d bytes, %v", name, r.status, len(r.body), r.err)
		}
	}
}

type getResult struct {
	status int
	body   []byte
	err    error
}

func get(ctx context.Context, url string, hdr map[string]string) getResult {
	st, _, body, err := harness.Get(ctx, url, hdr)
	return getResult{st, body, err}
}

func do(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

// waitForUpload polls the bucket until a multipart upload to key is under
// way (true) or the object exists already (false: the upload was missed).
func waitForUpload(ctx context.Context, t *testing.T, b *harness.S3, key string) bool {
	t.Helper()
	for {
		out, err := b.Client.ListMultipartUploadsWithContext(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(b.Bucket), Prefix: aws.String(key)})
		if err != nil {
			t.Fatalf("list uploads: %v", err)
		}
		for _, u := range out.Uploads {
			if aws.StringValue(u.Key) == key {
				return true
			}
		}
		if _, err := b.Client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key)}); err == nil {
			return false
		}
		select {
		case <-ctx.Done():
			t.Fatal("the replica never uploaded the blob")
		case <-time.After(time.Millisecond):
		}
	}
}

// checkWhole fails the test unless the object at key hashes to dgst.
func checkWhole(ctx context.Context, t *testing.T, b *harness.S3, key, dgst string) {
	t.Helper()
	obj, err := b.Client.GetObjectWithContext(ctx, &s3.GetObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Body.Close()
	d, err := digest.FromReader(obj.Body)
	if err != nil || d.String() != dgst {
		t.Fatalf("the bucket holds a partial or wrong object at %s: %s %v", key, d, err)
	}
}

func containsKey(keys []string, key string) bool {
	for _, k := range keys {
		if k == key {
			return true
		}
	}
	return false
}
