// Package demo runs pullgate's offline demonstration: a real in-process
// upstream registry with sample content, a pullgate proxy in front of it, and
// real pulls through the proxy that are allowed and denied.
package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
)

// Options for Run.
type Options struct {
	// Dir holds the demo's config, policy, store and audit log (a temp dir if empty).
	Dir string
	Out io.Writer
}

const policyYAML = `# pullgate demo policy: first matching rule wins, no match is denied.
trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: blocked
    match: ["upstream.local/blocked/**"]
    action: deny
  - name: apps
    match: ["upstream.local/apps/**"]
    action: verify
    require:
      attestations:
        - predicateType: https://slsa.dev/provenance/v1
          signedBy: [release]
          condition: 'predicate.buildDefinition.buildType == "https://ci.example/build/v1"'
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack]
      formats: { safetensors: { maxHeaderBytes: 16MiB }, pickle: deny }
      denyCodeLayers: true
  - name: open
    match: ["upstream.local/**"]
    action: allow
`

// Run executes the demo and reports whether every step behaved as expected.
func Run(ctx context.Context, o Options) error {
	out := o.Out
	if out == nil {
		out = os.Stdout
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "pullgate-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	up, err := upstream.Start(upstream.Options{Referrers: false})
	if err != nil {
		return err
	}
	defer up.Close()
	fmt.Fprintf(out, "upstream registry (distribution/v3, in-memory) at %s\n", up.URL)

	images := map[string]v1.Image{}
	for _, repo := range []string{"demo/app:1.0", "blocked/tool:latest", "apps/web:1.0", "apps/web:unsigned"} {
		img, err := random.Image(512<<10, 2)
		if err != nil {
			return err
		}
		ref, err := name.ParseReference(up.Host+"/"+repo, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("seeding %s: %w", repo, err)
		}
		images[repo] = img
		d, _ := img.Digest()
		fmt.Fprintf(out, "  pushed %-22s %s\n", repo, d)
	}

	// The publisher signs a provenance attestation for apps/web:1.0 with its
	// release key and attaches it as a referrer (cosign v3 layout).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(key.Public())
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return err
	}
	signed, _ := images["apps/web:1.0"].Digest()
	if err := attachProvenance(ctx, up.Host, "apps/web", signed.String(), key); err != nil {
		return fmt.Errorf("signing apps/web:1.0: %w", err)
	}
	fmt.Fprintf(out, "  signed apps/web:1.0 (SLSA provenance, DSSE in a Sigstore bundle, attached as a referrer)\n")

	// Models: a safe safetensors adapter and a pickle that runs code on load.
	good := safetensorsAdapter()
	evil := picklePayload()
	for _, m := range []struct {
		repo, file string
		data       []byte
	}{{"models/adapter:good", "adapter.safetensors", good}, {"models/adapter:evil", "adapter.bin", evil}} {
		if err := pushModel(ctx, up.Host, m.repo, m.file, m.data); err != nil {
			return fmt.Errorf("seeding %s: %w", m.repo, err)
		}
		fmt.Fprintf(out, "  pushed %-22s ModelPack artifact with %s\n", m.repo, m.file)
	}

	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(policyYAML), 0o644); err != nil {
		return err
	}
	cfgYAML := fmt.Sprintf(`listen: 127.0.0.1:0
storage:
  path: %s
upstreams:
  - name: upstream.local
    url: %s
policy: %s
audit:
  path: %s
`, filepath.Join(dir, "data"), up.URL, policyPath, filepath.Join(dir, "audit.jsonl"))
	cfgPath := filepath.Join(dir, "pullgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o644); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	srv, err := proxy.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = srv.ListenAndServe(sctx, ln) }()
	host := ln.Addr().String()
	fmt.Fprintf(out, "pullgate proxy at http://%s (policy revision %s)\n\n", host, short(srv.Policy().Revision()))

	var failures []string
	pull := func(repo string, wantAllowed bool) {
		if !strings.Contains(strings.Split(repo, "/")[0], ".") {
			repo = "upstream.local/" + repo
		}
		ref, err := name.ParseReference(host+"/"+repo, name.Insecure)
		if err != nil {
			failures = append(failures, err.Error())
			return
		}
		start := time.Now()
		img, err := remote.Image(ref, remote.WithContext(ctx))
		if err == nil {
			// Pull every layer through the proxy and verify it.
			var layers []v1.Layer
			layers, err = img.Layers()
			for _, l := range layers {
				if err != nil {
					break
				}
				var rc io.ReadCloser
				if rc, err = l.Compressed(); err == nil {
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
				}
			}
		}
		fmt.Fprintf(out, "$ pull %s/%s\n", host, repo)
		switch {
		case err == nil:
			d, _ := img.Digest()
			want, _ := images[strings.TrimPrefix(repo, "upstream.local/")].Digest()
			fmt.Fprintf(out, "  ALLOWED  %s (%s, same digest as upstream: %v)\n\n", d, time.Since(start).Round(time.Millisecond), d == want)
			if !wantAllowed || d != want {
				failures = append(failures, repo+": expected a denial")
			}
		default:
			msg := err.Error()
			var te *transport.Error
			if !errors.As(err, &te) {
				te = nil
			}
			if te != nil && len(te.Errors) > 0 {
				msg = fmt.Sprintf("HTTP %d %s: %s", te.StatusCode, te.Errors[0].Code, te.Errors[0].Message)
			}
			verb := "REFUSED"
			if te != nil && te.StatusCode == http.StatusForbidden {
				verb = "DENIED "
			}
			fmt.Fprintf(out, "  %s  %s\n\n", verb, msg)
			if wantAllowed {
				failures = append(failures, repo+": "+msg)
			}
		}
	}
	pull("demo/app:1.0", true)
	pull("apps/web:1.0", true)
	pull("apps/web:unsigned", false)
	pull("blocked/tool:latest", false)
	pull("registry.example/any/image:1", false) // not a configured upstream: never contacted
	pullModel := func(repo string, wantAllowed bool) {
		fmt.Fprintf(out, "$ pull model %s/upstream.local/%s\n", host, repo)
		f, err := fetchModel(ctx, host, "upstream.local/"+repo)
		switch {
		case err == nil:
			fmt.Fprintf(out, "  ALLOWED  %s arrived intact (%d bytes)\n\n", f.name, len(f.data))
			if !wantAllowed {
				failures = append(failures, repo+": expected a denial")
			}
		default:
			fmt.Fprintf(out, "  DENIED   %v\n\n", err)
			if wantAllowed {
				failures = append(failures, repo+": "+err.Error())
			}
		}
	}
	pullModel("models/adapter:good", true)
	pullModel("models/adapter:evil", false)

	// A blob of the blocked image, by digest, is refused too.
	blocked, _ := images["blocked/tool:latest"].Layers()
	bd, _ := blocked[0].Digest()
	resp, err := http.Get("http://" + host + "/v2/upstream.local/blocked/tool/blobs/" + bd.String())
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(out, "$ GET /v2/upstream.local/blocked/tool/blobs/%s\n  HTTP %d %s\n", short(bd.String()), resp.StatusCode, strings.TrimSpace(string(body)))
		if resp.StatusCode != http.StatusForbidden {
			failures = append(failures, "blob of blocked image was not refused")
		}
	}

	audit, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	where := filepath.Join(dir, "audit.jsonl")
	if o.Dir == "" {
		where += ", removed on exit; --dir DIR keeps it"
	}
	fmt.Fprintf(out, "\naudit log (%d decisions, one JSON line each in %s):\n", strings.Count(string(audit), "\n"), where)
	for _, line := range strings.Split(strings.TrimSpace(string(audit)), "\n") {
		var ev struct {
			Kind, Repository, Reference, Rule, Decision string
			Reasons                                     []string
		}
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		fmt.Fprintf(out, "  %-5s %-8s %-9s %s@%s: %s\n", ev.Decision, ev.Kind, ev.Rule, ev.Repository, short(ev.Reference), strings.Join(ev.Reasons, "; "))
	}
	if len(failures) > 0 {
		return fmt.Errorf("demo: unexpected results: %s", strings.Join(failures, "; "))
	}
	fmt.Fprintln(out, "\ndemo: every pull behaved as the policy says")
	return nil
}

func short(s string) string {
	if i := strings.Index(s, ":"); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
