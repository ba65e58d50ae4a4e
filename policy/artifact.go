package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// Config media types whose content is read into an Artifact.
const (
	MediaTypeOCIConfig        = "application/vnd.oci.image.config.v1+json"
	MediaTypeDockerConfig     = "application/vnd.docker.container.image.v1+json"
	MediaTypeModelPackConfig  = "application/vnd.cncf.model.config.v1+json"
	MediaTypeCNAIModelConfig  = "application/vnd.cnai.model.config.v1+json" // ModelPack before 2025-06
	MediaTypeDockerAIConfig   = "application/vnd.docker.ai.model.config.v0.1+json"
	modelKindModelPack        = "modelpack"
	modelKindDockerAI         = "docker-ai"
	maxArtifactEnv            = 4096 // environment entries read from one config
	maxArtifactHistoryEntries = 4096
)

// MaxArtifactConfigBytes bounds the config blob read for an Artifact
// (image configs are a few KiB; a long history is tens of KiB).
const MaxArtifactConfigBytes = 4 << 20

// Artifact is what a rule can know about the artifact itself: the
// manifest, its annotations and what its config blob (verified by digest
// by the caller) says. It is the input document of `require.conditions`
// (Document gives the CEL variables) and is meant to be the artifact part
// of any other policy language's input. Build it with ReadArtifact.
type Artifact struct {
	Subject ArtifactSubject
	// Index is set for an image index: it has no config, and conditions
	// are applied to each platform manifest it lists instead.
	Index bool
	// Manifest is the manifest JSON as a generic value.
	Manifest map[string]any
	// Annotations are the manifest's annotations (never nil).
	Annotations map[string]string
	// Config is the image configuration; nil when the config blob is not
	// one (a model, an artifact) or for an index. A config of a legacy
	// type Docker runs as an image ("", application/octet-stream,
	// application/json, text/html) is read as an image configuration.
	Config *ImageConfig
	// Model is the ModelPack or Docker model configuration; nil when the
	// artifact is not a model.
	Model *ModelConfig
}

// ArtifactSubject names the artifact a decision is about.
type ArtifactSubject struct {
	Upstream   string // configured upstream name
	Repository string // "<upstream>/<repo path>", as rules match it
	Digest     digest.Digest
}

// ImageConfig is an OCI or Docker image configuration, as conditions read it.
type ImageConfig struct {
	MediaType    string
	Digest       digest.Digest
	User         string
	Env          []string          // "NAME=value", in order
	EnvMap       map[string]string // NAME → value (the last entry wins, as runtimes do)
	Entrypoint   []string
	Cmd          []string
	WorkingDir   string
	Labels       map[string]string
	ExposedPorts []string // sorted
	Volumes      []string // sorted
	StopSignal   string
	Created      time.Time // zero when the config has none
	Author       string
	OS           string
	Architecture string
	Variant      string
	History      []ImageHistory
	// Raw is the whole config JSON.
	Raw map[string]any
}

// ImageHistory is one entry of an image config's history.
type ImageHistory struct {
	Created    time.Time
	CreatedBy  string
	Author     string
	Comment    string
	EmptyLayer bool
}

// ModelConfig is a model's configuration: the CNCF ModelPack config
// (descriptor and config sections) or Docker's model config.
type ModelConfig struct {
	Kind      string // "modelpack" or "docker-ai"
	MediaType string
	Digest    digest.Digest
	// Licenses are SPDX expressions (ModelPack descriptor.licenses; Docker
	// model configs carry none: their license is a layer).
	Licenses     []string
	Name         string
	Family       string
	Version      string
	Vendor       string
	Format       string // gguf, safetensors, onnx, ...
	Architecture string
	Parameters   string // as written: "8b", "6.7B", "8.03 B"
	Precision    string
	Quantization string
	Created      time.Time // zero when absent
	Raw          map[string]any
}

// legacyImageConfigType reports the config media types Docker Engine also
// pulls and runs as image configurations, besides the OCI and Docker ones
// (moby distribution/registry.go, defaultImageTypes: values registries
// wrote for docker/distribution#1621, and "" for a descriptor without
// one). ReadArtifact reads them as image configs, with the same strict
// parser, so that an upstream cannot make config null for an image Docker
// runs by changing its config's media type.
func legacyImageConfigType(mediaType string) bool {
	switch mediaType {
	case "", "application/octet-stream", "application/json", "text/html":
		return true
	}
	return false
}

// ArtifactConfigType reports whether ReadArtifact reads a config blob of
// this media type (the caller fetches only those).
func ArtifactConfigType(mediaType string) bool {
	switch mediaType {
	case MediaTypeOCIConfig, MediaTypeDockerConfig, MediaTypeModelPackConfig, MediaTypeCNAIModelConfig, MediaTypeDockerAIConfig:
		return true
	}
	return legacyImageConfigType(mediaType)
}

// ReadArtifact builds the Artifact of a manifest. manifest is its verified
// bytes; configType and config are its config descriptor's media type and
// the config blob, verified against the descriptor's digest by the caller
// (nil for an index, or when ArtifactConfigType is false; configType is
// the descriptor's media type as written, "" included). It parses
// untrusted bytes: anything it cannot read as its media type says is an
// error (the decision then denies), with repeated or case-variant keys
// refused (verify/strictjson) so that no runtime reads another user or
// environment than the one decided on.
func ReadArtifact(sub ArtifactSubject, manifest []byte, index bool, configType string, configDigest digest.Digest, config []byte) (*Artifact, error) {
	a := &Artifact{Subject: sub, Index: index}
	var mf struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := strictjson.Unmarshal(manifest, &a.Manifest); err != nil {
		return nil, fmt.Errorf("manifest: %v", err)
	}
	if err := strictjson.Unmarshal(manifest, &mf); err != nil {
		return nil, fmt.Errorf("manifest annotations: %v", err)
	}
	a.Annotations = mf.Annotations
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	if index || !ArtifactConfigType(configType) {
		return a, nil
	}
	if len(config) > MaxArtifactConfigBytes {
		return nil, fmt.Errorf("config %s: %d bytes exceeds %d", configDigest, len(config), MaxArtifactConfigBytes)
	}
	var raw map[string]any
	if err := strictjson.Unmarshal(config, &raw); err != nil {
		return nil, fmt.Errorf("config %s (%s) is not valid JSON: %v", configDigest, configType, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("config %s (%s) is not a JSON object", configDigest, configType)
	}
	var err error
	switch {
	case configType == MediaTypeOCIConfig || configType == MediaTypeDockerConfig || legacyImageConfigType(configType):
		a.Config, err = readImageConfig(config, raw)
	case configType == MediaTypeModelPackConfig || configType == MediaTypeCNAIModelConfig:
		a.Model, err = readModelPack(config, raw)
	case configType == MediaTypeDockerAIConfig:
		a.Model, err = readDockerModel(config, raw)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s (%s): %v", configDigest, configType, err)
	}
	if a.Config != nil {
		a.Config.MediaType, a.Config.Digest = configType, configDigest
	}
	if a.Model != nil {
		a.Model.MediaType, a.Model.Digest = configType, configDigest
	}
	return a, nil
}

func readImageConfig(b []byte, raw map[string]any) (*ImageConfig, error) {
	var cf v1.ConfigFile
	if err := strictjson.Unmarshal(b, &cf); err != nil {
		return nil, fmt.Errorf("not an image configuration: %v", err)
	}
	c := cf.Config
	if len(c.Env) > maxArtifactEnv || len(cf.History) > maxArtifactHistoryEntries {
		return nil, errors.New("more environment or history entries than any image has")
	}
	ic := &ImageConfig{User: c.User, Env: nonNil(c.Env), EnvMap: make(map[string]string, len(c.Env)),
		Entrypoint: nonNil(c.Entrypoint), Cmd: nonNil(c.Cmd), WorkingDir: c.WorkingDir, Labels: c.Labels,
		StopSignal: c.StopSignal, Created: cf.Created.Time, Author: cf.Author, OS: cf.OS,
		Architecture: cf.Architecture, Variant: cf.Variant, Raw: raw, ExposedPorts: []string{}, Volumes: []string{}}
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		ic.EnvMap[k] = v
	}
	if ic.Labels == nil {
		ic.Labels = map[string]string{}
	}
	for p := range c.ExposedPorts {
		ic.ExposedPorts = append(ic.ExposedPorts, p)
	}
	for v := range c.Volumes {
		ic.Volumes = append(ic.Volumes, v)
	}
	sort.Strings(ic.ExposedPorts)
	sort.Strings(ic.Volumes)
	ic.History = make([]ImageHistory, 0, len(cf.History))
	for _, h := range cf.History {
		ic.History = append(ic.History, ImageHistory{Created: h.Created.Time, CreatedBy: h.CreatedBy,
			Author: h.Author, Comment: h.Comment, EmptyLayer: h.EmptyLayer})
	}
	return ic, nil
}

func readModelPack(b []byte, raw map[string]any) (*ModelConfig, error) {
	var mp struct {
		Descriptor struct {
			CreatedAt *time.Time `json:"createdAt"`
			Vendor    string     `json:"vendor"`
			Family    string     `json:"family"`
			Name      string     `json:"name"`
			Version   string     `json:"version"`
			Licenses  []string   `json:"licenses"`
		} `json:"descriptor"`
		Config struct {
			Architecture string `json:"architecture"`
			Format       string `json:"format"`
			ParamSize    string `json:"paramSize"`
			Precision    string `json:"precision"`
			Quantization string `json:"quantization"`
		} `json:"config"`
	}
	if err := strictjson.Unmarshal(b, &mp); err != nil {
		return nil, fmt.Errorf("not a ModelPack model configuration: %v", err)
	}
	d, c := mp.Descriptor, mp.Config
	m := &ModelConfig{Kind: modelKindModelPack, Licenses: nonNil(d.Licenses), Name: d.Name, Family: d.Family,
		Version: d.Version, Vendor: d.Vendor, Format: c.Format, Architecture: c.Architecture,
		Parameters: c.ParamSize, Precision: c.Precision, Quantization: c.Quantization, Raw: raw}
	if d.CreatedAt != nil {
		m.Created = *d.CreatedAt
	}
	return m, nil
}

func readDockerModel(b []byte, raw map[string]any) (*ModelConfig, error) {
	var dm struct {
		Descriptor struct {
			CreatedAt *time.Time `json:"createdAt"`
		} `json:"descriptor"`
		Config struct {
			Format string            `json:"format"`
			GGUF   map[string]string `json:"gguf"`
		} `json:"config"`
	}
	if err := strictjson.Unmarshal(b, &dm); err != nil {
		return nil, fmt.Errorf("not a Docker model configuration: %v", err)
	}
	g := dm.Config.GGUF
	m := &ModelConfig{Kind: modelKindDockerAI, Licenses: []string{}, Format: dm.Config.Format,
		Architecture: g["architecture"], Parameters: g["parameter_count"], Quantization: g["quantization"], Raw: raw}
	if dm.Descriptor.CreatedAt != nil {
		m.Created = *dm.Descriptor.CreatedAt
	}
	return m, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Artifact document variables (docs/policy.md "require.conditions").
const (
	VarSubject     = "subject"
	VarManifest    = "manifest"
	VarAnnotations = "annotations"
	VarConfig      = "config"
	VarModel       = "model"
	VarNow         = "now"
)

// Document is the artifact as one JSON-shaped value per variable name
// (subject, manifest, annotations, config, model, now): maps, lists,
// strings, numbers, bools, nil, and time.Time for timestamps (an absent
// time is nil). CEL conditions read these variables; another policy
// language can take the same map as its input (time.Time marshals to
// RFC 3339 JSON).
func (a *Artifact) Document(now time.Time) map[string]any {
	doc := map[string]any{
		VarSubject: map[string]any{
			"upstream":   a.Subject.Upstream,
			"repository": a.Subject.Repository,
			"digest":     string(a.Subject.Digest),
		},
		VarManifest:    a.Manifest,
		VarAnnotations: a.Annotations,
		VarConfig:      nil,
		VarModel:       nil,
		VarNow:         now.UTC(),
	}
	if a.Manifest == nil {
		doc[VarManifest] = map[string]any{}
	}
	if c := a.Config; c != nil {
		hist := make([]any, 0, len(c.History))
		for _, h := range c.History {
			hist = append(hist, map[string]any{"created": timeOrNil(h.Created), "createdBy": h.CreatedBy,
				"author": h.Author, "comment": h.Comment, "emptyLayer": h.EmptyLayer})
		}
		doc[VarConfig] = map[string]any{
			"mediaType": c.MediaType, "digest": string(c.Digest),
			"user": c.User, "env": c.Env, "envMap": c.EnvMap, "entrypoint": c.Entrypoint, "cmd": c.Cmd,
			"workingDir": c.WorkingDir, "labels": c.Labels, "exposedPorts": c.ExposedPorts, "volumes": c.Volumes,
			"stopSignal": c.StopSignal, "created": timeOrNil(c.Created), "author": c.Author,
			"os": c.OS, "architecture": c.Architecture, "variant": c.Variant, "history": hist, "raw": c.Raw,
		}
	}
	if m := a.Model; m != nil {
		doc[VarModel] = map[string]any{
			"kind": m.Kind, "mediaType": m.MediaType, "digest": string(m.Digest), "licenses": m.Licenses,
			"name": m.Name, "family": m.Family, "version": m.Version, "vendor": m.Vendor, "format": m.Format,
			"architecture": m.Architecture, "parameters": m.Parameters, "precision": m.Precision,
			"quantization": m.Quantization, "created": timeOrNil(m.Created), "raw": m.Raw,
		}
	}
	return doc
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}
