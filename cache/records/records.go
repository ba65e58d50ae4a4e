// Package records is pullgate's record store: every persistent fact the
// proxy keeps beside the content (which tag named which digest, where the
// upstream was seen to have a manifest, which manifests reference a blob,
// allowed verdicts, content findings and inspections), typed, over the
// metadata records of cache/store (PutMeta, GetMeta, ListMeta, MetaKey).
// The store is the same for every replica (a local directory, or the
// object store they share), so a fact written by one process is read by a
// restarted one or by another replica.
//
// This file is the layout: every key is spelled here, once, as
// distribution's registry/storage/paths.go keeps its layout in one file.
// Keys live under /meta of the store's driver; each segment is escaped by
// store.MetaKey (characters other than [A-Za-z0-9.-] become _XX, a
// repository "a/b" is two segments).
//
//	family     key                                                   value                               written by                                read by
//	---------  ----------------------------------------------------  ----------------------------------  ----------------------------------------  -------------------------------------------
//	tags       tags/<upstream>/<repo>/<tag>                          JSON Tag {digest,mediaType,         a tag resolved by the upstream            the offline grace: a tag served while the
//	                                                                 resolvedAt}                                                                    upstream is unreachable
//	present    present/<upstream>/<repo>/_manifests/<alg>/<hex>      JSON {digest,seenAt}                a manifest the upstream served (or        a cached manifest served in a repository
//	                                                                                                     resolved a tag to) in the repository      (and the blobs it grants) without asking
//	manifests  manifests/<alg>/<hex>                                 JSON ManifestMeta {mediaType}       a manifest stored                         a manifest read back from the store
//	links      links/<upstream>/<repo>/_blobs/<d>/<manifest d>       the manifest digest (alg:hex)       a manifest served: one per blob           a blob request: the manifests that
//	           links/<upstream>/<repo>/_parents/<d>/<index d>        the index digest (alg:hex)          an index served: one per child            reference it; a child's allowed parents
//	verdicts   verdicts/<rev>/<upstream>/<repo>/<d>                  the allowed verdict (JSON, opaque)  an allowed manifest decision              a decision whose evidence cannot be fetched
//	bad        bad/<rev>/<rule>/<d>/<scope>                          the finding (text)                  content inspection that found something   every decision of a manifest listing the
//	                                                                                                                                               blob, and the blob's own requests
//	inspected  inspected/<rev>/<rule>/<d>/<scope>/<class...>         "ok"                                content inspection that passed            a stored blob served without inspecting
//	                                                                                                                                               it again
//	vsa        vsa/<rev>/<upstream>/<repo>/<d>                       JSON VSA {manifest,size,signedAt}   the proxy's VSA signer, once per allowed  a referrers listing of d in the repository
//	                                                                                                     (revision, repository, digest)            (only the revision in force's)
//	vsaobj     vsaobj/<upstream>/<repo>/<d>                          JSON VSAObject {mediaType,revision,  the VSA signer: its manifest and bundle   a request by digest for one of them in the
//	                                                                 subject,content}                    (the empty config is a constant), before  repository (served only under <revision>)
//	                                                                                                     the vsa record
//
// <d> is a digest with its algorithm: a sha256 digest is spelled as its
// hex (the layout of every release so far, kept so that stores written
// before read the same), any other algorithm as <alg>-<hex> (sha512-9f...).
// Releases before this package spelled every algorithm as its bare hex:
// the readers whose loss could serve what was refused or refuse what was
// granted (findings, links) also read that spelling for a digest that is
// not sha256, so a finding recorded for a sha512 blob is never lost; the
// others (verdicts, inspections) only cost a new decision or inspection.
// <rev> is the policy revision without its "sha256:" prefix; <scope> is
// "format" for the format checks and an MBOM tensor expectation's id
// ("mbom-<id>") for those; <class> is content.Class.Key (a media type and a
// file name).
package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
)

// Meta is the metadata API of cache/store.Store.
type Meta interface {
	PutMeta(ctx context.Context, key string, value []byte) error
	GetMeta(ctx context.Context, key string) ([]byte, error)
	ListMeta(ctx context.Context, key string) ([]string, error)
}

// ErrNotFound is returned for a record the store does not hold.
var ErrNotFound = store.ErrNotFound

// Records reads and writes the records of one store. It is safe for
// concurrent use (as its Meta is) and holds no state of its own.
type Records struct{ m Meta }

// New returns the record store over m.
func New(m Meta) *Records { return &Records{m: m} }

// The key layout: every key of every family is built below and nowhere
// else, each by one store.MetaKey call over raw segments (MetaKey escapes,
// so a key is never passed to it again). Segments that are digests are
// the string arguments named d or target (see segment).

func tagKey(upstream, repo, tag string) string {
	return store.MetaKey("tags", upstream, repo, tag)
}

func presentKey(upstream, repo string, d digest.Digest) string {
	return store.MetaKey("present", upstream, repo, "_manifests", d.Algorithm().String(), d.Encoded())
}

func manifestKey(d digest.Digest) string {
	return store.MetaKey("manifests", d.Algorithm().String(), d.Encoded())
}

func linksKey(upstream, repo string, kind LinkKind, target string) string {
	return store.MetaKey("links", upstream, repo, string(kind), target)
}

func linkKey(upstream, repo string, kind LinkKind, target, manifest digest.Digest) string {
	return store.MetaKey("links", upstream, repo, string(kind), segment(target), segment(manifest))
}

func allowKey(rev, upstream, repo string, d digest.Digest) string {
	return store.MetaKey("verdicts", revision(rev), upstream, repo, segment(d))
}

func vsaKey(rev, upstream, repo string, d digest.Digest) string {
	return store.MetaKey("vsa", revision(rev), upstream, repo, segment(d))
}

func vsaObjectKey(upstream, repo string, d digest.Digest) string {
	return store.MetaKey("vsaobj", upstream, repo, segment(d))
}

func findingsKey(rev, rule, d string) string {
	return store.MetaKey("bad", revision(rev), rule, d)
}

func findingKey(rev, rule, d, scope string) string {
	return store.MetaKey("bad", revision(rev), rule, d, orFormat(scope))
}

func inspectedKey(rev, rule string, d digest.Digest, scope, class string) string {
	return store.MetaKey("inspected", revision(rev), rule, segment(d), orFormat(scope), class)
}

// segment spells a digest as one key segment, with its algorithm: the hex
// alone for sha256, <alg>-<hex> otherwise.
func segment(d digest.Digest) string {
	if d.Algorithm() == digest.SHA256 {
		return d.Encoded()
	}
	return d.Algorithm().String() + "-" + d.Encoded()
}

// legacySegment is how releases before this package spelled a digest that
// is not sha256 (its bare hex), "" for sha256 (spelled the same today).
func legacySegment(d digest.Digest) string {
	if d.Algorithm() == digest.SHA256 {
		return ""
	}
	return d.Encoded()
}

// parseSegment reads a digest spelled by segment, or by a release before
// it (a bare hex of another algorithm than sha256: told by its length).
func parseSegment(s string) (digest.Digest, bool) {
	if alg, enc, ok := strings.Cut(s, "-"); ok {
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
		return d, d.Validate() == nil
	}
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		if d := digest.NewDigestFromEncoded(alg, s); d.Validate() == nil {
			return d, true
		}
	}
	return "", false
}

func revision(rev string) string { return strings.TrimPrefix(rev, "sha256:") }

func orFormat(scope string) string {
	if scope == "" {
		return "format"
	}
	return scope
}

// Tag is what a tag resolved to.
type Tag struct {
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType"`
	ResolvedAt time.Time     `json:"resolvedAt"`
}

// PutTag records what a tag of a repository resolved to.
func (r *Records) PutTag(ctx context.Context, upstream, repo, tag string, t Tag) error {
	return r.put(ctx, tagKey(upstream, repo, tag), t)
}

// Tag reads a tag's last resolution: ErrNotFound when there is none, an
// error for a record that does not parse or names no valid digest.
func (r *Records) Tag(ctx context.Context, upstream, repo, tag string) (Tag, error) {
	var t Tag
	if err := r.get(ctx, tagKey(upstream, repo, tag), &t); err != nil {
		return Tag{}, err
	}
	if err := t.Digest.Validate(); err != nil {
		return Tag{}, fmt.Errorf("records: tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return t, nil
}

// presence is the record that the upstream had a manifest in a repository.
type presence struct {
	Digest digest.Digest `json:"digest"`
	SeenAt time.Time     `json:"seenAt"`
}

// PutPresent records that the upstream served (or resolved a tag to) d in
// repo at seenAt.
func (r *Records) PutPresent(ctx context.Context, upstream, repo string, d digest.Digest, seenAt time.Time) error {
	return r.put(ctx, presentKey(upstream, repo, d), presence{Digest: d, SeenAt: seenAt})
}

// Present reports whether the upstream was recorded to have d in repo (a
// record naming another digest is not one).
func (r *Records) Present(ctx context.Context, upstream, repo string, d digest.Digest) (bool, error) {
	var p presence
	if err := r.get(ctx, presentKey(upstream, repo, d), &p); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return p.Digest == d, nil
}

// ManifestMeta is what the store keeps beside a manifest's bytes.
type ManifestMeta struct {
	MediaType string `json:"mediaType"`
}

// PutManifestMeta records a stored manifest's metadata.
func (r *Records) PutManifestMeta(ctx context.Context, d digest.Digest, m ManifestMeta) error {
	return r.put(ctx, manifestKey(d), m)
}

// ManifestMeta reads a stored manifest's metadata.
func (r *Records) ManifestMeta(ctx context.Context, d digest.Digest) (ManifestMeta, error) {
	var m ManifestMeta
	err := r.get(ctx, manifestKey(d), &m)
	return m, err
}

// LinkKind is a kind of link from a manifest.
type LinkKind string

const (
	// Blobs links a blob (config or layer) to a manifest that lists it.
	Blobs LinkKind = "_blobs"
	// Parents links a child manifest to an index that lists it.
	Parents LinkKind = "_parents"
)

// PutLink records that manifest lists target (a blob, or a child manifest)
// in a repository of an upstream.
func (r *Records) PutLink(ctx context.Context, upstream, repo string, kind LinkKind, target, manifest digest.Digest) error {
	return r.m.PutMeta(ctx, linkKey(upstream, repo, kind, target, manifest), []byte(manifest.String()))
}

// Links lists the manifests recorded as listing target in a repository of
// an upstream (those written by releases before this package included). An
// error means the store could not say: it is not "none".
func (r *Records) Links(ctx context.Context, upstream, repo string, kind LinkKind, target digest.Digest) ([]digest.Digest, error) {
	segs := []string{segment(target)}
	if l := legacySegment(target); l != "" {
		segs = append(segs, l)
	}
	var out []digest.Digest
	for _, seg := range segs {
		names, err := r.m.ListMeta(ctx, linksKey(upstream, repo, kind, seg))
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if d, ok := parseSegment(n); ok && !contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

func contains(ds []digest.Digest, d digest.Digest) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// PutAllow records an allowed verdict on manifest d in a repository under
// a policy revision. The verdict is the caller's (JSON) bytes.
func (r *Records) PutAllow(ctx context.Context, rev, upstream, repo string, d digest.Digest, verdict []byte) error {
	return r.m.PutMeta(ctx, allowKey(rev, upstream, repo, d), verdict)
}

// Allow reads an allowed verdict recorded by PutAllow (ErrNotFound when
// there is none).
func (r *Records) Allow(ctx context.Context, rev, upstream, repo string, d digest.Digest) ([]byte, error) {
	return r.m.GetMeta(ctx, allowKey(rev, upstream, repo, d))
}

// PutFinding records a content finding on blob d under a rule of a policy
// revision, in a scope ("" for the format checks, an MBOM tensor
// expectation id).
func (r *Records) PutFinding(ctx context.Context, rev, rule string, d digest.Digest, scope, finding string) error {
	return r.m.PutMeta(ctx, findingKey(rev, rule, segment(d), scope), []byte(finding))
}

// Finding reads the finding recorded for blob d in a scope: ok is false
// when there is none; an error means the store could not say (which is
// neither "none" nor a finding).
func (r *Records) Finding(ctx context.Context, rev, rule string, d digest.Digest, scope string) (finding string, ok bool, err error) {
	for _, seg := range findingSegments(d) {
		b, err := r.m.GetMeta(ctx, findingKey(rev, rule, seg, scope))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return "", false, err
		}
		return string(b), true, nil
	}
	return "", false, nil
}

// AnyFinding reports whether blob d has a finding recorded in any scope
// under a rule of a policy revision.
func (r *Records) AnyFinding(ctx context.Context, rev, rule string, d digest.Digest) (bool, error) {
	for _, seg := range findingSegments(d) {
		names, err := r.m.ListMeta(ctx, findingsKey(rev, rule, seg))
		if err != nil {
			return false, err
		}
		if len(names) > 0 {
			return true, nil
		}
	}
	return false, nil
}

func findingSegments(d digest.Digest) []string {
	if l := legacySegment(d); l != "" {
		return []string{segment(d), l}
	}
	return []string{segment(d)}
}

// inspectedUnknown is the record value of a pass whose format the inspector
// did not name (and of every record written before formats were).
const inspectedUnknown = "ok"

// PutInspected records that blob d passed inspection as class (a
// content.Class key) in a scope under a rule of a policy revision, and the
// format the inspector recognised ("" when it named none).
func (r *Records) PutInspected(ctx context.Context, rev, rule string, d digest.Digest, scope, class, format string) error {
	v := format
	if v == "" {
		v = inspectedUnknown
	}
	return r.m.PutMeta(ctx, inspectedKey(rev, rule, d, scope, class), []byte(v))
}

// InspectedFormat is the format PutInspected recorded for blob d inspected
// as class in a scope: ok is false when there is no such record, format ""
// when the record names none.
func (r *Records) InspectedFormat(ctx context.Context, rev, rule string, d digest.Digest, scope, class string) (format string, ok bool, err error) {
	b, err := r.m.GetMeta(ctx, inspectedKey(rev, rule, d, scope, class))
	switch {
	case errors.Is(err, ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", false, err
	case string(b) == inspectedUnknown:
		return "", true, nil
	}
	return string(b), true, nil
}

// Inspected reports whether PutInspected recorded blob d as inspected as
// class in a scope (an unreadable record is an error).
func (r *Records) Inspected(ctx context.Context, rev, rule string, d digest.Digest, scope, class string) (bool, error) {
	_, ok, err := r.InspectedFormat(ctx, rev, rule, d, scope, class)
	return ok, err
}

func (r *Records) put(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.m.PutMeta(ctx, key, b)
}

func (r *Records) get(ctx context.Context, key string, v any) error {
	b, err := r.m.GetMeta(ctx, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("records: %s: %w", key, err)
	}
	return nil
}

// VSA is the verification summary the proxy signed for a digest in a
// repository under a policy revision: its referrer manifest.
type VSA struct {
	Manifest digest.Digest `json:"manifest"`
	Size     int64         `json:"size"`
	SignedAt time.Time     `json:"signedAt"`
}

// VSAObject is one of the objects of a VSA the proxy signed (the referrer
// manifest, the bundle; stores written before also hold the empty config,
// which is no longer read), served by digest in the
// repository only while Revision is in force. Content is small (a bundle
// is at most a few KiB): it is kept here, beside the fact, rather than in
// the content store, whose size limit evicts cached content.
type VSAObject struct {
	MediaType string        `json:"mediaType"`
	Revision  string        `json:"revision"`
	Subject   digest.Digest `json:"subject"`
	Content   []byte        `json:"content"`
}

// PutVSA records the VSA signed for d in a repository under rev. Write its
// objects (PutVSAObject) first: this record is what offers them.
func (r *Records) PutVSA(ctx context.Context, rev, upstream, repo string, d digest.Digest, v VSA) error {
	return r.put(ctx, vsaKey(rev, upstream, repo, d), v)
}

// VSA reads the VSA recorded for d in a repository under rev (ErrNotFound
// when none was signed; an error for a record naming no valid digest).
func (r *Records) VSA(ctx context.Context, rev, upstream, repo string, d digest.Digest) (VSA, error) {
	var v VSA
	if err := r.get(ctx, vsaKey(rev, upstream, repo, d), &v); err != nil {
		return VSA{}, err
	}
	if err := v.Manifest.Validate(); err != nil {
		return VSA{}, fmt.Errorf("records: vsa of %s/%s@%s: %w", upstream, repo, d, err)
	}
	return v, nil
}

// PutVSAObject records an object of a VSA, d its digest.
func (r *Records) PutVSAObject(ctx context.Context, upstream, repo string, d digest.Digest, o VSAObject) error {
	return r.put(ctx, vsaObjectKey(upstream, repo, d), o)
}

// VSAObject reads the VSA object d of a repository: ErrNotFound when there
// is none, an error when the record's content does not hash to d.
func (r *Records) VSAObject(ctx context.Context, upstream, repo string, d digest.Digest) (VSAObject, error) {
	var o VSAObject
	if err := r.get(ctx, vsaObjectKey(upstream, repo, d), &o); err != nil {
		return VSAObject{}, err
	}
	if d.Validate() != nil || d.Algorithm().FromBytes(o.Content) != d {
		return VSAObject{}, fmt.Errorf("records: vsa object %s/%s@%s: content does not match its digest", upstream, repo, d)
	}
	return o, nil
}
