package release

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
)

// CheckFiles re-hashes, in fsys, every file a verified pullgate attestation
// recorded (prompts, corpus documents and configs, benchmark and results,
// routing configs, SLO profiles, MBOM files) and fails on any difference:
// the check behind "file edited after attestation". Paths are resolved
// against fsys as recorded (for an MBOM, relative to the model root).
func CheckFiles(a verify.Attestation, fsys fs.FS) Report {
	k, ok := attest.KindOf(a.PredicateType)
	rp := newReporter("files")
	if !ok {
		rp.fail(CodeTypeMismatch, "statement %s has predicate type %s, not a pullgate one", a.Statement, a.PredicateType)
		return rp.done()
	}
	p, err := attest.DecodePredicate(a.PredicateType, a.Predicate)
	if err != nil {
		rp.fail(CodeMalformed, "statement %s: %v", a.Statement, err)
		return rp.done()
	}
	files := RecordedFiles(p)
	bad := 0
	for _, f := range files {
		sum, n, err := hashFile(fsys, f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			rp.fail(CodeMissingFile, "%s %s: file %s is missing", k, a.Statement, f.Path)
			bad++
		case err != nil:
			rp.fail(CodeMissingFile, "%s %s: file %s cannot be read: %v", k, a.Statement, f.Path, err)
			bad++
		case sum != f.SHA256:
			rp.fail(CodeDigestMismatch, "%s %s: file %s has sha256:%s, the attestation records sha256:%s", k, a.Statement, f.Path, sum, f.SHA256)
			bad++
		case n != f.Size:
			rp.fail(CodeSizeMismatch, "%s %s: file %s has %d bytes, the attestation records %d", k, a.Statement, f.Path, n, f.Size)
			bad++
		}
	}
	if bad == 0 {
		rp.pass("%s %s: %d file(s) unchanged", k, a.Statement, len(files))
	}
	return rp.done()
}

// RecordedFiles lists every file a decoded pullgate predicate records.
func RecordedFiles(p any) []attest.File {
	var out []attest.File
	add := func(fs ...[]attest.File) {
		for _, l := range fs {
			out = append(out, l...)
		}
	}
	switch v := p.(type) {
	case *attest.PromptPredicate:
		add(v.SystemPrompts, v.Templates, v.ToolSchemas, v.SafetyPolicies)
	case *attest.CorpusPredicate:
		add(v.Documents, v.Manifests)
		if v.ChunkingConfig != nil {
			add([]attest.File{*v.ChunkingConfig})
		}
		if v.EmbeddingConfig != nil {
			add([]attest.File{*v.EmbeddingConfig})
		}
	case *attest.EvalPredicate:
		add(v.Benchmark, []attest.File{v.Results})
	case *attest.RoutePredicate:
		add(v.Configs)
	case *attest.SLOPredicate:
		add(v.Profiles)
	case *attest.MBOMPredicate:
		for _, f := range v.Files {
			out = append(out, attest.File{Path: f.Path, SHA256: f.SHA256, Size: f.Size})
		}
	}
	return out
}

func hashFile(fsys fs.FS, p string) (string, int64, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
