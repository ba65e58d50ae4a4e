package engine

import (
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/cache/verified"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// timeDependentTTL bounds how long a decision of a rule whose conditions
// read the clock (now) is reused: it can change without a policy change
// (an image ages past "built within N days"), so it is decided again at
// least this often, whatever cache.allowTTL says.
const timeDependentTTL = 5 * time.Minute

// verdictTTL is how long a decision of rule is cached in memory.
func (s *Engine) verdictTTL(rule *policy.Rule, v Verdict) time.Duration {
	ttl := s.ttl(v)
	if rule.TimeDependent() && ttl > timeDependentTTL {
		ttl = timeDependentTTL
	}
	return ttl
}

// grantTTL is how long a grant made on an allowed decision of rule is
// held: no longer than the decision itself (timeDependentTTL for a rule
// whose conditions read now), so that no blob outlives the allow of the
// manifest that lists it.
func (s *Engine) grantTTL(rule *policy.Rule) time.Duration {
	ttl := s.verdictTTL(rule, Verdict{Allowed: true})
	if st := s.signalGrantTTL(rule); st > 0 && st < ttl {
		ttl = st
	}
	return ttl
}

// artifactFacts adds to in what the artifact itself says, for a rule's
// require.conditions: the manifest, and the config blob it names (an image
// or model configuration) read from the store or the upstream, verified
// against its digest and size-capped. A config that cannot be fetched or
// read is a failed check (the decision denies with why), never a panic.
func (s *Engine) artifactFacts(q *Query, dgst digest.Digest, m *Manifest, in *policy.Input) {
	sub := policy.ArtifactSubject{Upstream: q.sub.Upstream, Repository: q.repository(), Digest: dgst}
	var (
		ct, body = "", []byte(nil)
		cd       digest.Digest
	)
	if c := m.Config; !m.IsIndex() && c != nil {
		ct = c.MediaType // read only when ArtifactConfigType says so ("" is read)
	}
	if c := m.Config; !m.IsIndex() && c != nil && policy.ArtifactConfigType(c.MediaType) {
		cd = c.Digest
		var err error
		switch {
		case c.Size > policy.MaxArtifactConfigBytes:
			err = fmt.Errorf("config %s: %d bytes exceeds the limit of %d", c.Digest, c.Size, policy.MaxArtifactConfigBytes)
		default:
			body, err = s.smallBlob(q, *c, policy.MaxArtifactConfigBytes)
		}
		if err != nil {
			code := policy.ExitOther
			if upstream.IsKind(err, upstream.Invalid) {
				code = policy.ExitUnmet
			}
			in.Checks = append(in.Checks, policy.Check{Name: policy.CheckArtifact, ExitCode: code,
				Detail: fmt.Sprintf("config %s could not be read: %v", c.Digest, err)})
			return
		}
	}
	a, err := policy.ReadArtifact(sub, m.Raw, m.IsIndex(), ct, cd, body)
	if err != nil {
		in.Checks = append(in.Checks, policy.Check{Name: policy.CheckArtifact, ExitCode: policy.ExitUnmet, Detail: err.Error()})
		return
	}
	in.Artifact = a
}

// smallBlob reads a small blob the manifest names from the store or the
// upstream, checked against its digest and at most limit bytes.
func (s *Engine) smallBlob(q *Query, l ocispec.Descriptor, limit int64) ([]byte, error) {
	if rc, err := s.store.Reader(q.ctx(), l.Digest, 0); err == nil {
		b, rerr := verified.ReadAll(rc, l.Digest, limit)
		rc.Close()
		if rerr == nil {
			return b, nil
		}
	}
	return q.up.BlobBytes(q.ctx(), q.sub.Repo, l.Digest, limit)
}

// conditionFailed reports a verdict denied (also) by a false or failing
// condition or Rego rule, or by a required signal: what the artifact, its
// evidence and the providers say now, which no earlier allow may override
// (the offline fallback).
func conditionFailed(v Verdict) bool {
	for _, c := range v.Checks {
		if (c.Name == policy.CheckCondition || c.Name == policy.CheckArtifact || c.Name == policy.CheckRego || c.Name == policy.CheckSignal) && !c.Passed {
			return true
		}
	}
	return false
}
