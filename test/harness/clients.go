package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/pullgate/pullgate/test/tools"
)

// Result is what a client binary did.
type Result struct {
	Stdout string
	Stderr string
	Err    error
}

// Output is stdout and stderr together (what a person would read).
func (r Result) Output() string { return r.Stdout + r.Stderr }

func (r Result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.Err, r.Stdout, r.Stderr)
}

// ClientTimeout bounds one client invocation.
var ClientTimeout = 90 * time.Second

// Run runs a tool from test/tools in an isolated environment (own HOME,
// DOCKER_CONFIG, XDG dirs: no credentials or registry config of the host).
func Run(t testing.TB, tool string, args ...string) Result {
	t.Helper()
	bin := tools.Need(t, tool)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), ClientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = isolatedEnv(home)
	cmd.Dir = home
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %s: %w", tool, ClientTimeout, err)
	}
	res := Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
	t.Logf("$ %s %s\n%s", tool, strings.Join(args, " "), indent(res.Output()))
	return res
}

func isolatedEnv(home string) []string {
	env := []string{
		"HOME=" + home,
		"DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
		"XDG_RUNTIME_DIR=" + filepath.Join(home, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(home, "auth.json"),
		"NO_PROXY=127.0.0.1,localhost",
		"PATH=" + os.Getenv("PATH"),
		"TMPDIR=" + home,
	}
	_ = os.MkdirAll(filepath.Join(home, "run"), 0o700)
	// An empty registries.conf so skopeo uses no mirrors or search registries.
	conf := filepath.Join(home, "registries.conf")
	_ = os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o600)
	env = append(env, "CONTAINERS_REGISTRIES_CONF="+conf)
	return env
}

func indent(s string) string {
	if len(s) > 4000 {
		s = s[:2000] + "\n...\n" + s[len(s)-2000:]
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// CraneDigest runs `crane digest` on ref.
func CraneDigest(t testing.TB, ref string) Result {
	return Run(t, "crane", "digest", "--insecure", ref)
}

// CraneManifest runs `crane manifest` on ref.
func CraneManifest(t testing.TB, ref string) Result {
	return Run(t, "crane", "manifest", "--insecure", ref)
}

// CranePull runs `crane pull --format oci` into a temp dir (platform
// "" means crane's default).
func CranePull(t testing.TB, ref, platform string) (Result, string) {
	dir := filepath.Join(t.TempDir(), "oci")
	args := []string{"pull", "--insecure", "--format", "oci"}
	if platform != "" {
		args = append(args, "--platform", platform)
	}
	args = append(args, ref, dir)
	return Run(t, "crane", args...), dir
}

// SkopeoInspect runs `skopeo inspect --raw` on a docker:// reference.
func SkopeoInspect(t testing.TB, ref string) Result {
	return Run(t, "skopeo", "--insecure-policy", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
}

// SkopeoCopy copies a docker:// reference into an oci: layout directory,
// preserving digests (--preserve-digests); it returns the layout dir.
func SkopeoCopy(t testing.TB, ref string, extra ...string) (Result, string) {
	dir := filepath.Join(t.TempDir(), "oci")
	args := append([]string{"--insecure-policy", "copy", "--src-tls-verify=false", "--preserve-digests"}, extra...)
	args = append(args, "docker://"+ref, "oci:"+dir+":pulled")
	return Run(t, "skopeo", args...), dir
}

// OrasPull runs `oras pull --plain-http` into a temp dir.
func OrasPull(t testing.TB, ref string) (Result, string) {
	dir := t.TempDir()
	return Run(t, "oras", "pull", "--plain-http", "-o", dir, ref), dir
}

// OrasManifestFetch runs `oras manifest fetch --plain-http`.
func OrasManifestFetch(t testing.TB, ref string, descriptor bool) Result {
	args := []string{"manifest", "fetch", "--plain-http"}
	if descriptor {
		args = append(args, "--descriptor")
	}
	return Run(t, "oras", append(args, ref)...)
}

// OrasDiscover runs `oras discover --plain-http --format json`, optionally
// with an artifact type filter.
func OrasDiscover(t testing.TB, ref, artifactType string) Result {
	args := []string{"discover", "--plain-http", "--format", "json"}
	if artifactType != "" {
		args = append(args, "--artifact-type", artifactType)
	}
	return Run(t, "oras", append(args, ref)...)
}

// NoRetry turns off go-containerregistry's retries: a pull through the proxy
// must work the first time, and failing pulls fail fast.
func NoRetry() remote.Option {
	return remote.WithRetryBackoff(remote.Backoff{Steps: 1, Duration: time.Millisecond})
}

// GGCRPull pulls an image with go-containerregistry's remote package, reads
// every layer (remote verifies each digest) and returns its digest.
func GGCRPull(ref string, opts ...remote.Option) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(r, append([]remote.Option{NoRetry()}, opts...)...)
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	layers, err := img.Layers()
	if err != nil {
		return "", err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return "", err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return "", err
		}
	}
	if _, err := img.RawConfigFile(); err != nil {
		return "", err
	}
	return d.String(), nil
}

// GGCRIndexPlatform pulls one platform of an index with go-containerregistry
// and returns the child's digest.
func GGCRIndexPlatform(ref string, p v1.Platform) (string, error) {
	return GGCRPull(ref, remote.WithPlatform(p))
}

// OrasGoPull copies ref (tag or digest) with oras-go into an in-memory store
// (oras verifies every digest) and returns the root descriptor.
func OrasGoPull(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	repo, err := orasremote.NewRepository(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	repo.PlainHTTP = true
	store := memory.New()
	return oras.Copy(ctx, repo, repo.Reference.Reference, store, "pulled", oras.DefaultCopyOptions)
}

// OrasGoReferrers lists referrers of subject with oras-go (referrers API, with
// its own tag fallback when the proxy answers 404).
func OrasGoReferrers(ctx context.Context, repoRef, subject, artifactType string) ([]ocispec.Descriptor, error) {
	repo, err := orasremote.NewRepository(repoRef)
	if err != nil {
		return nil, err
	}
	repo.PlainHTTP = true
	desc, err := repo.Resolve(ctx, subject)
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	err = repo.Referrers(ctx, desc, artifactType, func(r []ocispec.Descriptor) error {
		out = append(out, r...)
		return nil
	})
	return out, err
}

// Get does a raw GET (with optional headers) and returns status, headers,
// body. A body read error is returned as err with what was read.
// RawRequest sends a request line exactly as given (no client-side path
// cleaning or escaping) and returns status and body.
func RawRequest(t testing.TB, host, method, target string) (int, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, target, host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func Get(ctx context.Context, url string, hdr map[string]string) (int, http.Header, []byte, error) {
	return Do(ctx, http.MethodGet, url, hdr, nil)
}

// Do does a raw request.
func Do(ctx context.Context, method, url string, hdr map[string]string, body []byte) (int, http.Header, []byte, error) {
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rb)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := Client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// OCIError is the first error of an OCI error body.
type OCIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail"`
}

// ParseOCIError decodes {"errors":[...]}.
func ParseOCIError(b []byte) (OCIError, error) {
	var body struct {
		Errors []OCIError `json:"errors"`
	}
	if err := jsonUnmarshal(b, &body); err != nil {
		return OCIError{}, fmt.Errorf("not an OCI error body: %v: %q", err, truncate(b, 300))
	}
	if len(body.Errors) == 0 {
		return OCIError{}, fmt.Errorf("OCI error body without errors: %q", truncate(b, 300))
	}
	return body.Errors[0], nil
}

// Sha256 is the digest string of b.
func Sha256(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Client is the HTTP client of Get and Do.
var Client = &http.Client{}

// ErrNotOCI is returned by helpers that need an OCI error body.
var ErrNotOCI = errors.New("not an OCI error")

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// regctl runs regctl against the plain-HTTP registry that ref names
// (<host:port>/<repo>...), configured by --host alone (no config file).
func regctl(t testing.TB, ref string, args ...string) Result {
	host, _, _ := strings.Cut(ref, "/")
	return Run(t, "regctl", append(args, "--host", "reg="+host+",tls=disabled")...)
}

// RegctlImageCopy runs `regctl image copy` from ref into an OCI layout
// directory (ocidir://<dir>:copied) and returns the directory.
func RegctlImageCopy(t testing.TB, ref string, extra ...string) (Result, string) {
	dir := filepath.Join(t.TempDir(), "oci")
	args := append([]string{"image", "copy"}, extra...)
	return regctl(t, ref, append(args, ref, "ocidir://"+dir+":copied")...), dir
}

// RegctlManifestGet runs `regctl manifest get --format raw-body`: stdout is
// the manifest's bytes as served.
func RegctlManifestGet(t testing.TB, ref string) Result {
	return regctl(t, ref, "manifest", "get", "--format", "raw-body", ref)
}

// RegctlArtifactList runs `regctl artifact list` (the referrers of ref) with
// JSON output, optionally filtered by artifact type.
func RegctlArtifactList(t testing.TB, ref, artifactType string) Result {
	args := []string{"artifact", "list", "--format", "{{jsonPretty .}}"}
	if artifactType != "" {
		args = append(args, "--filter-artifact-type", artifactType)
	}
	return regctl(t, ref, append(args, ref)...)
}
