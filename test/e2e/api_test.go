package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// GET /v2/ answers like a registry.
func TestBaseEndpoint(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	st, h, _, err := harness.Get(ctx(t), f.px.URL+"/v2/", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("GET /v2/: %d %v", st, err)
	}
	if v := h.Get("Docker-Distribution-API-Version"); v != "registry/2.0" {
		t.Errorf("Docker-Distribution-API-Version %q", v)
	}
}

// tags/list passes through with n/last pagination.
func TestTagsListPagination(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	img := f.up.PushImage(t, "open/tags", "t1", harness.ImageOptions{})
	for _, tag := range []string{"t2", "t3", "t4", "t5"} {
		f.up.TagManifest(t, "open/tags", tag, img.Manifest, img.MediaType)
	}
	list := func(query string) ([]string, http.Header) {
		t.Helper()
		st, h, body, err := harness.Get(ctx(t), f.url("open/tags/tags/list"+query), nil)
		if err != nil || st != http.StatusOK {
			t.Fatalf("tags/list%s: %d %v %s", query, st, err, body)
		}
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &tl); err != nil {
			t.Fatal(err)
		}
		if tl.Name != f.up.Name+"/open/tags" && tl.Name != "open/tags" {
			t.Errorf("tags/list name %q", tl.Name)
		}
		return tl.Tags, h
	}
	all, _ := list("")
	if !slices.Equal(all, []string{"t1", "t2", "t3", "t4", "t5"}) {
		t.Errorf("all tags %v", all)
	}
	page, h := list("?n=2")
	if !slices.Equal(page, []string{"t1", "t2"}) {
		t.Errorf("n=2: %v", page)
	}
	if link := h.Get("Link"); !strings.Contains(link, "last=t2") || !strings.Contains(link, `rel="next"`) {
		t.Errorf("n=2 Link header %q", link)
	} else if strings.Contains(link, "://") && !strings.Contains(link, f.px.Host) {
		t.Errorf("Link header points away from the proxy: %q", link)
	}
	page, _ = list("?n=2&last=t2")
	if !slices.Equal(page, []string{"t3", "t4"}) {
		t.Errorf("n=2&last=t2: %v", page)
	}
	page, _ = list("?n=2&last=t4")
	if !slices.Equal(page, []string{"t5"}) {
		t.Errorf("n=2&last=t4: %v", page)
	}
	// A denied repository's tags are not listed.
	st, _, body, _ := harness.Get(ctx(t), f.url("blocked/app/tags/list"), nil)
	expectOCIError(t, "tags/list of a denied repository", st, body, http.StatusForbidden, "DENIED")
}

// Push, delete and mount answer 405 UNSUPPORTED and reach no upstream.
func TestWriteMethodsUnsupported(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	d := f.allowed.Layers[0].Digest
	cases := []struct{ method, path string }{
		{http.MethodPost, "open/app/blobs/uploads/"},
		{http.MethodPost, "open/app/blobs/uploads/?digest=" + d},
		{http.MethodPost, "open/app/blobs/uploads/?mount=" + d + "&from=" + f.up.Name + "/open/other"},
		{http.MethodPatch, "open/app/blobs/uploads/some-uuid"},
		{http.MethodPut, "open/app/blobs/uploads/some-uuid?digest=" + d},
		{http.MethodPut, "open/app/manifests/v2"},
		{http.MethodDelete, "open/app/manifests/" + f.allowed.Digest},
		{http.MethodDelete, "open/app/manifests/v1"},
		{http.MethodDelete, "open/app/blobs/" + d},
	}
	for _, c := range cases {
		st, _, body, err := harness.Do(ctx(t), c.method, f.url(c.path), map[string]string{"Content-Type": f.allowed.MediaType}, f.allowed.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		expectOCIError(t, c.method+" "+c.path, st, body, http.StatusMethodNotAllowed, "UNSUPPORTED")
	}
	// containerd's form too.
	st, _, body, _ := harness.Do(ctx(t), http.MethodPost, f.px.URL+"/v2/open/app/blobs/uploads/?ns="+f.up.Name, nil, nil)
	expectOCIError(t, "POST upload ?ns=", st, body, http.StatusMethodNotAllowed, "UNSUPPORTED")
	if n := f.up.Reg.Total(); n != 0 {
		t.Errorf("write attempts caused %d upstream requests", n)
	}
	// Nothing changed upstream.
	if d, err := harness.GGCRPull(f.up.Ref("open/app:v1")); err != nil || d != f.allowed.Digest {
		t.Errorf("upstream content changed: %s %v", d, err)
	}
}

// An unknown upstream name or ns is an error and never a request anywhere,
// even when it names the real upstream's host:port.
func TestUnknownUpstreamNoRequest(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	other := harness.StartUpstream(t, harness.UpstreamOptions{Name: "other.local"})
	other.PushImage(t, "open/app", "v1", harness.ImageOptions{})
	other.Reg.ResetCounts()
	paths := []string{
		"/v2/nope.local/open/app/manifests/v1",
		"/v2/other.local/open/app/manifests/v1",
		"/v2/" + f.up.Host + "/open/app/manifests/v1",
		"/v2/" + other.Host + "/open/app/manifests/v1",
		"/v2/open/app/manifests/v1",
		"/v2/open/app/manifests/v1?ns=nope.local",
		"/v2/open/app/manifests/v1?ns=other.local",
		"/v2/open/app/manifests/v1?ns=" + f.up.Host,
		"/v2/open/app/manifests/v1?ns=" + other.Host,
		"/v2/open/app/blobs/" + f.allowed.Layers[0].Digest + "?ns=" + f.up.Host,
		"/v2/nope.local/open/app/tags/list",
		"/v2/nope.local/open/app/referrers/" + f.allowed.Digest,
		"/v2/app/manifests/v1",
	}
	for _, p := range paths {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			st, _, body, err := harness.Do(ctx(t), m, f.px.URL+p, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st < 400 || st >= 500 {
				t.Errorf("%s %s: status %d, want a 4xx error", m, p, st)
			}
			if m == http.MethodGet {
				if _, err := harness.ParseOCIError(body); err != nil {
					t.Errorf("%s %s: %v", m, p, err)
				}
			}
		}
	}
	if n := f.up.Reg.Total(); n != 0 {
		t.Errorf("configured upstream got %d requests for unknown names", n)
	}
	if n := other.Reg.Total(); n != 0 {
		t.Errorf("an unconfigured registry got %d requests", n)
	}
}

// Path traversal, malformed names and malformed digests get 4xx OCI errors
// and never reach the upstream (in particular never the denied repository).
func TestMalformedInput(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	u := f.up.Name
	bad := f.allowed.Layers[0].Digest
	cases := []string{
		"/v2/" + u + "/open/../blocked/app/manifests/v1",
		"/v2/" + u + "/open/%2e%2e/blocked/app/manifests/v1",
		"/v2/" + u + "/open/%2E%2E/blocked/app/manifests/v1",
		"/v2/" + u + "/open%2f..%2fblocked/app/manifests/v1",
		"/v2/" + u + "/open/app/../../blocked/app/manifests/v1",
		"/v2/" + u + "/./open/app/manifests/v1",
		"/v2/" + u + "//open/app/manifests/v1",
		"/v2/../" + u + "/open/app/manifests/v1",
		"/v2/" + u + "/Open/App/manifests/v1",
		"/v2/" + u + "/open/app_/manifests/v1",
		"/v2/" + u + "/open/-app/manifests/v1",
		"/v2/" + u + "/open/app/manifests/v1%2f..%2f..%2fblocked",
		"/v2/" + u + "/open/app/manifests/-bad-tag",
		"/v2/" + u + "/open/app/manifests/" + strings.Repeat("a", 129),
		"/v2/" + u + "/open/app/manifests/sha256:abc",
		"/v2/" + u + "/open/app/manifests/sha256:" + strings.Repeat("Z", 64),
		"/v2/" + u + "/open/app/blobs/sha256:abc",
		"/v2/" + u + "/open/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
		"/v2/" + u + "/open/app/blobs/" + strings.ToUpper(bad),
		"/v2/" + u + "/open/app/blobs/../../blocked/app/blobs/" + f.denied.Layers[0].Digest,
		"/v2/" + u + "/open/app/blobs/" + bad + "/..",
		"/v2/" + u + "/open/app/referrers/not-a-digest",
		"/v2/" + u + "/" + strings.Repeat("a/", 200) + "manifests/v1",
		"/v2/open/app/manifests/v1?ns=../" + u,
		"/v2/open/app/manifests/v1?ns=" + u + "/../x",
	}
	for _, p := range cases {
		st, body := harness.RawRequest(t, f.px.Host, http.MethodGet, p)
		if st < 400 || st >= 500 {
			t.Errorf("GET %s: status %d, want 4xx; body %q", p, st, trunc(body))
			continue
		}
		if _, err := harness.ParseOCIError(body); err != nil {
			t.Errorf("GET %s: %v", p, err)
		}
	}
	if n := f.up.Reg.Total(); n != 0 {
		t.Errorf("malformed requests caused %d upstream requests (%d to the denied repository)", n, f.up.Count("", "/blocked/"))
	}
}

// Docker schema 2 and OCI manifests and indexes pass through byte-for-byte
// with their media type, honouring Accept.
func TestAcceptPassThrough(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	docker := f.up.PushImage(t, "open/docker", "v1", harness.ImageOptions{Docker: true})
	oci := f.up.PushImage(t, "open/oci", "v1", harness.ImageOptions{})
	dlist := f.up.PushIndex(t, "open/dlist", "v1", true)
	oidx := f.up.PushIndex(t, "open/oidx", "v1", false)
	const all = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " +
		"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
	for _, c := range []struct {
		repo, mt, digest string
		raw              []byte
	}{
		{"open/docker", docker.MediaType, docker.Digest, docker.Manifest},
		{"open/oci", oci.MediaType, oci.Digest, oci.Manifest},
		{"open/dlist", dlist.MediaType, dlist.Digest, dlist.Manifest},
		{"open/oidx", oidx.MediaType, oidx.Digest, oidx.Manifest},
	} {
		for _, accept := range []string{c.mt, all} {
			for _, ref := range []string{"v1", c.digest} {
				st, h, body, err := harness.Get(ctx(t), f.url(c.repo+"/manifests/"+ref), map[string]string{"Accept": accept})
				if err != nil || st != http.StatusOK {
					t.Errorf("%s:%s Accept %q: %d %v %s", c.repo, ref, accept, st, err, trunc(body))
					continue
				}
				if string(body) != string(c.raw) {
					t.Errorf("%s:%s: bytes differ from upstream", c.repo, ref)
				}
				if h.Get("Content-Type") != c.mt {
					t.Errorf("%s:%s: Content-Type %q, want %q", c.repo, ref, h.Get("Content-Type"), c.mt)
				}
				if h.Get("Docker-Content-Digest") != c.digest {
					t.Errorf("%s:%s: Docker-Content-Digest %q, want %q", c.repo, ref, h.Get("Docker-Content-Digest"), c.digest)
				}
			}
			st, h, _, err := harness.Do(ctx(t), http.MethodHead, f.url(c.repo+"/manifests/v1"), map[string]string{"Accept": accept}, nil)
			if err != nil || st != http.StatusOK || h.Get("Docker-Content-Digest") != c.digest || h.Get("Content-Length") != strconv.Itoa(len(c.raw)) {
				t.Errorf("HEAD %s Accept %q: %d %v digest %q length %q", c.repo, accept, st, err, h.Get("Docker-Content-Digest"), h.Get("Content-Length"))
			}
		}
	}
	// An OCI manifest is not handed to a client that accepts only Docker
	// schema 2, as distribution does, even when the proxy holds it already.
	st, _, body, err := harness.Get(ctx(t), f.url("open/oci/manifests/v1"), map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
	if err != nil {
		t.Fatal(err)
	}
	expectOCIError(t, "OCI manifest, Docker-only Accept", st, body, http.StatusNotFound, "MANIFEST_UNKNOWN")
}
