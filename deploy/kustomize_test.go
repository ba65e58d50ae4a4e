package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// kustomization is the subset of kustomize's Kustomization these manifests
// use. Decoding is strict, so a field outside it (a typo, or a feature the
// checks below do not model) fails the test rather than being ignored.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Patches    []kPatch `json:"patches,omitempty"`
	Images     []kImage `json:"images,omitempty"`
	Labels     []kLabel `json:"labels,omitempty"`
}

type kPatch struct {
	Path string `json:"path"`
}

type kImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

type kLabel struct {
	Pairs            map[string]string `json:"pairs"`
	IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	IncludeTemplates bool              `json:"includeTemplates,omitempty"`
}

// splitDocs splits a YAML stream into its documents (dropping empty ones).
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		// A separator line may carry a comment or trailing spaces.
		if i := bytes.IndexByte(d, '\n'); i >= 0 && len(bytes.TrimSpace(d[:i])) > 0 && bytes.HasPrefix(bytes.TrimSpace(d[:i]), []byte("#")) {
			d = d[i:]
		}
		if len(bytes.TrimSpace(stripComments(d))) == 0 {
			continue
		}
		docs = append(docs, d)
	}
	return docs
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

// object is one Kubernetes document as a generic map, with where it came from.
type object struct {
	file string
	m    map[string]any
}

func (o object) kind() string { s, _ := o.m["kind"].(string); return s }
func (o object) name() string {
	md, _ := o.m["metadata"].(map[string]any)
	s, _ := md["name"].(string)
	return s
}
func (o object) key() string { return o.kind() + "/" + o.name() }

func readObjects(path string) ([]object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []object
	for i, d := range splitDocs(b) {
		var m map[string]any
		if err := yaml.Unmarshal(d, &m); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		out = append(out, object{file: path, m: m})
	}
	return out, nil
}

func readKustomization(dir string) (*kustomization, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	v, err := strictDecode(b)
	if err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	k, ok := v.(*kustomization)
	if !ok {
		return nil, fmt.Errorf("%s/kustomization.yaml: not a Kustomization", dir)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s/kustomization.yaml: apiVersion/kind %s/%s", dir, k.APIVersion, k.Kind)
	}
	return k, nil
}

// build renders a kustomization the way kustomize does for what these
// manifests use: resources (files and directories, recursively), strategic
// merge patches of built-in types, the namespace, and image tags.
func build(dir string) ([]object, error) {
	k, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", dir, r, err)
		}
		if st.IsDir() {
			sub, err := build(p)
			if err != nil {
				return nil, err
			}
			objs = append(objs, sub...)
			continue
		}
		o, err := readObjects(p)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	seen := map[string]bool{}
	for _, o := range objs {
		if seen[o.key()] {
			return nil, fmt.Errorf("%s: %s defined twice", dir, o.key())
		}
		seen[o.key()] = true
	}
	for _, p := range k.Patches {
		patches, err := readObjects(filepath.Join(dir, p.Path))
		if err != nil {
			return nil, err
		}
		for _, pt := range patches {
			found := false
			for i := range objs {
				if objs[i].key() == pt.key() {
					objs[i].m = merge(objs[i].m, pt.m, "").(map[string]any)
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("%s: patch %s targets %s, which no resource defines", dir, p.Path, pt.key())
			}
		}
	}
	for _, o := range objs {
		if k.Namespace != "" && o.kind() != "Namespace" {
			md := o.m["metadata"].(map[string]any)
			md["namespace"] = k.Namespace
		}
		for _, img := range k.Images {
			setImage(o.m, img)
		}
	}
	return objs, nil
}

// mergeKeys are the patch merge keys of the lists these manifests patch (as
// in the Kubernetes API's patchMergeKey tags); other lists are replaced.
var mergeKeys = map[string]string{
	"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
	"volumeMounts": "mountPath", "ports": "containerPort", "topologySpreadConstraints": "topologyKey",
}

func merge(base, patch any, field string) any {
	switch p := patch.(type) {
	case map[string]any:
		b, ok := base.(map[string]any)
		if !ok {
			return p
		}
		out := map[string]any{}
		for k, v := range b {
			out[k] = v
		}
		for k, v := range p {
			if v == nil {
				delete(out, k)
				continue
			}
			out[k] = merge(b[k], v, k)
		}
		return out
	case []any:
		key, ok := mergeKeys[field]
		b, isList := base.([]any)
		if !ok || !isList {
			return p
		}
		out := append([]any(nil), b...)
		for _, pv := range p {
			pm, _ := pv.(map[string]any)
			done := false
			for i, bv := range out {
				if bm, _ := bv.(map[string]any); bm != nil && pm != nil && fmt.Sprint(bm[key]) == fmt.Sprint(pm[key]) {
					out[i] = merge(bm, pm, "")
					done = true
				}
			}
			if !done {
				out = append(out, pv)
			}
		}
		return out
	}
	return patch
}

func setImage(m map[string]any, img kImage) {
	spec, _ := m["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	ps, _ := tmpl["spec"].(map[string]any)
	cs, _ := ps["containers"].([]any)
	for _, c := range cs {
		cm, _ := c.(map[string]any)
		ref, _ := cm["image"].(string)
		name := ref
		if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
			name = ref[:i]
		}
		if name != img.Name {
			continue
		}
		if img.NewName != "" {
			name = img.NewName
		}
		switch {
		case img.Digest != "":
			cm["image"] = name + "@" + img.Digest
		case img.NewTag != "":
			cm["image"] = name + ":" + img.NewTag
		}
	}
}
