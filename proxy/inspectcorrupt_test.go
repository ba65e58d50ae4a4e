package proxy_test

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// A stored copy that changed at rest (disk fault, another writer of a
// shared bucket) and is inspected under a content rule: a finding counts
// only once the whole copy hashed to the blob's digest. (A finding on bytes
// that are not the blob was recorded as the blob's, the damaged copy was
// kept, and the legitimate blob stayed refused after the copy was repaired.)
func TestFindingOnCorruptStoredCopyIsNotRecorded(t *testing.T) {
	e := startWith(t, nil, rfTwoRules) // app/** without content checks, models/** with them
	h := e.up.Host
	good := bytes.Repeat([]byte("plain weights, not a pickle. "), 200)
	evil := append([]byte{0x80, 0x04}, good[2:]...) // same size, a pickle header
	const mt = "application/octet-stream"
	for _, repo := range []string{"app/m", "models/m"} {
		cfg := ivPushBlob(t, h, repo, []byte(`{"architecture":"x"}`), "application/vnd.oci.image.config.v1+json")
		l := ivPushBlob(t, h, repo, good, mt)
		ivImage(t, h, repo+":1", cfg, l)
	}
	gd := ivPushBlob(t, h, "app/m", good, mt).Digest
	plain := e.proxy.URL + "/v2/upstream.local/app/m"
	models := e.proxy.URL + "/v2/upstream.local/models/m"
	if resp, _ := get(t, plain+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("plain manifest")
	}
	if resp, b := get(t, plain+"/blobs/"+gd.String()); resp.StatusCode != 200 || !bytes.Equal(b, good) {
		t.Fatalf("plain blob: %d", resp.StatusCode)
	}
	// The stored copy changes at rest.
	p := storedPath(e, gd)
	time.Sleep(20 * time.Millisecond)
	if err := os.WriteFile(p, evil, 0o640); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, models+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("models manifest")
	}
	resp, b := get(t, models+"/blobs/"+gd.String())
	t.Logf("models blob over the damaged copy: %d %s", resp.StatusCode, b)
	// The copy is repaired (or fetched again): the blob must be servable.
	if _, err := os.Stat(p); err == nil {
		if err := os.WriteFile(p, good, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if resp, b := get(t, models+"/blobs/"+gd.String()); resp.StatusCode != 200 || !bytes.Equal(b, good) {
		t.Fatalf("the intact blob is refused under the content rule after a damaged copy was inspected: %d %s", resp.StatusCode, b)
	}
}
