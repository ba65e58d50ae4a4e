package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/pullgate/pullgate/cache/store"
	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy/config"
)

// ociCode returns the first OCI error code of a response body.
func ociCode(b []byte) string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

func head(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A manifest (and through it, its blobs) pulled in one repository is not
// served by digest in another repository the upstream does not have it in,
// even though its bytes are cached: with client access control, bob (allowed
// only public/**) cannot obtain alice's app/secret image by naming its
// digests under public/nothing, which does not exist upstream.
func TestManifestNotServedInRepositoryThatLacksIt(t *testing.T) {
	up, err := upstream.Start(upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	dir := t.TempDir()
	ha, _ := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	hb, _ := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost)
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("alice:"+string(ha)+"\nbob:"+string(hb)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "policy.yaml", testPolicy)
	cfg, err := config.Load(writeFile(t, dir, "pullgate.yaml", fmt.Sprintf(`
storage: {path: data}
upstreams: [{name: upstream.local, url: %s}]
policy: policy.yaml
audit: {path: audit.jsonl}
auth:
  htpasswd: htpasswd
  access:
    - repositories: ["upstream.local/app/**"]
      allow: [alice]
    - repositories: ["upstream.local/public/**"]
      allow: [alice, bob]
`, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	ps := serve(t, cfg)

	img, ld := oneLayerImage(t, 4096)
	secret := push(t, up.Host, "app/secret:1", img)

	do := func(method, user, pw, path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, ps.URL+path, nil)
		req.SetBasicAuth(user, pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if st, b := do("GET", "alice", "alice-pw", "/v2/upstream.local/app/secret/manifests/1"); st != 200 {
		t.Fatalf("alice manifest: %d %s", st, b)
	}
	if st, b := do("GET", "alice", "alice-pw", "/v2/upstream.local/app/secret/blobs/"+ld.String()); st != 200 {
		t.Fatalf("alice blob: %d %s", st, b)
	}
	if st, _ := do("GET", "bob", "bob-pw", "/v2/upstream.local/app/secret/manifests/"+secret.String()); st != http.StatusForbidden {
		t.Fatalf("control: bob reading app/secret: %d, want 403", st)
	}
	up.ResetCounts()
	for _, m := range []string{"GET", "HEAD"} {
		st, b := do(m, "bob", "bob-pw", "/v2/upstream.local/public/nothing/manifests/"+secret.String())
		if st != http.StatusNotFound || m == "GET" && ociCode(b) != "MANIFEST_UNKNOWN" {
			t.Errorf("%s app/secret's manifest under public/nothing: %d %s (want 404 MANIFEST_UNKNOWN)", m, st, b)
		}
		st, b = do(m, "bob", "bob-pw", "/v2/upstream.local/public/nothing/blobs/"+ld.String())
		if st == 200 || st == 206 {
			t.Errorf("%s app/secret's layer under public/nothing: %d (%d bytes)", m, st, len(b))
		}
	}
	if n := up.Count("HEAD", "/v2/public/nothing/manifests/"+secret.String()); n == 0 {
		t.Error("the upstream was not asked whether public/nothing has the manifest")
	}
	// Still nothing after the refusals: no links or grants were left behind.
	if st, _ := do("GET", "bob", "bob-pw", "/v2/upstream.local/public/nothing/blobs/"+ld.String()); st == 200 {
		t.Error("layer served under public/nothing after the manifest was refused")
	}
}

// Two repositories sharing an image: the second serves the cached manifest
// (and the cached layer) by digest once the upstream confirmed it has it;
// the confirmation is one HEAD, not repeated on warm pulls.
func TestManifestServedInRepositoryThatHasIt(t *testing.T) {
	e := start(t, nil)
	img, ld := oneLayerImage(t, 4096)
	d := push(t, e.up.Host, "app/a:1", img)
	push(t, e.up.Host, "app/b:1", img)
	base := e.proxy.URL + "/v2/upstream.local/"

	if resp, b := get(t, base+"app/a/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("app/a manifest: %d %s", resp.StatusCode, b)
	}
	if resp, _ := get(t, base+"app/a/blobs/"+ld.String()); resp.StatusCode != 200 {
		t.Fatalf("app/a blob: %d", resp.StatusCode)
	}
	// Warm pulls by digest where the tag resolved: no upstream request.
	e.up.ResetCounts()
	if resp, _ := get(t, base+"app/a/manifests/"+d.String()); resp.StatusCode != 200 {
		t.Fatalf("app/a by digest: %d", resp.StatusCode)
	}
	if n := e.up.Total(); n != 0 {
		t.Errorf("warm pull by digest in app/a: %d upstream requests, want 0", n)
	}

	// app/b: cached bytes, no record yet: one confirmation, no manifest GET.
	e.up.ResetCounts()
	resp, b := get(t, base+"app/b/manifests/"+d.String())
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("app/b by digest: %d %s", resp.StatusCode, b)
	}
	if n := e.up.Count("HEAD", "/v2/app/b/manifests/"+d.String()); n != 1 {
		t.Errorf("confirmation HEADs for app/b: %d, want 1", n)
	}
	if n := e.up.Count("GET", "/manifests/"); n != 0 {
		t.Errorf("manifest GETs: %d, want 0 (the cached bytes are reused)", n)
	}
	if resp, _ := get(t, base+"app/b/blobs/"+ld.String()); resp.StatusCode != 200 {
		t.Fatalf("app/b blob: %d", resp.StatusCode)
	}

	// Warm: the record holds; nothing is asked again.
	e.up.ResetCounts()
	for i := 0; i < 3; i++ {
		if resp, _ := get(t, base+"app/b/manifests/"+d.String()); resp.StatusCode != 200 {
			t.Fatalf("warm app/b by digest: %d", resp.StatusCode)
		}
		if st := head(t, base+"app/b/manifests/"+d.String()); st != 200 {
			t.Fatalf("warm HEAD app/b by digest: %d", st)
		}
		if resp, _ := get(t, base+"app/b/blobs/"+ld.String()); resp.StatusCode != 200 {
			t.Fatalf("warm app/b blob: %d", resp.StatusCode)
		}
	}
	if n := e.up.Total(); n != 0 {
		t.Errorf("warm pulls in app/b: %d upstream requests, want 0", n)
	}

	// A repository the upstream does not have: 404, nothing granted.
	resp, b = get(t, base+"app/none/manifests/"+d.String())
	if resp.StatusCode != http.StatusNotFound || ociCode(b) != "MANIFEST_UNKNOWN" {
		t.Errorf("app/none by digest: %d %s", resp.StatusCode, b)
	}
	if resp, _ := get(t, base+"app/none/blobs/"+ld.String()); resp.StatusCode == 200 {
		t.Error("layer served in app/none")
	}
}

// Existence records are kept in the store: after a restart with the upstream
// unreachable, repositories where the manifest was served (by tag, or by
// digest after confirmation) still serve it and its layer; a repository that
// has it upstream but was never confirmed fails closed.
func TestManifestPresenceSurvivesRestart(t *testing.T) {
	e := start(t, nil)
	img, ld := oneLayerImage(t, 4096)
	d := push(t, e.up.Host, "app/a:1", img)
	push(t, e.up.Host, "app/b:1", img)
	push(t, e.up.Host, "app/c:1", img)
	base := func() string { return e.proxy.URL + "/v2/upstream.local/" }

	if resp, b := get(t, base()+"app/a/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("app/a: %d %s", resp.StatusCode, b)
	}
	if resp, _ := get(t, base()+"app/a/blobs/"+ld.String()); resp.StatusCode != 200 {
		t.Fatalf("app/a blob: %d", resp.StatusCode)
	}
	if resp, b := get(t, base()+"app/b/manifests/"+d.String()); resp.StatusCode != 200 {
		t.Fatalf("app/b: %d %s", resp.StatusCode, b)
	}

	// Restart on the same storage, upstream gone.
	e.proxy.Close()
	e.srv.Close()
	e.up.Close()
	e.open(t)

	for _, r := range []string{"app/a/manifests/1", "app/a/manifests/" + d.String(), "app/b/manifests/" + d.String()} {
		if resp, b := get(t, base()+r); resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != d.String() {
			t.Errorf("offline after restart %s: %d %s", r, resp.StatusCode, b)
		}
	}
	for _, r := range []string{"app/a", "app/b"} {
		if resp, _ := get(t, base()+r+"/blobs/"+ld.String()); resp.StatusCode != 200 {
			t.Errorf("offline after restart, %s layer: %d", r, resp.StatusCode)
		}
	}
	for _, r := range []string{"app/c", "app/none"} {
		resp, b := get(t, base()+r+"/manifests/"+d.String())
		if resp.StatusCode != http.StatusBadGateway || ociCode(b) != "UNAVAILABLE" || !strings.Contains(string(b), "could not confirm") {
			t.Errorf("offline, %s never confirmed: %d %s (want 502 UNAVAILABLE, could not confirm)", r, resp.StatusCode, b)
		}
		if st := head(t, base()+r+"/manifests/"+d.String()); st == 200 {
			t.Errorf("offline HEAD in %s: %d", r, st)
		}
		if resp, _ := get(t, base()+r+"/blobs/"+ld.String()); resp.StatusCode == 200 {
			t.Errorf("offline layer in %s: served", r)
		}
	}
}

// A blob request re-decides the manifests the store links to the blob in
// the repository; a link alone (as a store written before existence records
// were kept may hold for any repository) grants nothing unless the upstream
// has the manifest in that repository.
func TestBlobNotGrantedThroughLinkedManifestRepositoryLacks(t *testing.T) {
	e := start(t, nil)
	img, ld := oneLayerImage(t, 4096)
	d := push(t, e.up.Host, "app/a:1", img)
	if resp, b := get(t, e.proxy.URL+"/v2/upstream.local/app/a/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("app/a: %d %s", resp.StatusCode, b)
	}
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/a/blobs/"+ld.String()); resp.StatusCode != 200 {
		t.Fatalf("app/a layer: %d", resp.StatusCode)
	}
	ctx := context.Background()
	for _, kv := range [][2]string{{"_blobs", ld.Hex}, {"_blobs", strings.TrimPrefix(mustConfig(t, img), "sha256:")}} {
		key := store.MetaKey("links", "upstream.local", "app/none", kv[0], kv[1], d.Hex)
		if err := e.srv.Store().PutMeta(ctx, key, []byte(d.String())); err != nil {
			t.Fatal(err)
		}
	}
	e.proxy.Close()
	e.srv.Close()
	e.open(t)
	e.up.ResetCounts()
	resp, b := get(t, e.proxy.URL+"/v2/upstream.local/app/none/blobs/"+ld.String())
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("layer through a linked manifest app/none lacks: %d, %d bytes (want 403)", resp.StatusCode, len(b))
	}
	if n := e.up.Count("HEAD", "/v2/app/none/manifests/"+d.String()); n == 0 {
		t.Error("the upstream was not asked whether app/none has the linked manifest")
	}
	// In app/a the link (and the existence record) grant the layer.
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/a/blobs/"+ld.String()); resp.StatusCode != 200 {
		t.Errorf("app/a layer after restart: %d", resp.StatusCode)
	}
}

func mustConfig(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}
