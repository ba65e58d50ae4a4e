package policy

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// FuzzReadArtifact: any manifest and config bytes give an Artifact or an
// error, never a panic, and a read Artifact's document evaluates.
func FuzzReadArtifact(f *testing.F) {
	f.Add(MediaTypeOCIConfig, []byte(`{"schemaVersion":2,"annotations":{"a":"b"}}`), []byte(`{"created":"2026-01-01T00:00:00Z","config":{"User":"1","Env":["A=1","B"],"Labels":{"x":"y"},"ExposedPorts":{"80/tcp":{}}},"history":[{"created_by":"x"}]}`))
	f.Add(MediaTypeModelPackConfig, []byte(`{}`), []byte(`{"descriptor":{"licenses":["MIT"],"createdAt":"2026-01-01T00:00:00Z"},"config":{"paramSize":"8b"}}`))
	f.Add(MediaTypeDockerAIConfig, []byte(`{}`), []byte(`{"descriptor":{},"config":{"format":"gguf","gguf":{"architecture":"llama"}}}`))
	f.Add(MediaTypeDockerConfig, []byte(`{"annotations":null}`), []byte(`{"config":{"User":"1","user":"0"}}`))
	f.Add(MediaTypeOCIConfig, []byte(`[]`), []byte(`null`))
	f.Add("application/octet-stream", []byte(`{}`), []byte(`{"config":{"User":"00:00","Env":["X"]}}`))
	f.Add("", []byte(`{}`), []byte(`<html></html>`))
	f.Fuzz(func(t *testing.T, typ string, manifest, config []byte) {
		a, err := ReadArtifact(ArtifactSubject{}, manifest, false, typ, digest.FromBytes(config), config)
		if err != nil {
			if a != nil {
				t.Fatal("artifact with an error")
			}
			return
		}
		if a.Annotations == nil {
			t.Fatal("nil annotations")
		}
		_ = a.Document(time.Unix(0, 0))
	})
}
