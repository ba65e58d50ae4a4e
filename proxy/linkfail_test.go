package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/opencontainers/go-digest"
)

// linkListFails makes every replica on a "sharedmem-linkfail-test" store
// fail to list the manifests linked to a blob, as an object store that
// times out would.
var linkListFails atomic.Bool

// findingReadFails makes reads of recorded content findings fail.
var findingReadFails atomic.Bool

// flakyLinks is a shared in-memory driver whose List of link records
// fails while linkListFails is set.
type flakyLinks struct{ storagedriver.StorageDriver }

func (d flakyLinks) List(ctx context.Context, p string) ([]string, error) {
	if linkListFails.Load() && strings.Contains(p, "/links/") {
		return nil, errors.New("injected: object store timed out")
	}
	return d.StorageDriver.List(ctx, p)
}

func (d flakyLinks) GetContent(ctx context.Context, p string) ([]byte, error) {
	if findingReadFails.Load() && strings.Contains(p, "/bad/") {
		return nil, errors.New("injected: object store timed out")
	}
	return d.StorageDriver.GetContent(ctx, p)
}

func init() {
	factory.Register("sharedmem-linkfail-test", &sharedMem{m: map[string]storagedriver.StorageDriver{},
		wrap: func(d storagedriver.StorageDriver) storagedriver.StorageDriver { return flakyLinks{d} }})
}

// A replica holds the grant of a blob it served as README.md; another
// replica then records the same blob as a chat template that the content
// rule refuses. When the shared store cannot list the blob's links, the
// first replica must not fall back to its held grant (that would serve
// the template unjudged): it answers 503 and nothing is concluded. Once
// the store answers again, the blob is judged as the template: 403.
func TestBlobLinksUnreadable(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	const repo = "models/linkfail"
	b := ivPushBlob(t, e.up.Host, repo, dunderTemplate, docRaw)
	declModel(t, e, repo+":readme", named(b, docRaw, titleKey, "README.md"))
	declModel(t, e, repo+":tmpl", named(b, docRaw, filepathKey, "chat_template.jinja"))
	e.storageDriver = "sharedmem-linkfail-test"
	a, bb := e.replica(t, t.Name(), "spool-a"), e.replica(t, t.Name(), "spool-b")
	blob := repo + "/blobs/" + b.Digest.String()
	a.want(t, repo+"/manifests/readme", 200, "")
	a.want(t, blob, 200, "")
	bb.want(t, repo+"/manifests/tmpl", 200, "")

	linkListFails.Store(true)
	t.Cleanup(func() { linkListFails.Store(false) })
	a.want(t, blob, 503, "could not list which manifests reference")
	linkListFails.Store(false)
	a.want(t, blob, 403, "chat_template.jinja")
}

// unreadableFinding records a content finding (a chat template refused
// on replica spool-a) for the manifest repo:tmpl it returns, on a shared
// store whose findings cannot be read from then on (until the test ends).
func unreadableFinding(t *testing.T, repo string) (*env, digest.Digest) {
	t.Helper()
	e := startWith(t, nil, modelPolicy)
	b := ivPushBlob(t, e.up.Host, repo, dunderTemplate, docRaw)
	md := declModel(t, e, repo+":tmpl", named(b, docRaw, filepathKey, "chat_template.jinja"))
	e.storageDriver = "sharedmem-linkfail-test"
	a := e.replica(t, t.Name(), "spool-a")
	a.want(t, repo+"/manifests/tmpl", 200, "")
	a.want(t, repo+"/blobs/"+b.Digest.String(), 403, "Jinja")
	findingReadFails.Store(true)
	t.Cleanup(func() { findingReadFails.Store(false) })
	return e, md
}

// A content finding recorded in the shared store (a chat template refused
// on one replica) must deny the artifact on a replica that cannot read it
// now: unreadable is not "no finding". Once the store answers, the
// finding itself denies it.
func TestContentFindingUnreadable(t *testing.T) {
	const repo = "models/findingfail"
	e, _ := unreadableFinding(t, repo)
	bb := e.replica(t, t.Name(), "spool-b")
	bb.want(t, repo+"/manifests/tmpl", 403, "could not read the content findings")
	findingReadFails.Store(false)
	c := e.replica(t, t.Name(), "spool-c")
	c.want(t, repo+"/manifests/tmpl", 403, "Jinja")
}

// A replica that holds the grant of a clean blob, asked for it while the
// store cannot return the blob's recorded findings, answers 503 and
// records nothing: the read failure is not a content finding (it was, and
// marked the blob bad for good). Once the store answers, it is served.
func TestFindingReadFailureDoesNotMarkBad(t *testing.T) {
	e := startWith(t, nil, modelPolicy)
	const repo = "models/findingpoison"
	b := ivPushBlob(t, e.up.Host, repo, benignTemplate, docRaw)
	declModel(t, e, repo+":readme", named(b, docRaw, titleKey, "README.md"))
	e.storageDriver = "sharedmem-linkfail-test"
	a := e.replica(t, t.Name(), "spool-a")
	blob := repo + "/blobs/" + b.Digest.String()
	a.want(t, repo+"/manifests/readme", 200, "")
	a.want(t, blob, 200, "")

	findingReadFails.Store(true)
	t.Cleanup(func() { findingReadFails.Store(false) })
	a.want(t, blob, 503, "could not read the content findings")
	findingReadFails.Store(false)
	a.want(t, blob, 200, "")
	c := e.replica(t, t.Name(), "spool-c")
	c.want(t, repo+"/manifests/readme", 200, "")
}

// Content findings that are a store error (the store could not return
// the recorded ones) are never waived: an exception pinned to the
// manifest that lists those reasons by their exact text, class unknown,
// leaves the artifact denied while the store cannot be read.
func TestUnreadableFindingNotWaived(t *testing.T) {
	const repo = "models/findingwaive"
	e, md := unreadableFinding(t, repo)
	bb := e.replica(t, t.Name(), "spool-b")
	st, body := bb.status(t, repo+"/manifests/tmpl")
	var resp struct {
		Errors []struct {
			Detail struct {
				Reasons []string `json:"reasons"`
			} `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &resp); st != 403 || err != nil || len(resp.Errors) == 0 || len(resp.Errors[0].Detail.Reasons) == 0 {
		t.Fatalf("store unreadable: %d %s (%v)", st, body, err)
	}
	var waive []string
	for _, r := range resp.Errors[0].Detail.Reasons {
		if !strings.Contains(r, "could not read the content findings") {
			t.Fatalf("fixture: a reason that is not the store error: %q", r)
		}
		q, _ := json.Marshal(r)
		waive = append(waive, string(q))
	}
	pol := modelPolicy + fmt.Sprintf(`exceptions:
  - name: store-down
    match: {repositories: ["upstream.local/%s"], digest: %s}
    waive: [%s]
    findingClasses: [unknown]
    expires: %s
    reason: r
    approvedBy: a
`, repo, md, strings.Join(waive, ", "), time.Now().UTC().Add(time.Hour).Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.replica(t, t.Name(), "spool-c")
	c.want(t, repo+"/manifests/tmpl", 403, "could not read the content findings")
}
