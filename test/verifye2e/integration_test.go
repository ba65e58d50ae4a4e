package verifye2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/verify/cosign"
)

// TestCosign3VerifyThroughProxyTagFallback: against an upstream without the
// referrers API, cosign v3 verifies bundles through the proxy (the proxy
// answers the referrers API from the upstream's sha256-<hex> tag).
func TestCosign3VerifyThroughProxyTagFallback(t *testing.T) {
	e := newEnv(t, envOptions{referrers: false})
	img := e.image("att/cv3", "v1")
	ref := e.upRef("att/cv3", img.Digest)
	e.c3.sign(e.release, ref)
	e.c3.attest(e.release, ref, goodPred)
	e.expectProxyAllowed("att/cv3:v1", img.Digest)
	pub := e.dir + "/release.pub"
	pref := e.pxRef("att/cv3@" + img.Digest)
	if out, err := e.c3.exec("verify", "--key", pub, "--allow-insecure-registry", "--insecure-ignore-tlog=true", pref); err != nil {
		t.Fatalf("cosign3 verify through the proxy (tag-fallback upstream): %v\n%s", err, out)
	}
	if out, err := e.c3.exec("verify-attestation", "--key", pub, "--type", "slsaprovenance", "--allow-insecure-registry", "--insecure-ignore-tlog=true", pref); err != nil {
		t.Fatalf("cosign3 verify-attestation through the proxy (tag-fallback upstream): %v\n%s", err, out)
	}
	// The proxy's referrers API lists both bundles.
	ctx := context.Background()
	st, _, b, err := harness.Get(ctx, e.px.URL+"/v2/"+upName+"/att/cv3/referrers/"+img.Digest, nil)
	if err != nil || st != 200 || strings.Count(string(b), cosign.BundleMediaType) < 2 {
		t.Fatalf("referrers through the proxy: %d %v %s", st, err, b)
	}
}

// TestReferrersFallbackTagThroughProxy: clients that read the referrers
// fallback tag themselves (OCI 1.1 clients facing a registry without the
// API) fetch the sha256-<hex> index through the proxy: it only lists
// evidence, so it should be served like the evidence it lists.
func TestReferrersFallbackTagThroughProxy(t *testing.T) {
	e := newEnv(t, envOptions{referrers: false})
	img := e.image("app/fallback", "v1")
	e.c3.sign(e.release, e.upRef("app/fallback", img.Digest))
	e.expectProxyAllowed("app/fallback:v1", img.Digest)
	tag := "sha256-" + digest.Digest(img.Digest).Encoded()
	e.getUpstream("app/fallback", tag)
	st, _, b := e.manifestGET("app/fallback:" + tag)
	if st != http.StatusOK {
		t.Fatalf("GET the referrers fallback tag %s through the proxy: %d %s", tag, st, b)
	}
}

// TestIndexChildren covers how children find their index: pulled through the
// index, after a restart (links persisted in the store), before the index was
// ever seen (decided on its own evidence), and after the trust rotated.
func TestIndexChildren(t *testing.T) {
	e := newEnv(t, envOptions{})
	idx := e.up.PushIndex(t, "app/idx", "v1", false)
	e.c2.sign(e.release, e.upRef("app/idx", idx.Digest))
	child := idx.Children[0]

	// A fresh proxy that never saw the index decides the child on its own
	// evidence: it has none. (The CLI always starts fresh.)
	e.expectProxyDenied("app/idx@"+child.Digest, noSig("pg-apps", child.Digest))
	e.expectCLI("app/idx@"+child.Digest, 10, noSig("pg-apps", child.Digest))

	// Seen through the index: covered. The cached denial of the child is
	// not in the way (deny TTL) — pull the other child, never decided before.
	other := idx.Children[1]
	if got, err := harness.GGCRIndexPlatform(e.pxRef("app/idx:v1"), *other.Platform); err != nil || got != other.Digest {
		t.Fatalf("platform pull through the signed index: %s %v", got, err)
	}
	e.expectProxyAllowed("app/idx@"+other.Digest, other.Digest)

	// Restart on the same directory: the index→child link is in the store.
	e.px.Close()
	px2 := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{e.up}, Policy: defaultPolicy, Dir: e.dir})
	e.px = px2
	e.expectProxyAllowed("app/idx@"+other.Digest, other.Digest)

	// Rotate the trust: the index no longer verifies, so neither does the child.
	rev := e.px.Server.Policy().Revision()
	e.replaceFile("release.pub", e.attacker.pub)
	e.waitRevision(rev)
	e.expectProxyDenied("app/idx@"+other.Digest, noSig("pg-apps", other.Digest))
	e.expectProxyDenied("app/idx:v1", noSig("pg-apps", idx.Digest))
	// And the child's layers are not served by digest either.
	st, _, _, err := harness.Get(context.Background(), e.px.URL+"/v2/"+upName+"/app/idx/blobs/"+other.Layers[0].Digest, nil)
	if err != nil || st != http.StatusForbidden {
		t.Fatalf("layer of a child whose index lost its signature: %d %v", st, err)
	}
}

// TestRoutesAndMethods: the ns= form (containerd mirrors) and HEAD get the
// same decision as the path form and GET.
func TestRoutesAndMethods(t *testing.T) {
	e := newEnv(t, envOptions{})
	signed := e.image("app/routes", "signed")
	unsigned := e.image("app/routes", "unsigned")
	e.c2.sign(e.release, e.upRef("app/routes", signed.Digest))
	accept := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}
	ctx := context.Background()
	for _, tc := range []struct {
		method, url string
		want        int
	}{
		{http.MethodGet, e.px.URL + "/v2/app/routes/manifests/signed?ns=" + upName, 200},
		{http.MethodGet, e.px.URL + "/v2/app/routes/manifests/unsigned?ns=" + upName, 403},
		{http.MethodHead, e.px.URL + "/v2/" + upName + "/app/routes/manifests/signed", 200},
		{http.MethodHead, e.px.URL + "/v2/" + upName + "/app/routes/manifests/unsigned", 403},
		{http.MethodHead, e.px.URL + "/v2/app/routes/manifests/" + unsigned.Digest + "?ns=" + upName, 403},
	} {
		st, h, b, err := harness.Do(ctx, tc.method, tc.url, accept, nil)
		if err != nil || st != tc.want {
			t.Errorf("%s %s: %d %v %s, want %d", tc.method, tc.url, st, err, b, tc.want)
			continue
		}
		if st == 200 && h.Get("Docker-Content-Digest") != signed.Digest {
			t.Errorf("%s %s: Docker-Content-Digest %q", tc.method, tc.url, h.Get("Docker-Content-Digest"))
		}
		if tc.method == http.MethodGet && st == 403 && !strings.Contains(string(b), noSig("pg-apps", unsigned.Digest)) {
			t.Errorf("%s %s: %s", tc.method, tc.url, b)
		}
	}
	// crane through the ns= form is not possible (crane has no ns); the
	// path form is what crane, ggcr and cosign use (other tests).
}

// TestEvidenceFetchFailure: when the upstream corrupts the attestation
// manifest, the decision fails closed (exit 1), it is not an allow.
func TestEvidenceFetchFailure(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.image("att/fetchfail", "v1")
	ref := e.upRef("att/fetchfail", img.Digest)
	e.c2.sign(e.release, ref)
	e.c2.attest(e.release, ref, goodPred)
	// The attestation layer now comes back altered (same length, same
	// headers): the evidence cannot be fetched intact.
	var att struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(e.getUpstream("att/fetchfail", cosign.TagFor(digest.Digest(img.Digest), "att")), &att); err != nil || len(att.Layers) != 1 {
		t.Fatalf("att manifest: %v", err)
	}
	e.up.Liar.LieBlob(att.Layers[0].Digest)
	defer e.up.Liar.Honest()
	reason := "rule pg-attested: attestation " + slsa02 + " signed by release: none found"
	e.expectProxyDenied("att/fetchfail:v1", reason)
	r := e.expectCLI("att/fetchfail:v1", 1, reason)
	if e.up.Liar.Lies() == 0 {
		t.Fatal("the upstream never lied")
	}
	t.Logf("checks: %s", toJSON(r.decision.Checks))
}

// TestCLIStandalone: pullgate verify without --config (registry host as the
// upstream), usage and configuration errors, and failures to reach content.
func TestCLIStandalone(t *testing.T) {
	e := newEnv(t, envOptions{})
	signed := e.image("app/cli", "v1")
	unsigned := e.image("app/cli", "unsigned")
	e.c2.sign(e.release, e.upRef("app/cli", signed.Digest))
	pol := strings.ReplaceAll(defaultPolicy, "upstream.local/", e.up.Host+"/")
	e.writeFile("host-policy.yaml", []byte(pol))
	hostPolicy := e.dir + "/host-policy.yaml"

	r := runCLI(t, "verify", e.up.Host+"/app/cli:v1", "--policy", hostPolicy, "--plain-http", "-o", "json")
	if r.code != 0 || r.decision.Digest.String() != signed.Digest {
		t.Fatalf("standalone verify of the signed image: exit %d digest %s", r.code, r.decision.Digest)
	}
	r = runCLI(t, "verify", e.up.Host+"/app/cli@"+unsigned.Digest, "--plain-http", "--policy", hostPolicy, "-o", "json")
	if r.code != 10 || !strings.Contains(strings.Join(r.decision.Reasons, ";"), noSig("pg-apps", unsigned.Digest)) {
		t.Fatalf("standalone verify of the unsigned image: exit %d %v", r.code, r.decision.Reasons)
	}
	// Text output lists every check.
	r = runCLI(t, "verify", e.up.Host+"/app/cli:v1", "--policy", hostPolicy, "--plain-http")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ALLOWED ") || !strings.Contains(r.stdout, "[ok  ] signature: signed by key release") || !strings.Contains(r.stdout, "evidence sha256:") {
		t.Fatalf("text output:\n%s", r.stdout)
	}

	e.writeFile("dead.yaml", []byte("upstreams: [{name: upstream.local, url: \"http://127.0.0.1:1\"}]\npolicy: ./policy.yaml\n"))
	deadConfig := e.dir + "/dead.yaml"
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"no policy flag", []string{"verify", upName + "/app/cli:v1", "--config", e.px.ConfigPath}, 2},
		{"no image", []string{"verify", "--policy", e.px.PolicyPath}, 2},
		{"bad output format", []string{"verify", upName + "/app/cli:v1", "--policy", e.px.PolicyPath, "--config", e.px.ConfigPath, "-o", "yaml"}, 2},
		{"upstream not in the config", []string{"verify", "other.example/app/cli:v1", "--policy", e.px.PolicyPath, "--config", e.px.ConfigPath}, 2},
		{"missing policy file", []string{"verify", upName + "/app/cli:v1", "--policy", e.dir + "/nope.yaml", "--config", e.px.ConfigPath}, 2},
		{"tag does not exist", []string{"verify", upName + "/app/cli:nope", "--policy", e.px.PolicyPath, "--config", e.px.ConfigPath}, 1},
		{"no rule matches", []string{"verify", upName + "/elsewhere/x:v1", "--policy", e.px.PolicyPath, "--config", e.px.ConfigPath}, 13},
		{"registry unreachable", []string{"verify", upName + "/app/cli:v1", "--policy", e.px.PolicyPath, "--config", deadConfig}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, tc.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestCLIJSONShape: `pullgate verify -o json` uses one key style, the one of
// policy.Decision and the audit log (allowed, reasons, checks, exitCode).
func TestCLIJSONShape(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.image("app/json", "v1")
	r := e.cli("app/json:v1")
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["repository"]; !ok {
		t.Fatalf("no repository key: %s", r.stdout)
	}
	for _, k := range []string{"allowed", "rule", "reasons", "checks", "exitCode"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON output lacks %q: keys %v", k, keys(m))
		}
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

var _ = time.Second

// TestReloadUnderLoad: while clients pull an allowed image concurrently, the
// trust file is rotated; every request that starts after the new revision
// is in force is denied (no stale allow from the verdict cache or blob
// grants), and every request before it was allowed.
func TestReloadUnderLoad(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.image("app/load", "v1")
	e.c2.sign(e.release, e.upRef("app/load", img.Digest))
	e.expectProxyAllowed("app/load:v1", img.Digest)
	rev := e.px.Server.Policy().Revision()

	type result struct {
		start  time.Time
		status int
		path   string
	}
	var (
		stop    = make(chan struct{})
		results = make(chan result, 100000)
		done    = make(chan struct{})
	)
	paths := []string{
		"/v2/" + upName + "/app/load/manifests/" + img.Digest,
		"/v2/" + upName + "/app/load/manifests/v1",
		"/v2/" + upName + "/app/load/blobs/" + img.Layers[0].Digest,
	}
	const workers = 6
	for w := 0; w < workers; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := paths[(w+i)%len(paths)]
				start := time.Now()
				st, _, _, err := harness.Get(context.Background(), e.px.URL+p, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
				if err != nil {
					continue
				}
				results <- result{start, st, p}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	e.replaceFile("release.pub", e.attacker.pub)
	e.waitRevision(rev)
	switched := time.Now()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	for w := 0; w < workers; w++ {
		<-done
	}
	close(results)
	var before, after, staleAllows int
	for r := range results {
		if r.start.After(switched) {
			after++
			if r.status != http.StatusForbidden {
				staleAllows++
				t.Errorf("request started %s after the new revision: %s → %d", r.start.Sub(switched), r.path, r.status)
			}
		} else if r.start.Before(switched.Add(-time.Second)) || r.status == http.StatusOK {
			before++
		}
	}
	t.Logf("%d requests before, %d after the rotation (%d stale allows)", before, after, staleAllows)
	if after == 0 || before == 0 {
		t.Fatalf("not enough traffic: %d before, %d after", before, after)
	}
}

// TestSharedLayerAcrossRepositories: a layer allowed (and cached) through a
// signed image in one repository is not served by digest in another
// repository where the only image holding it is unsigned.
func TestSharedLayerAcrossRepositories(t *testing.T) {
	e := newEnv(t, envOptions{})
	signed := e.image("app/shared-a", "v1")
	e.c2.sign(e.release, e.upRef("app/shared-a", signed.Digest))
	// The same image, unsigned in another repository (cosign evidence is per repository).
	e.up.PushV1Image(t, "app/shared-b", "v1", signed.Image)
	e.expectProxyAllowed("app/shared-a:v1", signed.Digest) // layer now in the content store
	if _, ok := e.px.Server.Store().Has(digest.Digest(signed.Layers[0].Digest)); !ok {
		t.Fatal("the allowed layer was not cached")
	}
	e.expectProxyDenied("app/shared-b:v1", noSig("pg-apps", signed.Digest))
	st, _, b, err := harness.Get(context.Background(), e.px.URL+"/v2/"+upName+"/app/shared-b/blobs/"+signed.Layers[0].Digest, nil)
	if err != nil || st != http.StatusForbidden {
		t.Fatalf("cached layer requested through the repository where it is denied: %d %v %s", st, err, b)
	}
	e.expectCLI("app/shared-b:v1", 10, noSig("pg-apps", signed.Digest))
}

// TestVerdictTTLs: a denial is cached for the deny TTL only; signing the
// image afterwards lets it through once the denial expires, while an allow
// outlives the deny TTL.
func TestVerdictTTLs(t *testing.T) {
	e := newEnv(t, envOptions{edit: func(doc map[string]any) {
		doc["cache"] = map[string]any{"denyTTL": "3s", "allowTTL": "1h"}
	}})
	img := e.image("app/ttl", "v1")
	// The denial is cached at some instant in [before, after]: it holds
	// at least until before+TTL and is gone by after+TTL. Signing may take
	// long on a busy machine, so the cached 403 is expected only when the
	// check completes inside the first bound.
	before := time.Now()
	e.expectProxyDenied("app/ttl:v1", noSig("pg-apps", img.Digest))
	after := time.Now()
	e.c2.sign(e.release, e.upRef("app/ttl", img.Digest))
	st, _, _ := e.manifestGET("app/ttl:v1")
	if time.Since(before) < 3*time.Second && st != http.StatusForbidden {
		t.Fatalf("within the deny TTL: %d, want the cached 403", st)
	}
	time.Sleep(time.Until(after.Add(3200 * time.Millisecond)))
	e.expectProxyAllowed("app/ttl:v1", img.Digest)
	// The upstream now loses the signature (its tag moves to a signature
	// manifest without layers): the allow stays cached.
	sigTag := cosign.TagFor(digest.Digest(img.Digest), "sig")
	e.up.PushBlob(t, "app/ttl", []byte(`{}`))
	e.up.TagManifest(t, "app/ttl", sigTag, []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`), "application/vnd.oci.image.manifest.v1+json")
	time.Sleep(1200 * time.Millisecond)
	e.expectProxyAllowed("app/ttl:v1", img.Digest)
	e.expectCLI("app/ttl:v1", 14) // a fresh engine sees the signature manifest without layers
}

// TestUnsignedArtifactTypedAsEvidence: an unsigned OCI artifact (say, model
// weights that `oras pull` writes to disk) whose layer claims an evidence
// media type is an ordinary artifact under a verify rule: denied.
func TestUnsignedArtifactTypedAsEvidence(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.up.PushArtifact(t, "app/model", harness.ArtifactOptions{
		ArtifactType: "application/vnd.example.model", Tag: "v1", Title: "model.bin",
		Payload: []byte("unsigned weights"), PayloadMediaType: "application/vnd.in-toto+json",
	})
	st, _, b := e.manifestGET("app/model:v1")
	if st != http.StatusForbidden {
		r, dir := harness.OrasPull(t, e.pxRef("app/model:v1"))
		got, _ := os.ReadFile(filepath.Join(dir, "model.bin"))
		t.Fatalf("unsigned artifact typed as evidence through the proxy: %d %s\noras pull: err=%v, model.bin=%q", st, b, r.Err, got)
	}
	e.expectCLI("app/model:v1", 10, noSig("pg-apps", a.Digest))
}
