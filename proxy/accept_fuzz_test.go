package proxy

import (
	"net/http"
	"testing"
)

// FuzzParseAccept: any Accept header parses without panicking, naming a
// type in an appended element always counts (malformed elements before it
// do not hide it), and only an OCI image manifest is ever refused.
func FuzzParseAccept(f *testing.F) {
	for _, s := range []string{
		"", "*/*", "application/*", mtOCIManifest, mtOCIIndex + ", " + mtOCIManifest,
		mtDockerManifest + ";q=0.5, " + mtDockerList + "; q=0",
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"not a type;;, " + mtOCIManifest, `application/x; a="unterminated`, ",,,", "APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := &http.Request{Header: http.Header{"Accept": {v}}}
		a := parseAccept(r)
		if !a.header {
			t.Fatalf("Accept %q: header not seen", v)
		}
		for _, mt := range []string{mtOCIIndex, mtDockerManifest} {
			if n := a.negotiate(mt, true); n != serveStored {
				t.Fatalf("Accept %q: %s answered %v, distribution serves it whatever Accept says", v, mt, n)
			}
		}
		if n := a.negotiate(mtDockerList, false); n != serveStored {
			t.Fatalf("Accept %q: a manifest list by digest answered %v", v, n)
		}
		for _, mt := range []string{mtOCIManifest, mtDockerManifest, mtDockerList} {
			r.Header.Add("Accept", mt)
			b := parseAccept(r)
			got := map[string]bool{mtOCIManifest: b.ociManifest, mtDockerManifest: b.dockerManifest, mtDockerList: b.dockerList}
			if !got[mt] || (a.ociManifest && !b.ociManifest) || (a.dockerManifest && !b.dockerManifest) || (a.dockerList && !b.dockerList) {
				t.Fatalf("Accept %q then %q: parsed %+v after %+v", v, mt, b, a)
			}
		}
		if parseAccept(&http.Request{Header: http.Header{}}).negotiate(mtOCIManifest, true) != serveStored {
			t.Fatal("no Accept header must admit the stored manifest")
		}
	})
}
