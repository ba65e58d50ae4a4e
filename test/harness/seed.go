package harness

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Blob is one blob of seeded content.
type Blob struct {
	Digest    string // sha256:...
	Size      int64
	MediaType string
	Data      []byte
}

// Image is a seeded single-platform image.
type Image struct {
	Repo      string // repository on the upstream, e.g. "open/app"
	Tag       string
	Digest    string // manifest digest
	MediaType string
	Manifest  []byte
	Config    Blob
	Layers    []Blob
	Platform  *v1.Platform
	Image     v1.Image
}

// Index is a seeded multi-arch index.
type Index struct {
	Repo      string
	Tag       string
	Digest    string
	MediaType string
	Manifest  []byte
	Children  []*Image // in index order, with Platform set
}

// Artifact is a seeded OCI artifact manifest (optionally a referrer).
type Artifact struct {
	Repo         string
	Tag          string // "" when pushed by digest only
	Digest       string
	ArtifactType string
	Manifest     []byte
	Layers       []Blob
	Subject      string // digest of the subject, "" if none
}

// ImageOptions shape a random image.
type ImageOptions struct {
	Layers    int   // default 1
	LayerSize int64 // bytes of random content per layer (default 1 KiB)
	// Docker uses Docker schema 2 media types instead of OCI.
	Docker   bool
	Platform *v1.Platform // default linux/amd64
	// Static makes each layer plain random bytes rather than a gzipped
	// tarball: fast to build at large sizes, but not unpackable (use it for
	// blob-level tests, not for containerd pulls).
	Static bool
	// Config edits the image configuration (user, env, created, ...).
	Config func(*v1.ConfigFile)
	// Annotations are set on the manifest.
	Annotations map[string]string
}

// RandomImage builds (but does not push) an image with random layers.
func RandomImage(t testing.TB, o ImageOptions) v1.Image {
	t.Helper()
	if o.Layers == 0 {
		o.Layers = 1
	}
	if o.LayerSize == 0 {
		o.LayerSize = 1024
	}
	if o.Platform == nil {
		o.Platform = &v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	mt, cmt, lmt := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	if o.Docker {
		mt, cmt, lmt = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	}
	img := mutate.MediaType(empty.Image, mt)
	img = mutate.ConfigMediaType(img, cmt)
	for range o.Layers {
		var l v1.Layer
		if o.Static {
			b := make([]byte, o.LayerSize)
			_, _ = rand.Read(b)
			l = static.NewLayer(b, lmt)
		} else {
			var err error
			if l, err = random.Layer(o.LayerSize, lmt); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = o.Platform.OS, o.Platform.Architecture, o.Platform.Variant
	cf.Config.Cmd = []string{"/hello"}
	if o.Config != nil {
		o.Config(cf)
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	if o.Annotations != nil {
		img = mutate.Annotations(img, o.Annotations).(v1.Image)
	}
	return img
}

// PushImage pushes a random image to repo:tag.
func (u *Upstream) PushImage(t testing.TB, repo, tag string, o ImageOptions) *Image {
	t.Helper()
	img := RandomImage(t, o)
	return u.PushV1Image(t, repo, tag, img)
}

// PushV1Image pushes a given image to repo:tag (tag may be "" to push by digest).
func (u *Upstream) PushV1Image(t testing.TB, repo, tag string, img v1.Image) *Image {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := u.Ref(repo + "@" + d.String())
	if tag != "" {
		ref = u.Ref(repo + ":" + tag)
	}
	r, err := name.ParseReference(ref, u.nameOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, u.RemoteOptions()...); err != nil {
		t.Fatalf("seed %s: %v", ref, err)
	}
	return describeImage(t, repo, tag, img)
}

func describeImage(t testing.TB, repo, tag string, img v1.Image) *Image {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	mt, _ := img.MediaType()
	cfgRaw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfgName, _ := img.ConfigName()
	m, _ := img.Manifest()
	cf, _ := img.ConfigFile()
	out := &Image{
		Repo: repo, Tag: tag, Digest: d.String(), MediaType: string(mt), Manifest: raw, Image: img,
		Config: Blob{Digest: cfgName.String(), Size: int64(len(cfgRaw)), MediaType: string(m.Config.MediaType), Data: cfgRaw},
	}
	if cf != nil {
		out.Platform = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		ld, _ := l.Digest()
		lmt, _ := l.MediaType()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out.Layers = append(out.Layers, Blob{Digest: ld.String(), Size: int64(len(data)), MediaType: string(lmt), Data: data})
	}
	return out
}

// PushIndex pushes a multi-arch index to repo:tag with one random child per
// platform (default linux/amd64 and linux/arm64).
func (u *Upstream) PushIndex(t testing.TB, repo, tag string, docker bool, platforms ...v1.Platform) *Index {
	t.Helper()
	if len(platforms) == 0 {
		platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
	}
	var children []ImageOptions
	for _, p := range platforms {
		children = append(children, ImageOptions{Docker: docker, Platform: &p})
	}
	return u.PushIndexOf(t, repo, tag, children...)
}

// PushIndexOf pushes an index to repo:tag with one random child per
// options (each with its Platform set; Docker of the first picks a Docker
// list).
func (u *Upstream) PushIndexOf(t testing.TB, repo, tag string, children ...ImageOptions) *Index {
	t.Helper()
	imt := types.OCIImageIndex
	if len(children) > 0 && children[0].Docker {
		imt = types.DockerManifestList
	}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, imt)
	out := &Index{Repo: repo, Tag: tag}
	for _, o := range children {
		p := *o.Platform
		img := RandomImage(t, o)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		child := describeImage(t, repo, "", img)
		child.Platform = &p
		out.Children = append(out.Children, child)
	}
	r, err := name.ParseReference(u.Ref(repo+":"+tag), u.nameOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, u.RemoteOptions()...); err != nil {
		t.Fatalf("seed index %s: %v", r, err)
	}
	raw, _ := idx.RawManifest()
	d, _ := idx.Digest()
	out.Digest, out.MediaType, out.Manifest = d.String(), string(imt), raw
	return out
}

// Empty config of OCI artifacts (image-spec 1.1).
const (
	EmptyMediaType = "application/vnd.oci.empty.v1+json"
	emptyJSON      = "{}"
)

// ArtifactOptions shape an OCI artifact.
type ArtifactOptions struct {
	ArtifactType string
	// Subject makes the artifact a referrer of that manifest.
	Subject *v1.Descriptor
	// Payload is the single layer (default: a small JSON document).
	Payload          []byte
	PayloadMediaType string
	// Title annotates the payload layer (org.opencontainers.image.title), so
	// `oras pull` writes it to a file of that name.
	Title       string
	Annotations map[string]string
	// Tag pushes by tag too; "" pushes by digest only.
	Tag string
}

// PushArtifact pushes an OCI 1.1 artifact manifest (artifactType, empty
// config, one layer, optional subject). When the subject is set and the
// upstream has no referrers API, go-containerregistry maintains the
// sha256-<hex> fallback tag index, as real clients do.
func (u *Upstream) PushArtifact(t testing.TB, repo string, o ArtifactOptions) *Artifact {
	t.Helper()
	if o.Payload == nil {
		o.Payload = []byte(`{"artifact":"` + o.ArtifactType + `","nonce":"` + randomID() + `"}`)
	}
	if o.PayloadMediaType == "" {
		o.PayloadMediaType = "application/json"
	}
	repoRef, err := name.NewRepository(u.Host+"/"+repo, u.nameOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := static.NewLayer([]byte(emptyJSON), EmptyMediaType)
	payload := static.NewLayer(o.Payload, types.MediaType(o.PayloadMediaType))
	for _, l := range []v1.Layer{cfg, payload} {
		if err := remote.WriteLayer(repoRef, l, u.RemoteOptions()...); err != nil {
			t.Fatalf("seed artifact blob: %v", err)
		}
	}
	cd, _ := cfg.Digest()
	pd, _ := payload.Digest()
	layer := map[string]any{"mediaType": o.PayloadMediaType, "digest": pd.String(), "size": len(o.Payload)}
	if o.Title != "" {
		layer["annotations"] = map[string]string{"org.opencontainers.image.title": o.Title}
	}
	mf := map[string]any{
		"schemaVersion": 2,
		"mediaType":     string(types.OCIManifestSchema1),
		"artifactType":  o.ArtifactType,
		"config":        map[string]any{"mediaType": EmptyMediaType, "digest": cd.String(), "size": len(emptyJSON)},
		"layers":        []any{layer},
	}
	if o.Subject != nil {
		mf["subject"] = o.Subject
	}
	if len(o.Annotations) > 0 {
		mf["annotations"] = o.Annotations
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	ref := repoRef.Digest(d.String()).String()
	if o.Tag != "" {
		ref = repoRef.Tag(o.Tag).String()
	}
	r, err := name.ParseReference(ref, u.nameOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawManifest{raw: raw, mt: types.OCIManifestSchema1}, u.RemoteOptions()...); err != nil {
		t.Fatalf("seed artifact %s: %v", ref, err)
	}
	a := &Artifact{
		Repo: repo, Tag: o.Tag, Digest: d.String(), ArtifactType: o.ArtifactType, Manifest: raw,
		Layers: []Blob{{Digest: pd.String(), Size: int64(len(o.Payload)), MediaType: o.PayloadMediaType, Data: o.Payload}},
	}
	if o.Subject != nil {
		a.Subject = o.Subject.Digest.String()
	}
	return a
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// Descriptor is the descriptor of a seeded image (for subjects).
func (i *Image) Descriptor() *v1.Descriptor {
	h, _ := v1.NewHash(i.Digest)
	return &v1.Descriptor{MediaType: types.MediaType(i.MediaType), Digest: h, Size: int64(len(i.Manifest))}
}

// PushBlob uploads a blob into repo without any manifest referencing it.
func (u *Upstream) PushBlob(t testing.TB, repo string, data []byte) string {
	t.Helper()
	repoRef, err := name.NewRepository(u.Host+"/"+repo, u.nameOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	l := static.NewLayer(data, types.OCILayer)
	if err := remote.WriteLayer(repoRef, l, u.RemoteOptions()...); err != nil {
		t.Fatalf("seed blob: %v", err)
	}
	d, _ := l.Digest()
	return d.String()
}

// TagManifest points repo:tag at raw manifest bytes.
func (u *Upstream) TagManifest(t testing.TB, repo, tag string, raw []byte, mt string) {
	t.Helper()
	r, err := name.ParseReference(u.Ref(repo+":"+tag), u.nameOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawManifest{raw: raw, mt: types.MediaType(mt)}, u.RemoteOptions()...); err != nil {
		t.Fatalf("tag %s: %v", r, err)
	}
}
