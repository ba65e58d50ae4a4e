package demo

import (
	"context"
	"crypto/ecdsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullgate/pullgate/verify/attest"
)

const (
	mtModelConfig = "application/vnd.cncf.model.config.v1+json"
	mtModelWeight = "application/vnd.cncf.model.weight.v1.raw"
	titleKey      = "org.opencontainers.image.title"
)

// attachProvenance signs a SLSA v1 provenance statement about digest with
// key (DSSE in a Sigstore bundle v0.3) and attaches it to repo as a referrer.
func attachProvenance(ctx context.Context, host, repo, digest string, key *ecdsa.PrivateKey) error {
	hexd := strings.TrimPrefix(digest, "sha256:")
	stmt, err := json.Marshal(attest.Statement{
		Type:          attest.StatementTypeV1,
		Subject:       []attest.Subject{{Name: repo, Digest: map[string]string{"sha256": hexd}}},
		PredicateType: "https://slsa.dev/provenance/v1",
		Predicate: map[string]any{
			"buildDefinition": map[string]any{"buildType": "https://ci.example/build/v1", "externalParameters": map[string]any{}},
			"runDetails":      map[string]any{"builder": map[string]any{"id": "https://ci.example/builder"}},
		},
	})
	if err != nil {
		return err
	}
	bundle, err := attest.Sign(ctx, stmt, attest.SignOptions{Signer: key})
	if err != nil {
		return err
	}
	_, err = attest.Push(ctx, host+"/"+repo+"@"+digest, [][]byte{bundle}, attest.PushOptions{Insecure: true})
	return err
}

// pushModel pushes a one-file ModelPack artifact.
func pushModel(ctx context.Context, host, repoTag, file string, data []byte) error {
	layer := static.NewLayer(data, mtModelWeight)
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, Annotations: map[string]string{titleKey: file}})
	if err != nil {
		return err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, mtModelConfig)
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, img, remote.WithContext(ctx))
}

type modelFile struct {
	name string
	data []byte
}

// fetchModel pulls a one-file model through the proxy and returns the file.
func fetchModel(ctx context.Context, host, repoTag string) (modelFile, error) {
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		return modelFile{}, err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return modelFile{}, ociMessage(err)
	}
	m, err := img.Manifest()
	if err != nil {
		return modelFile{}, ociMessage(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		return modelFile{}, fmt.Errorf("want one layer: %v", err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		return modelFile{}, ociMessage(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return modelFile{}, ociMessage(err)
	}
	return modelFile{name: m.Layers[0].Annotations[titleKey], data: b}, nil
}

func ociMessage(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return fmt.Errorf("HTTP %d %s: %s", te.StatusCode, te.Errors[0].Code, te.Errors[0].Message)
	}
	return err
}

// safetensorsAdapter is a small valid LoRA adapter in safetensors format.
func safetensorsAdapter() []byte {
	type tensor struct {
		DType   string `json:"dtype"`
		Shape   []int  `json:"shape"`
		Offsets [2]int `json:"data_offsets"`
	}
	header := map[string]any{
		"__metadata__": map[string]string{"format": "pt"},
		"base_model.model.layers.0.q_proj.lora_A.weight": tensor{"F32", []int{4, 16}, [2]int{0, 256}},
		"base_model.model.layers.0.q_proj.lora_B.weight": tensor{"F32", []int{16, 4}, [2]int{256, 512}},
	}
	h, _ := json.Marshal(header)
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h)+512)
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, make([]byte, 512)...)
}

// picklePayload is a pickle that calls os.system when loaded (what
// `pickle.dumps` of an object with a malicious __reduce__ produces).
func picklePayload() []byte {
	return []byte("\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x06echo 0\x94\x85\x94R\x94.")
}
