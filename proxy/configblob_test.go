package proxy_test

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
)

// mediaTypesPolicy allows only ModelPack media types (layers and configs).
const mediaTypesPolicy = `rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack]
`

// Under a media type allowlist, the config blob of an allowed artifact is
// served: docker, containerd and crane fetch it, and it was judged by the
// rule's config types when the manifest was decided. (It was inspected as
// a layer and refused, and the refusal then denied the whole artifact.)
// A layer that claims a config media type stays refused: the role of each
// descriptor is decided with its manifest.
func TestConfigBlobUnderMediaTypeAllowlist(t *testing.T) {
	e := startWith(t, nil, mediaTypesPolicy)
	const repo = "models/cfg"
	readme := ivPushBlob(t, e.up.Host, repo, []byte("# A model\n"), docRaw)
	declModel(t, e, repo+":v1", named(readme, docRaw, titleKey, "README.md"))
	config := digest.FromBytes([]byte(fmt.Sprintf(`{"tag":%q}`, repo+":v1"))) // as declModel writes it
	e.want(t, repo+"/manifests/v1", 200, "")
	e.want(t, repo+"/blobs/"+config.String(), 200, "")
	e.want(t, repo+"/blobs/"+readme.Digest.String(), 200, "")
	e.want(t, repo+"/manifests/v1", 200, "")

	// A layer typed as a config: the manifest is denied, its blob too.
	other := ivPushBlob(t, e.up.Host, repo, []byte(`{"not":"a layer"}`), modelConfig)
	declModel(t, e, repo+":bad", named(other, modelConfig, titleKey, "weights.json"))
	e.want(t, repo+"/manifests/bad", 403, "not allowed")
	e.want(t, repo+"/blobs/"+other.Digest.String(), 403, "")
}
