package release

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/strictjson"
)

// OpenSSFPredicate is the OpenSSF model signing (OMS) v1.0 predicate
// (https://model_signing/signature/v1.0).
type OpenSSFPredicate struct {
	Resources     []OpenSSFResource    `json:"resources"`
	Serialization OpenSSFSerialization `json:"serialization"`
}

// OpenSSFResource is one file (or shard) of the signed model.
type OpenSSFResource struct {
	Name      string `json:"name"`
	Digest    string `json:"digest"`
	Algorithm string `json:"algorithm"`
}

// OpenSSFSerialization records how the model was enumerated and hashed.
type OpenSSFSerialization struct {
	Method        string   `json:"method"`
	HashType      string   `json:"hash_type"`
	ShardSize     *int64   `json:"shard_size,omitempty"`
	AllowSymlinks *bool    `json:"allow_symlinks,omitempty"`
	IgnorePaths   []string `json:"ignore_paths,omitempty"`
}

var digestLen = map[string]int{"sha256": 64, "sha384": 96, "sha512": 128, "blake2b": 128, "blake3": 64}

var hexLowerRE = regexp.MustCompile(`^[0-9a-f]+$`)

// ParseOpenSSFPredicate decodes and validates an OMS v1.0 predicate per the
// spec: at least one resource; names canonical relative paths, unique;
// digests lowercase hex of the algorithm's length; each algorithm equal to
// serialization.hash_type; method "files" (no shard_size) or "shards"
// (positive shard_size). Unknown fields in resources are ignored, as the
// spec requires; the predicate is read one way (strictjson: no repeated
// key, exact-case field names, valid UTF-8, nothing after it).
func ParseOpenSSFPredicate(raw []byte) (*OpenSSFPredicate, error) {
	if len(raw) > attest.MaxStatementSize {
		return nil, fmt.Errorf("predicate is larger than %d bytes", attest.MaxStatementSize)
	}
	var p OpenSSFPredicate
	if err := strictjson.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("predicate: %w", err)
	}
	s := p.Serialization
	if _, ok := digestLen[s.HashType]; !ok {
		return nil, fmt.Errorf("serialization.hash_type %q is not a known algorithm", s.HashType)
	}
	switch s.Method {
	case "files":
		if s.ShardSize != nil {
			return nil, errors.New("serialization.shard_size must be absent with method files")
		}
	case "shards":
		if s.ShardSize == nil || *s.ShardSize <= 0 {
			return nil, errors.New("serialization.shard_size must be a positive integer with method shards")
		}
	default:
		return nil, fmt.Errorf("serialization.method %q is not files or shards", s.Method)
	}
	for _, ip := range s.IgnorePaths {
		if ip == "" || len(ip) > 4096 {
			return nil, errors.New("serialization.ignore_paths holds an empty or oversized path")
		}
	}
	if len(p.Resources) == 0 {
		return nil, errors.New("resources: at least one resource is required")
	}
	seen := make(map[string]bool, len(p.Resources))
	for _, r := range p.Resources {
		name := r.Name
		if s.Method == "shards" {
			name = shardFile(r.Name)
		}
		if err := attest.CheckPath(name); err != nil {
			return nil, fmt.Errorf("resources: %w", err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("resources: duplicate name %q", r.Name)
		}
		seen[r.Name] = true
		if r.Algorithm != s.HashType {
			return nil, fmt.Errorf("resources: %s uses algorithm %q, serialization.hash_type is %q", r.Name, r.Algorithm, s.HashType)
		}
		if len(r.Digest) != digestLen[r.Algorithm] || !hexLowerRE.MatchString(r.Digest) {
			return nil, fmt.Errorf("resources: %s digest is not %d lowercase hex digits", r.Name, digestLen[r.Algorithm])
		}
	}
	return &p, nil
}

// shardFile strips the ":<start>:<end>" suffix of a shard resource name
// (the last two colon-separated components).
func shardFile(n string) string {
	i := strings.LastIndex(n, ":")
	if i < 0 {
		return n
	}
	j := strings.LastIndex(n[:i], ":")
	if j < 0 {
		return n
	}
	return n[:j]
}

// RootDigest computes the OMS root digest: SHA-256 over the raw bytes of the
// resource digests, in name order.
func (p *OpenSSFPredicate) RootDigest() string {
	rs := append([]OpenSSFResource(nil), p.Resources...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	h := sha256.New()
	for _, r := range rs {
		b, _ := hex.DecodeString(r.Digest)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// OpenSSFOptions shape CheckOpenSSF.
type OpenSSFOptions struct {
	// IgnoreUnsigned lets layers that no resource accounts for pass (the
	// OMS --ignore-unsigned-files option). Off by default, as in the spec.
	IgnoreUnsigned bool
}

var defaultIgnore = []string{".git", ".gitignore", ".gitattributes", ".github"}

func ignoredBy(paths []string) func(string) bool {
	all := append(append([]string{}, defaultIgnore...), paths...)
	return func(title string) bool {
		for _, p := range all {
			p = strings.TrimSuffix(p, "/")
			if title == p || strings.HasPrefix(title, p+"/") {
				return true
			}
		}
		return false
	}
}

// CheckOpenSSF checks every verified OMS attestation in atts against the
// served layers: per-file sha256 digests must equal the layer digests (file
// name ↔ org.opencontainers.image.title), no resource may be missing, no
// layer extra (unless IgnoreUnsigned), and the statement's subject must be
// the root digest of its resources. Only "files" serialization with sha256
// can be compared with OCI layers; other variants fail as unsupported. No
// OMS attestation is a failure.
func CheckOpenSSF(atts []verify.Attestation, layers []Layer, opts OpenSSFOptions) Report {
	rp := newReporter("openssf-model-signing")
	n := 0
	for i := range atts {
		a := &atts[i]
		if a.PredicateType != attest.OpenSSFModelSigningType {
			continue
		}
		n++
		checkOMS(rp, a, layers, opts)
	}
	if n == 0 {
		rp.fail(CodeNoEvidence, "no verified OpenSSF model signing attestation (%s)", attest.OpenSSFModelSigningType)
	}
	return rp.done()
}

func checkOMS(rp *reporter, a *verify.Attestation, layers []Layer, opts OpenSSFOptions) {
	id := a.Statement.String()
	if id == "" {
		id = string(a.Evidence)
	}
	p, err := ParseOpenSSFPredicate(a.Predicate)
	if err != nil {
		rp.fail(CodeMalformed, "statement %s: %v", id, err)
		return
	}
	if root := p.RootDigest(); len(a.Subjects) > 0 {
		if got := a.Subjects[0].Digest["sha256"]; got != root {
			rp.fail(CodeRootDigest, "statement %s: subject sha256 %q is not the root digest %s of its resources", id, got, root)
			return
		}
	}
	if p.Serialization.Method != "files" {
		rp.fail(CodeUnsupported, "statement %s: serialization method %q cannot be compared with OCI layers (one layer per file is needed)", id, p.Serialization.Method)
		return
	}
	if p.Serialization.HashType != "sha256" {
		rp.fail(CodeUnsupported, "statement %s: hash_type %s cannot be compared with OCI layer digests (sha256)", id, p.Serialization.HashType)
		return
	}
	byTitle, ok := indexLayers(rp, layers, ignoredBy(p.Serialization.IgnorePaths))
	if !ok {
		return
	}
	failed := false
	listed := map[string]bool{}
	for _, r := range p.Resources {
		listed[r.Name] = true
		l, ok := byTitle[r.Name]
		if !ok {
			rp.fail(CodeMissingFile, "file %s signed by %s is not served by any layer", r.Name, id)
			failed = true
			continue
		}
		if l.Digest != "sha256:"+r.Digest {
			rp.fail(CodeDigestMismatch, "file %s is served as %s, but %s signed sha256:%s", r.Name, l.Digest, id, r.Digest)
			failed = true
		}
	}
	if !opts.IgnoreUnsigned {
		var extra []string
		for t := range byTitle {
			if !listed[t] {
				extra = append(extra, t)
			}
		}
		sort.Strings(extra)
		for _, t := range extra {
			rp.fail(CodeExtraFile, "layer %s (%s) is not signed by %s", t, byTitle[t].Digest, id)
			failed = true
		}
	}
	if !failed {
		rp.pass("%d file(s) match the signed model manifest %s", len(p.Resources), id)
	}
}
