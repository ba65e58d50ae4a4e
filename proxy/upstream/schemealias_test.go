package upstream

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/proxy/config"
)

// An upstream configured as http://docker.io is reached by
// go-containerregistry as index.docker.io: the scheme guard knows that
// host as the upstream's too, so https to it is refused like https to the
// configured host (no request leaves the process: the guard answers first).
func TestSchemeGuardCanonicalHost(t *testing.T) {
	c, err := New(config.Upstream{Name: "hub", URL: "http://docker.io"}, func(s string) string { return s })
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://index.docker.io/v2/", "https://docker.io/v2/", "https://INDEX.docker.io/v2/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		resp, err := c.rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: the guard let https through for an upstream configured as http://", u)
		}
		if !strings.Contains(err.Error(), "configured as http://") {
			t.Fatalf("%s: %v", u, err)
		}
	}
}
