// Package conformance runs the OCI distribution-spec conformance suite
// (installed as oci-conformance by test/tools/install.sh) read-only against
// pullgate in front of distribution's registry binary, and against that
// registry directly for comparison.
package conformance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/tools"
)

// repo is where the read-only content lives on the upstream (the suite runs
// every read-only check against one repository, OCI_REPO1).
const repo = "conformance/repo1"

// seeded is the content preloaded on the upstream, as the suite's
// OCI_RO_DATA_* variables name it.
type seeded struct {
	tags, manifests, blobs, referrers []string
}

// seed preloads the upstream with a Docker schema 2 image under two tags,
// an OCI multi-platform index, and an OCI artifact referring to the image
// (pushed as a client would: the registry binary has no referrers API, so
// go-containerregistry writes the sha256-<hex> fallback tag).
func seed(t *testing.T, up *harness.Upstream) seeded {
	t.Helper()
	img := up.PushImage(t, repo, "v1", harness.ImageOptions{Docker: true, Layers: 2})
	up.TagManifest(t, repo, "v1-alias", img.Manifest, img.MediaType)
	idx := up.PushIndex(t, repo, "multi", false,
		v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	art := up.PushArtifact(t, repo, harness.ArtifactOptions{
		ArtifactType: "application/vnd.example.sbom.v1+json",
		Subject:      img.Descriptor(),
		Annotations:  map[string]string{"org.example.kind": "sbom"},
	})
	s := seeded{
		tags:      []string{"v1", "v1-alias", "multi"},
		manifests: []string{img.Digest, idx.Digest, art.Digest},
		referrers: []string{img.Digest},
	}
	addBlobs := func(i *harness.Image) {
		s.blobs = append(s.blobs, i.Config.Digest)
		for _, l := range i.Layers {
			s.blobs = append(s.blobs, l.Digest)
		}
	}
	addBlobs(img)
	for _, c := range idx.Children {
		s.manifests = append(s.manifests, c.Digest)
		addBlobs(c)
	}
	for _, l := range art.Layers {
		s.blobs = append(s.blobs, l.Digest)
	}
	return s
}

// report is what one run of the suite found, read from its printed report.
// (Its results directory is not used: in read-only mode the pinned suite
// panics while writing results.yaml, before junit.xml, because the skipped
// blob-push tests leave a data status without data; the printed report
// comes first and is complete.)
type report struct {
	result   string         // "Pass" or "FAIL"
	counts   map[string]int // Pass, FAIL, Error, Skip, Disabled
	failures []string       // every failed or errored check with its errors
	stdout   string
}

var (
	resultRe = regexp.MustCompile(`(?m)^OCI Conformance Result: (\S+)$`)
	countRe  = regexp.MustCompile(`(?m)^\s+(Pass|FAIL|Error|Skip|Disabled)\.+:\s+(\d+)$`)
	checkRe  = regexp.MustCompile(`^( *)(OCI Conformance Test\S*.*): (Pass|FAIL|Error|Skip|Disabled|Unknown)$`)
)

// parseReport reads the suite's "Test results" tree (indented by depth,
// a leaf's errors follow it as " - ..." lines) and its summary counts.
func parseReport(out string) (report, error) {
	r := report{counts: map[string]int{}, stdout: out}
	m := resultRe.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no \"OCI Conformance Result\" line")
	}
	r.result = m[1]
	for _, c := range countRe.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(c[2])
		r.counts[c[1]] = n
	}
	tree, _, ok := strings.Cut(out, "\nConfiguration:\n")
	if !ok {
		return r, fmt.Errorf("no Configuration section after the results")
	}
	type check struct {
		depth        int
		name, status string
		errs         []string
	}
	var checks []*check
	for _, line := range strings.Split(tree, "\n") {
		if c := checkRe.FindStringSubmatch(line); c != nil {
			checks = append(checks, &check{depth: len(c[1]), name: c[2], status: c[3]})
			continue
		}
		if len(checks) > 0 && strings.TrimSpace(line) != "" {
			last := checks[len(checks)-1]
			last.errs = append(last.errs, strings.TrimPrefix(strings.TrimSpace(line), "- "))
		}
	}
	for i, c := range checks {
		leaf := i+1 == len(checks) || checks[i+1].depth <= c.depth
		if leaf && (c.status == "FAIL" || c.status == "Error") {
			r.failures = append(r.failures, c.name+": "+strings.Join(c.errs, "; "))
		}
	}
	if n := r.counts["FAIL"] + r.counts["Error"]; n != len(r.failures) {
		return r, fmt.Errorf("summary counts %d failed checks, the tree %d", n, len(r.failures))
	}
	if r.counts["Pass"] == 0 {
		return r, fmt.Errorf("no check passed")
	}
	return r, nil
}

// runSuite runs oci-conformance read-only against registry (host:port) for
// repository repo1.
func runSuite(t *testing.T, registry, repo1 string, s seeded) report {
	t.Helper()
	bin := tools.Need(t, "oci-conformance")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), d.Add(-10*time.Second))
	}
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = dir // no oci-conformance.yaml of the caller's directory is read
	cmd.Env = []string{
		"HOME=" + dir,
		"PATH=" + os.Getenv("PATH"),
		"OCI_REGISTRY=" + registry,
		"OCI_TLS=disabled",
		"OCI_REPO1=" + repo1,
		"OCI_REPO2=" + repo1 + "-second",
		"OCI_RESULTS_DIR=" + filepath.Join(dir, "results"),
		"OCI_LOG=warn",
		// Read-only: no push, no delete; only the preloaded content.
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		"OCI_RO_DATA_TAGS=" + strings.Join(s.tags, " "),
		"OCI_RO_DATA_MANIFESTS=" + strings.Join(s.manifests, " "),
		"OCI_RO_DATA_BLOBS=" + strings.Join(s.blobs, " "),
		"OCI_RO_DATA_REFERRERS=" + strings.Join(s.referrers, " "),
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("oci-conformance did not finish: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	r, perr := parseReport(stdout.String())
	if perr != nil {
		t.Fatalf("oci-conformance against %s (exit: %v): unreadable report: %v\nstdout:\n%s\nstderr:\n%s", registry, err, perr, stdout.String(), stderr.String())
	}
	return r
}

// TestOCIConformanceReadOnly: pullgate, in front of distribution's registry
// binary preloaded with a Docker image under two tags, an OCI index and a
// referrer, passes the read-only conformance suite with zero failures. The
// same suite is run against the registry directly for comparison: it fails
// the referrers checks (distribution v3.1 has no referrers API), which
// pullgate answers from the tag fallback.
func TestOCIConformanceReadOnly(t *testing.T) {
	tools.Need(t, "oci-conformance")
	up := harness.StartRegistryBinary(t, "dist.local")
	s := seed(t, up)
	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}})

	direct := runSuite(t, up.Host, repo, s)
	t.Logf("distribution's registry directly: %s, %d passed, %d failed:\n  %s", direct.result, direct.counts["Pass"], len(direct.failures), strings.Join(direct.failures, "\n  "))

	got := runSuite(t, px.Host, up.Name+"/"+repo, s)
	t.Logf("pullgate: %s, %d passed, %d failed", got.result, got.counts["Pass"], len(got.failures))
	if len(got.failures) > 0 || got.result != "Pass" {
		t.Errorf("pullgate failed %d conformance checks:\n  %s\n\nsuite output:\n%s",
			len(got.failures), strings.Join(got.failures, "\n  "), got.stdout)
	}
	// Every check that passes against the registry directly passes through
	// pullgate too (pullgate may pass more: referrers).
	if got.counts["Pass"] < direct.counts["Pass"] {
		t.Errorf("pullgate passed %d checks, the registry directly %d", got.counts["Pass"], direct.counts["Pass"])
	}
}
