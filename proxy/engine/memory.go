package engine

import (
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/verdict"
)

// memory is what the engine keeps in memory, each entry for a TTL: facts
// derived from content (parsed manifests by digest, evidence shapes, the
// subjects signed payloads name) and from the upstream (tags, presence),
// which do not go stale by any decision; and decisions and grants, which
// do. forget is the one path that drops decisions and grants.
type memory struct {
	verdicts *verdict.Cache[Verdict]
	// tags maps upstream/repo:tag to a resolved digest for the tag TTL.
	tags *verdict.Cache[tagRecord]
	// blobGrants maps revision|repository|blob to the allowed manifest (and
	// the layer descriptor) that lets the blob be served in that repository.
	blobGrants *verdict.Cache[BlobGrant]
	// linked remembers which (repository, manifest) reference links were
	// already persisted.
	linked *verdict.Cache[bool]
	// present remembers upstream/repository@digest manifests the upstream
	// was seen to serve in that repository (persisted under "present").
	present *verdict.Cache[bool]
	// manifests keeps verified, parsed manifests by digest.
	manifests *verdict.Cache[*Manifest]
	// evidenceShapes remembers blob digest|media type pairs that passed
	// the evidence check (a function of the bytes).
	evidenceShapes *verdict.Cache[bool]
	// evidenceGrants keeps, briefly, evidence grants grantFor confirmed
	// (re-deciding their artifacts on every request is costly).
	evidenceGrants *verdict.Cache[BlobGrant]
	// signedSubjects keeps, by evidence manifest digest, the digests its
	// signed payloads name (content-derived: never stale).
	signedSubjects *verdict.Cache[[]digest.Digest]
	// tensors holds MBOM tensor expectations by revision|repository|blob.
	tensors *verdict.Cache[*tensorExpectation]
}

// newMemory sizes the caches from cache.size (the verdict cache's size).
func newMemory(size int) memory {
	return memory{
		verdicts:       verdict.New[Verdict](size),
		tags:           verdict.New[tagRecord](size),
		blobGrants:     verdict.New[BlobGrant](size * 8),
		linked:         verdict.New[bool](size * 4),
		present:        verdict.New[bool](size * 4),
		tensors:        verdict.New[*tensorExpectation](size * 4),
		manifests:      verdict.New[*Manifest](4096),
		signedSubjects: verdict.New[[]digest.Digest](4096),
		evidenceGrants: verdict.New[BlobGrant](size),
		evidenceShapes: verdict.New[bool](size),
	}
}

// staleness is a change that makes remembered decisions stale.
type staleness int

const (
	// artifactDenied: a manifest was denied. An evidence grant confirmed
	// before may cover one of its blobs: evidence grants are confirmed
	// again.
	artifactDenied staleness = iota
	// findingRecorded: a blob failed inspection. Every manifest that
	// references it is denied from now on: cached verdicts and every
	// grant go.
	findingRecorded
	// signalsChanged: a signal provider answered from a new version or
	// database: decisions (and their grants) made on older answers go.
	signalsChanged
)

// forget drops what a change made stale.
func (m *memory) forget(why staleness) {
	switch why {
	case findingRecorded, signalsChanged:
		m.verdicts.Purge()
		m.blobGrants.Purge()
		m.evidenceGrants.Purge()
	case artifactDenied:
		m.evidenceGrants.Purge()
	}
}
