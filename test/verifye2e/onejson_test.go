package verifye2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignedJSONReadOneWay: an image signed normally is admitted and
// `cosign verify` through pullgate succeeds; a simple-signing payload that
// cosign itself signed with the trusted key but that reads two ways (a
// repeated "critical", a case-variant "docker-manifest-Digest") is refused
// on decision — 403 DENIED naming the malformed payload, `pullgate verify`
// exit 14 — rather than admitted and then refused on serving.
func TestSignedJSONReadOneWay(t *testing.T) {
	e := newEnv(t, envOptions{referrers: true})
	pub := filepath.Join(e.dir, "release.pub")
	cosignVerify := func(ref string) (string, error) {
		return e.c2.exec("verify", "--key", pub, "--allow-insecure-registry", "--insecure-ignore-tlog=true", e.pxRef(ref))
	}

	// Control: cosign's own payload.
	good := e.image("app/onejson-good", "v1")
	e.c2.sign(e.release, e.upRef("app/onejson-good", good.Digest))
	e.expectProxyAllowed("app/onejson-good:v1", good.Digest)
	e.expectCLI("app/onejson-good:v1", 0)
	if out, err := cosignVerify("app/onejson-good@" + good.Digest); err != nil || !strings.Contains(out, good.Digest) {
		t.Fatalf("cosign verify of a normally signed image through pullgate: %v\n%s", err, out)
	}

	// The payload cosign generates for an image, as text to rewrite.
	payloadOf := func(e *env, repo, d string) string {
		return strings.TrimSpace(e.c2.run("generate", e.upRef(repo, d)))
	}
	// signPayload has cosign sign exactly these payload bytes for d.
	signPayload := func(e *env, repo, d, payload string) {
		p := filepath.Join(e.c2.dir, "signed-"+strings.ReplaceAll(repo, "/", "-")+".json")
		if err := os.WriteFile(p, []byte(payload), 0o600); err != nil {
			t.Fatal(err)
		}
		e.c2.run(append([]string{"sign", "--key", e.release.cosignKey, "--payload", p}, append(e.c2.offline(), e.upRef(repo, d))...)...)
	}

	for _, c := range []struct {
		repo   string
		edit   func(payload, other string) string
		reason string
	}{
		{"app/onejson-dup", func(p, other string) string {
			// A first "critical" naming another image; encoding/json
			// kept the last one, other readers keep the first.
			i := strings.Index(other, `{"critical":`) + len(`{"critical":`)
			j := strings.LastIndex(other, `,"optional"`)
			return `{"critical":` + other[i:j] + "," + strings.TrimPrefix(p, "{")
		}, `duplicate key "critical" at $`},
		{"app/onejson-case", func(p, _ string) string {
			return strings.Replace(p, "docker-manifest-digest", "docker-manifest-Digest", 1)
		}, `key "docker-manifest-Digest" differs from the field "docker-manifest-digest" only in case`},
	} {
		t.Run(c.repo, func(t *testing.T) {
			e := e.with(t)
			img := e.image(c.repo, "v1")
			other := e.image(c.repo, "other")
			payload := payloadOf(e, c.repo, img.Digest)
			if !strings.Contains(payload, `"docker-manifest-digest":"`+img.Digest+`"`) {
				t.Fatalf("cosign generate did not name %s: %s", img.Digest, payload)
			}
			signPayload(e, c.repo, img.Digest, c.edit(payload, payloadOf(e, c.repo, other.Digest)))

			// Refused on decision, with the reason in the 403 a client shows.
			ref := c.repo + ":v1"
			st, _, body := e.manifestGET(ref)
			if st != http.StatusForbidden {
				t.Fatalf("GET %s through pullgate: %d, want 403 (admitted a payload that reads two ways): %s", ref, st, body)
			}
			e.expectProxyDenied(ref, noSig("pg-apps", img.Digest), "malformed cosign-signature evidence not counted", c.reason)
			cli := e.expectCLI(ref, 14, noSig("pg-apps", img.Digest), c.reason)
			if checks := toJSON(cli.decision.Checks); !strings.Contains(checks, "cosign-signature malformed") {
				t.Errorf("checks lack the malformed signature: %s", checks)
			}
			if out, err := cosignVerify(c.repo + "@" + img.Digest); err == nil {
				t.Fatalf("cosign verify through pullgate succeeded for a refused image:\n%s", out)
			}
		})
	}
}
