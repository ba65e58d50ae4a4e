package ocimanifest_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify/ocimanifest"
	"github.com/pullgate/pullgate/verify/release"
)

// Seeds in the shapes real clients write: Docker Hub's multi-platform list
// and image manifest, an OCI index with attestation children (buildx), a
// cosign .sig manifest, a cosign v3 bundle referrer, a ModelPack and an
// Ollama model manifest.
func seeds() [][2]string {
	h := func(s string) string { return digest.FromString(s).String() }
	h512 := func(s string) string { return digest.SHA512.FromString(s).String() }
	return [][2]string{
		{`{"manifests":[{"digest":"` + h("amd64") + `","mediaType":"application/vnd.docker.distribution.manifest.v2+json","platform":{"architecture":"amd64","os":"linux"},"size":528},{"digest":"` + h("arm") + `","mediaType":"application/vnd.docker.distribution.manifest.v2+json","platform":{"architecture":"arm","os":"linux","variant":"v7"},"size":528}],"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","schemaVersion":2}`, ocimanifest.MediaTypeDockerList},
		{"{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",\n   \"config\": {\n      \"mediaType\": \"application/vnd.docker.container.image.v1+json\",\n      \"size\": 1457,\n      \"digest\": \"" + h("cfg") + "\"\n   },\n   \"layers\": [\n      {\n         \"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\",\n         \"size\": 2152262,\n         \"digest\": \"" + h("l1") + "\"\n      }\n   ]\n}", ocimanifest.MediaTypeDockerManifest},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + h("img") + `","size":673,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + h("att") + `","size":566,"annotations":{"vnd.docker.reference.digest":"` + h("img") + `","vnd.docker.reference.type":"attestation-manifest"},"platform":{"architecture":"unknown","os":"unknown"}}]}`, ocimanifest.MediaTypeOCIIndex},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":233,"digest":"` + h("c") + `"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":251,"digest":"` + h("p") + `","annotations":{"dev.cosignproject.cosign/signature":"MEUCIQ==","dev.sigstore.cosign/bundle":"{}"}}]}`, ocimanifest.MediaTypeOCIManifest},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="},"layers":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"` + h("b") + `","size":4200}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + h("img") + `","size":673},"annotations":{"dev.sigstore.bundle.content":"dsse-envelope","org.opencontainers.image.created":"2025-01-01T00:00:00Z"}}`, ""},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.cncf.model.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.model.config.v1+json","digest":"` + h512("mc") + `","size":300},"layers":[{"mediaType":"application/vnd.cncf.model.weight.v1.raw","digest":"` + h("w") + `","size":1000,"annotations":{"org.cncf.model.filepath":"model.safetensors","org.opencontainers.image.title":"model.safetensors"}},{"mediaType":"application/vnd.cncf.model.doc.v1.raw","digest":"` + h("r") + `","size":10,"annotations":{"org.opencontainers.image.title":"README.md"}}]}`, ocimanifest.MediaTypeOCIManifest},
		{`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + h("oc") + `","size":485},"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"` + h("om") + `","size":1000},{"mediaType":"application/vnd.ollama.image.template","digest":"` + h("ot") + `","size":1}]}`, ""},
		{`{"schemaVersion":2,"manifests":[],"layers":null,"config":null}`, "application/json"},
		{`{"schemaVersion":2,"config":{"digest":"` + h("x") + `","size":1},"config":null,"Layers":[{"digest":"` + h("y") + `","size":-1}]}`, ""},
		{`{"SchemaVersion":2,"MediaType":"application/vnd.oci.image.manifest.v1+json","Config":{"Digest":"` + h("x") + `","Size":1},"layers":[{"digest":"` + h("y") + `","size":1,"digest":"` + h512("y") + `"}]}`, ""},
	}
}

// oldLayersFromManifest is verify/release.LayersFromManifest as it was
// before the release checks took the parsed manifest: the reference the
// fuzz target compares release.LayersOf with.
func oldLayersFromManifest(manifest []byte) ([]release.Layer, error) {
	var m struct {
		Layers []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Size        int64             `json:"size"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	out := make([]release.Layer, 0, len(m.Layers))
	for i, l := range m.Layers {
		if !oldLayerDigestRE.MatchString(l.Digest) || l.Size < 0 {
			return nil, fmt.Errorf("manifest: layer %d has an invalid digest or size", i)
		}
		out = append(out, release.Layer{Digest: l.Digest, Size: l.Size, Title: l.Annotations[release.AnnotationTitle], MediaType: l.MediaType})
	}
	return out, nil
}

var oldLayerDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// FuzzParse: Parse never panics; what it accepts has a known media type and
// the structure of its kind with valid descriptors; and on whatever it
// accepts, the parsers the release and content checks used before they
// took the parsed manifest (release.LayersFromManifest, json into
// ocispec.Manifest) read exactly what the parsed manifest holds, so
// passing it changed no check.
func FuzzParse(f *testing.F) {
	for _, s := range seeds() {
		f.Add([]byte(s[0]), s[1])
	}
	f.Fuzz(func(t *testing.T, body []byte, declared string) {
		m, err := ocimanifest.Parse(body, declared)
		if err != nil {
			if m != nil {
				t.Fatal("a manifest with an error")
			}
			return
		}
		if !ocimanifest.IsKnownType(m.MediaType) || &m.Raw[0] != &body[0] || len(m.Raw) != len(body) {
			t.Fatalf("media type %q, raw %d bytes", m.MediaType, len(m.Raw))
		}
		if m.IsIndex() != (m.Config == nil) || (m.IsIndex() && m.Layers != nil) || (!m.IsIndex() && m.Manifests != nil) {
			t.Fatalf("structure of a %s: %+v", m.MediaType, m)
		}
		descs := append(m.Blobs(), m.Manifests...)
		if m.Subject != nil {
			descs = append(descs, *m.Subject)
		}
		for _, d := range descs {
			if a := d.Digest.Algorithm(); (a != digest.SHA256 && a != digest.SHA512) || d.Digest.Validate() != nil || d.Size < 0 {
				t.Fatalf("accepted descriptor %+v", d)
			}
		}
		// Release checks: same layers, same refusal.
		oldL, oldErr := oldLayersFromManifest(body)
		newL, newErr := release.LayersOf(m)
		if (oldErr == nil) != (newErr == nil) || (oldErr != nil && oldErr.Error() != newErr.Error()) || (oldErr == nil && !reflect.DeepEqual(oldL, newL)) {
			t.Fatalf("release layers differ: old %v %+v, new %v %+v", oldErr, oldL, newErr, newL)
		}
		// Content checks (image manifests only): same config and layers.
		if !m.IsIndex() {
			var om ocispec.Manifest
			if err := json.Unmarshal(body, &om); err != nil {
				t.Fatalf("accepted by Parse, refused by the content check's decode: %v", err)
			}
			if !reflect.DeepEqual(om.Config, *m.Config) || !reflect.DeepEqual(om.Layers, m.Layers) {
				t.Fatalf("content check inputs differ:\nold %+v %+v\nnew %+v %+v", om.Config, om.Layers, *m.Config, m.Layers)
			}
		}
	})
}
