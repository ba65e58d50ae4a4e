package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseDefaultsAndKeys(t *testing.T) {
	c, err := Parse([]byte(`
listen: 127.0.0.1:5000
storage: {path: ./data, maxSize: 10GiB}
upstreams:
  - name: upstream.local
    url: http://127.0.0.1:5001
policy: ./policy.yaml
audit: {path: ./audit.jsonl}
limits: {maxManifestSize: 1MiB}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.MaxSize != 10<<30 || c.Limits.MaxManifestSize != 1<<20 || c.Limits.MaxEvidenceSize != 16<<20 {
		t.Errorf("sizes: %+v %+v", c.Storage, c.Limits)
	}
	u, ok := c.Upstream("upstream.local")
	if !ok || u.TagTTL.D() != 30*time.Second || u.OfflineGrace.D() != 24*time.Hour || u.Timeout.D() != 30*time.Second {
		t.Errorf("upstream defaults: %+v", u)
	}
	if c.Cache.AllowTTL.D() <= c.Cache.DenyTTL.D() {
		t.Error("denials must expire sooner than allows by default")
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"unknown key":        "policy: p\nupstreams: [{name: a.b, url: http://x}]\nbogus: 1\n",
		"no upstreams":       "policy: p\n",
		"no policy":          "upstreams: [{name: a.b, url: http://x}]\n",
		"bad scheme":         "policy: p\nupstreams: [{name: a.b, url: ftp://x}]\n",
		"url with path":      "policy: p\nupstreams: [{name: a.b, url: https://x/v2}]\n",
		"url with userinfo":  "policy: p\nupstreams: [{name: a.b, url: https://u:p@x}]\n",
		"bad name":           "policy: p\nupstreams: [{name: A/B, url: https://x}]\n",
		"duplicate name":     "policy: p\nupstreams: [{name: a.b, url: https://x}, {name: a.b, url: https://y}]\n",
		"user without pw":    "policy: p\nupstreams: [{name: a.b, url: https://x, username: u}]\n",
		"bad size":           "policy: p\nupstreams: [{name: a.b, url: https://x}]\nstorage: {maxSize: lots}\n",
		"bad duration":       "policy: p\nupstreams: [{name: a.b, url: https://x, tagTTL: soon}]\n",
		"tls half":           "policy: p\nupstreams: [{name: a.b, url: https://x}]\ntls: {cert: c}\n",
		"bad log level":      "policy: p\nupstreams: [{name: a.b, url: https://x}]\nlog: {level: loud}\n",
		"negative cache ttl": "policy: p\nupstreams: [{name: a.b, url: https://x}]\ncache: {denyTTL: -1s}\n",
	}
	for name, y := range cases {
		if _, err := Parse([]byte(y)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	_, err := Parse([]byte("policy: p\nupstreams: [{name: a.b, url: https://x}]\nstorage: {maxSize: lots}\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("size error without a line: %v", err)
	}
}
