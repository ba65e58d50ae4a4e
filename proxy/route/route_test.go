package route

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		path, ns string
		kind     Kind
		up, repo string
		ref      string
		code     string // expected error code, "" for success
	}{
		{path: "/v2/", kind: Base},
		{path: "/v2", kind: Base},
		{path: "/v2/upstream.local/app/manifests/1.0", kind: Manifest, up: "upstream.local", repo: "app", ref: "1.0"},
		{path: "/v2/upstream.local/a/b/c/manifests/" + d, kind: Manifest, up: "upstream.local", repo: "a/b/c", ref: d},
		{path: "/v2/library/alpine/manifests/3.20", ns: "docker.io", kind: Manifest, up: "docker.io", repo: "library/alpine", ref: "3.20"},
		{path: "/v2/app/manifests/latest", ns: "localhost:5001", kind: Manifest, up: "localhost:5001", repo: "app", ref: "latest"},
		{path: "/v2/upstream.local/app/blobs/" + d, kind: Blob, up: "upstream.local", repo: "app", ref: d},
		{path: "/v2/upstream.local/app/tags/list", kind: Tags, up: "upstream.local", repo: "app"},
		{path: "/v2/upstream.local/app/referrers/" + d, kind: Referrers, up: "upstream.local", repo: "app", ref: d},
		{path: "/v2/upstream.local/app/blobs/uploads/", kind: Upload, up: "upstream.local", repo: "app"},
		{path: "/v2/upstream.local/app/blobs/uploads/abc", kind: Upload, up: "upstream.local", repo: "app"},
		// a repository may be named like an endpoint component
		{path: "/v2/upstream.local/manifests/manifests/x", kind: Manifest, up: "upstream.local", repo: "manifests", ref: "x"},

		{path: "/v2/app/manifests/1.0", code: "NAME_INVALID"},                                    // no upstream prefix
		{path: "/v2/upstream.local/../etc/manifests/x", code: "NAME_INVALID"},                    // dot segment
		{path: "/v2/upstream.local/%2e%2e/manifests/x", code: "NAME_INVALID"},                    // escaped dot segment
		{path: "/v2/upstream.local/app%2fx/manifests/x", code: "NAME_INVALID"},                   // escaped slash
		{path: "/v2/upstream.local//app/manifests/x", code: "NAME_INVALID"},                      // empty segment
		{path: "/v2/upstream.local/App/manifests/x", code: "NAME_INVALID"},                       // uppercase
		{path: "/v2/upstream.local/app\\x/manifests/x", code: "NAME_INVALID"},                    // backslash
		{path: "/v2/upstream.local/app/manifests/-bad", code: "MANIFEST_INVALID"},                // tag syntax
		{path: "/v2/upstream.local/app/manifests/sha256:abc", code: "DIGEST_INVALID"},            // short digest
		{path: "/v2/upstream.local/app/blobs/latest", code: "DIGEST_INVALID"},                    // blob by tag
		{path: "/v2/upstream.local/app/blobs/md5:" + d[7:39], code: "DIGEST_INVALID"},            // algorithm
		{path: "/v2/upstream.local/app/referrers/notadigest", code: "DIGEST_INVALID"},            //
		{path: "/v2/upstream.local/app/manifests/x", ns: "evil.example/x", code: "NAME_INVALID"}, // ns with a path
		{path: "/v2/upstream.local/app/manifests/x", ns: "http://evil", code: "NAME_INVALID"},
		{path: "/v2/upstream.local/app/other/x", code: "NAME_UNKNOWN"},
	}
	for _, c := range cases {
		r, err := Parse(c.path, c.ns)
		if c.code != "" {
			var re *Error
			if !errors.As(err, &re) || re.Code != c.code {
				t.Errorf("Parse(%q, ns=%q) = %+v, %v; want error %s", c.path, c.ns, r, err, c.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q, ns=%q): %v", c.path, c.ns, err)
			continue
		}
		if r.Kind != c.kind || r.Upstream != c.up || r.Repo != c.repo || r.Reference != c.ref {
			t.Errorf("Parse(%q, ns=%q) = %+v; want kind %d upstream %q repo %q ref %q", c.path, c.ns, r, c.kind, c.up, c.repo, c.ref)
		}
	}
	if _, err := Parse("/other", ""); !errors.Is(err, ErrNotRegistry) {
		t.Errorf("non-registry path: %v", err)
	}
	long := "/v2/upstream.local/"
	for len(long) < 300 {
		long += "abcdefghij/"
	}
	if _, err := Parse(long+"manifests/x", ""); err == nil {
		t.Error("over-long name accepted")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/upstream.local/app/manifests/1.0", "/v2/a/b/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "/v2/a/../b/tags/list"} {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, path, ns string) {
		r, err := Parse(path, ns)
		if err != nil {
			return
		}
		if r.Kind == Base {
			return
		}
		// Whatever parses must be a valid name with a configured-looking upstream.
		if !nameRE.MatchString(r.Repo) || r.Upstream == "" {
			t.Fatalf("accepted %q ns=%q as %+v", path, ns, r)
		}
	})
}
