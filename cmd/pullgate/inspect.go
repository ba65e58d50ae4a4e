package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/ocimanifest"
)

const inspectUsage = `usage: pullgate inspect <file-or-image-ref> [--policy policy.yaml --rule NAME] [--media-type MT] [--pickle deny|scan] [-o text|json] [--plain-http]

Runs pullgate's content validators (safetensors, GGUF, pickle, PyTorch zips, NumPy, joblib,
JSON/YAML configs, chat templates, media types, code layers) on a local file or on every layer of
an image (as every name each layer declares), and prints each finding. A local file's name is its
only declaration (it decides how text is read: a template, a YAML config). Without --policy the
validators run with their defaults (pickle: deny; bytes of no known format refused). Exit 0 when nothing was found, 1 when
something was, 2 on usage errors.
`

func cmdInspect(args []string) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, inspectUsage) }
	policyPath := fs.String("policy", "", "take content options from a rule of this policy")
	ruleName := fs.String("rule", "", "the rule whose content section applies (with --policy)")
	mediaType := fs.String("media-type", "", "declared media type of a local file")
	pickle := fs.String("pickle", "", "deny or scan (overrides the policy)")
	out := fs.String("o", "text", "output: text or json")
	plain := fs.Bool("plain-http", false, "talk plain HTTP to the registry")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err)
	}
	if len(pos) != 1 || (*out != "text" && *out != "json") {
		fs.Usage()
		return 2
	}
	target := pos[0]
	var opts content.Options
	if *policyPath != "" {
		p, err := policy.Load(*policyPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pullgate inspect: %v\n", err)
			return 2
		}
		var rule *policy.Rule
		for _, r := range p.Rules {
			if r.Name == *ruleName {
				rule = r
			}
		}
		if rule == nil || rule.Content == nil {
			fmt.Fprintf(os.Stderr, "pullgate inspect: policy has no rule %q with a content section\n", *ruleName)
			return 2
		}
		opts = rule.Content.Options()
	}
	switch *pickle {
	case "":
	case "deny", "scan":
		opts.Pickle.Mode = content.PickleMode(*pickle)
	default:
		fmt.Fprintln(os.Stderr, "pullgate inspect: --pickle is deny or scan")
		return 2
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "pullgate inspect: %v\n", err)
		return 2
	}
	var reports []content.Report
	if st, serr := os.Stat(target); serr == nil && !st.IsDir() {
		if *mediaType == "" && len(opts.MediaTypes) > 0 {
			// A local file declares no media type: run the validators on
			// its bytes and say what was not checked.
			opts.MediaTypes = nil
			fmt.Fprintf(os.Stderr, "pullgate inspect: %s has no declared media type, so the rule's media-type allowlist is not checked (use --media-type)\n", target)
		}
		reports, err = inspectFile(opts, target, st.Size(), *mediaType)
	} else {
		reports, err = inspectImage(context.Background(), opts, target, *plain)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate inspect: %v\n", err)
		return 1
	}
	judgeReferences(opts.References, reports)
	found := 0
	for _, r := range reports {
		found += len(r.Findings)
	}
	if *out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reports)
	} else {
		for _, r := range reports {
			name := r.Title
			if name == "" {
				name = r.MediaType
			}
			status := "ok"
			if len(r.Findings) > 0 {
				status = "REFUSED"
			}
			fmt.Printf("%-8s %s (%s, %d bytes, %d tensors)\n", status, name, orNone(r.Format), r.Size, len(r.Tensors))
			for _, f := range r.Findings {
				fmt.Printf("         %s\n", f.Error())
			}
			for _, ref := range r.References {
				fmt.Printf("         references %s\n", ref)
			}
		}
		fmt.Printf("%d finding(s) in %d blob(s)\n", found, len(reports))
	}
	if found > 0 {
		return 1
	}
	return 0
}

func inspectFile(opts content.Options, path string, size int64, mediaType string) ([]content.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	title := path[strings.LastIndex(path, "/")+1:]
	r, err := content.InspectReader(opts, f, size, mediaType, title)
	return []content.Report{r}, err
}

func inspectImage(ctx context.Context, opts content.Options, ref string, plain bool) ([]content.Report, error) {
	var nopts []name.Option
	if plain {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a file nor an image reference: %w", ref, err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var reports []content.Report
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	// The proxy's own parser: a manifest it would refuse is an error here.
	ocim, err := ocimanifest.Parse(raw, string(mt))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if fs := content.CheckManifest(opts, ocim); len(fs) > 0 {
		reports = append(reports, content.Report{MediaType: string(m.MediaType), Title: "manifest", Findings: fs})
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for i, l := range layers {
		desc := ocim.Layers[i]
		// A layer is inspected as each name it declares (title, ModelPack
		// file paths), as the proxy does: one report per name.
		for _, c := range content.DeclarationOf(desc).Classes() {
			rc, err := l.Compressed()
			if err != nil {
				return nil, err
			}
			rep, err := content.InspectReader(opts, rc, desc.Size, c.MediaType, c.Name)
			rc.Close()
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
			}
			reports = append(reports, rep)
		}
	}
	return reports, nil
}

// judgeReferences applies the rule's content.references to the load-time
// references the reports list, as the proxy does, except that a local
// inspection verifies no MBOM: under require: mbom only allow entries can
// admit a reference here, so the references are listed and the
// requirement is left to the proxy (and said so).
func judgeReferences(o content.ReferenceOptions, reports []content.Report) {
	if o.Require == content.RequireMBOM {
		for _, r := range reports {
			if len(r.References) > 0 {
				fmt.Fprintln(os.Stderr, "pullgate inspect: content.references.require: mbom compares references with the artifact's verified MBOM, which the proxy verifies on pull; inspect lists them")
				return
			}
		}
		return
	}
	for i, r := range reports {
		if len(r.Findings) > 0 {
			continue
		}
		if f := content.CheckReferences(o, r.References, false, nil); f != nil {
			reports[i].Findings = append(reports[i].Findings, *f)
		}
	}
}
