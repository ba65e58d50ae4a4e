package proxy

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/cache/records"
	"github.com/pullgate/pullgate/cache/verdict"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/engine"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/vsa"
)

// VSAs from the proxy (docs/vsa.md, "VSAs from the proxy"): with a vsa:
// section, every cold allowed manifest decision of a rule that verifies
// (engine.Options.OnAllowed: not would-deny, not waived, not evidence; a
// warm decision from the verdict cache never reaches it) is offered to a bounded signer that signs one VSA per (policy
// revision, repository, digest), off the request's goroutine, and records
// it (cache/records, families vsa and vsaobj). The referrers answer of an
// allowed digest lists the VSA of the revision in force; its manifest and
// bundle are served by digest from those records while the digest's
// decision still signsVSA, its empty config from code (serveVSAObject).
//
// These are pullgate's own artifacts: written by this code, signed with the
// VSA key, and served only from the records it wrote, only in the
// repository and under the revision they were signed for. Nothing an
// upstream sends is ever recorded or served as one (a digest names its
// bytes: an upstream manifest with a VSA's digest is those bytes).

// vsaQueue bounds the decisions waiting to be signed; one more is dropped
// (and signed at its next cold decision).
const vsaQueue = 256

// vsaDone bounds the (revision, repository, digest) triples remembered as
// signed, so that a warm allow never reaches the records.
const vsaDone = 1 << 16

// vsaRefresh is how old a recorded VSA may be before a cold decision of
// its artifact signs a new one (nodes check a maximum age, a week by
// default for pullgate vsa check).
const vsaRefresh = 24 * time.Hour

// vsaFallbackTags bounds the upstream referrers tag listings remembered
// (fallbackListing), as the engine bounds its parsed manifests.
const vsaFallbackTags = 4096

// fallbackListing is what an upstream answered for a sha256-<hex>
// referrers tag: the descriptors of its OCI index, something else than an
// index, or no such tag. It is the upstream's answer, not a decision: what
// of it is served is decided per request (eng.Servable).
type fallbackListing struct {
	descs    []ocispec.Descriptor
	index    bool
	notFound bool
}

type vsaJob struct {
	key        string
	rev        string
	upstream   string
	repo       string
	repository string // as policy names it (registry host and repository)
	subject    v1.Descriptor
	verdict    engine.Verdict
	at         time.Time
}

type vsaSigner struct {
	rec       *records.Records
	signer    crypto.Signer
	verifier  string
	version   string
	policyURI string
	log       *slog.Logger
	now       func() time.Time // the clock VSAs are signed and refreshed at
	signed    prometheus.Counter
	failed    prometheus.Counter

	jobs chan vsaJob
	mu   sync.Mutex
	busy map[string]bool          // queued or being signed
	done *verdict.Cache[struct{}] // signed, or found recorded
	// fallback keeps upstream/repo:tag → the upstream's referrers tag
	// listing for the upstream's tag TTL, as the engine keeps tags.
	fallback *verdict.Cache[fallbackListing]
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

// newVSASigner loads the VSA key (a start with a key that does not load
// fails) and starts the signer's worker.
func newVSASigner(cfg *config.Config, rec *records.Records, version string, now func() time.Time, reg prometheus.Registerer, log *slog.Logger) (*vsaSigner, error) {
	pw, err := cfg.VSAKeyPassword()
	if err != nil {
		return nil, err
	}
	key, err := vsa.LoadSigner(cfg.Resolve(cfg.VSA.Key), pw)
	if err != nil {
		return nil, fmt.Errorf("vsa.key: %w", err)
	}
	puri := cfg.VSA.PolicyURI
	if puri == "" {
		p, _ := filepath.Abs(cfg.Resolve(cfg.Policy))
		puri = (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
	}
	if version == "" {
		version = "dev"
	}
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	v := &vsaSigner{
		rec: rec, signer: key, verifier: cfg.VSA.VerifierID, version: version, policyURI: puri, log: log, now: now,
		signed: prometheus.NewCounter(prometheus.CounterOpts{Name: "pullgate_vsa_signed_total",
			Help: "VSAs the proxy signed (one per allowed policy revision, repository and digest)."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "pullgate_vsa_failed_total",
			Help: "VSAs the proxy could not sign or record, or dropped because the signer's queue was full (signed at the digest's next cold decision)."}),
		jobs:     make(chan vsaJob, vsaQueue),
		busy:     map[string]bool{},
		done:     verdict.New[struct{}](vsaDone),
		fallback: verdict.New[fallbackListing](vsaFallbackTags),
		stop:     cancel,
	}
	v.done.SetClock(now)
	v.fallback.SetClock(now)
	_ = reg.Register(v.signed)
	_ = reg.Register(v.failed)
	v.wg.Add(1)
	go v.run(ctx)
	return v, nil
}

func (v *vsaSigner) Close() error {
	v.stop()
	v.wg.Wait()
	return nil
}

// offer hands an allowed decision to the signer, without waiting: a
// triple signed (or queued) already costs one map look-up.
func (v *vsaSigner) offer(j vsaJob) {
	j.key = j.rev + "|" + j.upstream + "|" + j.repo + "|" + j.subject.Digest.String()
	if _, ok := v.done.Get(j.key); ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.busy[j.key] {
		return
	}
	select {
	case v.jobs <- j:
		v.busy[j.key] = true
	default:
		v.failed.Inc()
	}
}

func (v *vsaSigner) run(ctx context.Context) {
	defer v.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-v.jobs:
			signedAt, err := v.signGuarded(ctx, j)
			v.mu.Lock()
			delete(v.busy, j.key)
			v.mu.Unlock()
			if err != nil {
				v.failed.Inc()
				v.log.Warn("vsa: not signed", "repository", j.repository, "digest", j.subject.Digest.String(), "err", err)
				continue
			}
			// Done until the recorded VSA is vsaRefresh old (one found
			// recorded, e.g. before a restart, may be nearly that already).
			v.done.Add(j.key, struct{}{}, min(vsaRefresh, vsaRefresh-v.now().Sub(signedAt)))
		}
	}
}

// sign signs and records the VSA of one job, unless one recorded already
// (by this process before a restart, or another replica) is younger than
// vsaRefresh: a node checking a maximum age keeps finding a fresh one for
// an artifact still allowed, signed on a cold decision of it. It returns
// when the VSA in force (the one recorded, or signed now) was signed.
func (v *vsaSigner) sign(ctx context.Context, j vsaJob) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	subject := digest.Digest(j.subject.Digest.String())
	if r, err := v.rec.VSA(ctx, j.rev, j.upstream, j.repo, subject); err == nil && v.now().Sub(r.SignedAt) < vsaRefresh {
		return r.SignedAt, nil
	} else if err != nil && !errors.Is(err, records.ErrNotFound) {
		return time.Time{}, err
	}
	uri := "oci://" + j.repository + "@" + subject.String()
	sum := vsa.Summary{
		Subject:            subject,
		Verifier:           vsa.Verifier{ID: v.verifier, Version: map[string]string{vsa.VersionComponent: v.version}},
		TimeVerified:       j.at,
		ResourceURI:        uri,
		Policy:             vsa.ResourceDescriptor{URI: v.policyURI, Digest: vsa.DigestSet(digest.Digest(j.rev))},
		InputAttestations:  vsa.Inputs(j.repository, j.verdict.CountedEvidence()),
		VerificationResult: vsa.Passed,
		VerifiedLevels:     j.verdict.VerifiedLevels(false, nil),
	}
	stmt, err := vsa.Statement(sum)
	if err != nil {
		return time.Time{}, err
	}
	bundle, err := vsa.Sign(ctx, stmt, v.signer)
	if err != nil {
		return time.Time{}, err
	}
	now := v.now()
	man, err := attest.BundleManifest(j.subject, bundle, vsa.PredicateType, now)
	if err != nil {
		return time.Time{}, err
	}
	md := digest.FromBytes(man)
	// The empty config is no record: serveVSAObject serves it from code.
	for _, o := range []records.VSAObject{
		{MediaType: attest.BundleMediaType, Content: bundle},
		{MediaType: ocispec.MediaTypeImageManifest, Content: man},
	} {
		o.Revision, o.Subject = j.rev, subject
		if err := v.rec.PutVSAObject(ctx, j.upstream, j.repo, digest.FromBytes(o.Content), o); err != nil {
			return time.Time{}, err
		}
	}
	if err := v.rec.PutVSA(ctx, j.rev, j.upstream, j.repo, subject, records.VSA{Manifest: md, Size: int64(len(man)), SignedAt: now}); err != nil {
		return time.Time{}, err
	}
	v.signed.Inc()
	v.log.Info("vsa: signed", "repository", j.repository, "digest", subject.String(), "revision", j.rev, "vsa", md.String())
	return now, nil
}

// signsVSA reports whether an allowed manifest decision is one a VSA is
// signed for: allowed (not only in audit mode), not waived by an exception
// (a waived denial did not pass), not about a signature or attestation.
func signsVSA(v engine.Verdict) bool {
	return v.Allowed && !v.WouldDeny && len(v.Waivers) == 0 && !v.Evidence && !v.Fallback
}

// wholeDecision reports whether the manifest's decision under rule is all
// its VSA would claim: not under content rules (the layers are inspected
// only as they stream through, after the manifest's decision: a VSA then
// would say PASSED for bytes pullgate has not seen; pullgate promote
// inspects every byte first), and for an image index only when the rule
// decides its platform manifests as the index (no conditions, Rego or
// signals, which judge each platform manifest on its own).
func wholeDecision(r *policy.Rule, m *engine.Manifest) bool {
	if r == nil || r.Content != nil {
		return false
	}
	return !m.IsIndex() || (!r.ReadsArtifact() && len(r.SignalNames()) == 0)
}

// onAllowed is the engine's OnAllowed hook: it offers a cold allowed
// manifest decision that signsVSA to the signer.
func (v *vsaSigner) onAllowed(q *engine.Query, dgst digest.Digest, m *engine.Manifest, vd engine.Verdict) {
	if !signsVSA(vd) || !wholeDecision(q.Rule(), m) {
		return
	}
	h, err := v1.NewHash(dgst.String())
	if err != nil {
		return
	}
	sub := q.Subject()
	v.offer(vsaJob{
		rev: vd.Revision, upstream: sub.Upstream, repo: sub.Repo, repository: sub.Repository(),
		subject: v1.Descriptor{MediaType: types.MediaType(m.MediaType), Digest: h, Size: int64(len(m.Raw))},
		verdict: vd, at: v.now(),
	})
}

// vsaReferrer is the descriptor of the VSA signed for dgst in q's
// repository under the revision in force, when there is one and the
// artifactType filter (if any) admits it.
func (s *Server) vsaReferrer(q *request, dgst digest.Digest, artifactType string) (ocispec.Descriptor, bool) {
	if s.vsa == nil || artifactType != "" && artifactType != attest.BundleMediaType {
		return ocispec.Descriptor{}, false
	}
	r, err := s.vsa.rec.VSA(q.ctx(), q.q.Policy().Revision(), q.rt.Upstream, q.rt.Repo, dgst)
	if err != nil {
		if !errors.Is(err, records.ErrNotFound) {
			s.log.Warn("vsa: record unreadable", "repository", q.q.Subject().Repository(), "digest", dgst, "err", err)
		}
		return ocispec.Descriptor{}, false
	}
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest, ArtifactType: attest.BundleMediaType,
		Digest: r.Manifest, Size: r.Size,
		Annotations: map[string]string{
			attest.AnnotationBundleContent: "dsse-envelope",
			attest.AnnotationPredicateType: vsa.PredicateType,
			attest.AnnotationCreated:       r.SignedAt.UTC().Format(time.RFC3339),
		},
	}, true
}

// serveVSAObject answers a request by digest for an object of a VSA this
// proxy signed in q's repository under the revision in force (a manifest
// request only for its manifest, a blob request only for its blobs), and
// reports whether it did. It is asked only when the request would
// otherwise fail (not found, not allowed): the pull path never reaches it.
//
// A VSA's manifest and bundle are served only while its subject's current
// decision is one a VSA is signed for (signsVSA, as the referrers answer
// lists it): a subject denied or waived since, under the same revision,
// takes its VSA away. That decision is the verdict cache's (the one a pull
// of the subject would use); only an expired one is decided again.
//
// The config of every VSA manifest is the OCI empty descriptor ({}), the
// same two bytes for every VSA of every revision: it is served from code
// in any repository its rule does not deny, never from a record (one
// record shared by the VSAs of two revisions named only one of them, and
// refused the config of the other's still valid VSA).
func (s *Server) serveVSAObject(q *request, manifest bool) bool {
	if s.vsa == nil || q.rt.Digest == "" {
		return false
	}
	var o records.VSAObject
	if q.rt.Digest == emptyConfigDigest {
		if v, ok := q.q.RuleVerdict(); manifest || ok && !v.Allowed {
			return false
		}
		o = records.VSAObject{MediaType: attest.EmptyConfigMediaType, Content: attest.EmptyConfig}
	} else {
		var err error
		o, err = s.vsa.rec.VSAObject(q.ctx(), q.rt.Upstream, q.rt.Repo, q.rt.Digest)
		if err != nil || o.Revision != q.q.Policy().Revision() || (o.MediaType == ocispec.MediaTypeImageManifest) != manifest {
			return false
		}
		if sv, err := s.eng.SubjectVerdict(q.q, o.Subject); err != nil || !signsVSA(sv) {
			return false
		}
	}
	writeObject(q, o.MediaType, q.rt.Digest, o.Content)
	return true
}

// emptyConfigDigest is the digest of attest.EmptyConfig, every VSA
// manifest's config.
var emptyConfigDigest = digest.FromBytes(attest.EmptyConfig)

// signGuarded is sign on the signer's own goroutine, where a panic would
// end the process: it is a failed signature instead.
func (v *vsaSigner) signGuarded(ctx context.Context, j vsaJob) (signedAt time.Time, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic while signing: %v", r)
		}
	}()
	return v.sign(ctx, j)
}

// fallbackTagRE is the referrers tag schema's tag of a sha256 digest
// (cosign's legacy sha256-<hex>.sig and .att tags are not it).
var fallbackTagRE = regexp.MustCompile(`^sha256-([0-9a-f]{64})$`)

// serveVSAFallback answers a manifest request for the referrers tag
// sha256-<hex> (the OCI referrers tag schema, read by clients that do not
// use the referrers API) of a digest whose VSA the referrers answer lists
// (allowed in the repository, its decision signsVSA, a VSA recorded under
// the revision in force): an image index of pullgate's own, listing what
// the upstream's index under that tag lists that pullgate serves (as
// serveReferrers filters it, eng.Servable) and the VSA; when the upstream
// has no such tag, the VSA alone. The upstream's listing is asked once
// per tag TTL (fallbackListing); what of it is served, per request. It
// reports whether it answered. Any
// other request (another tag, a digest without a VSA, an upstream whose
// tag is no OCI index, an upstream that cannot be asked) is left to the
// ordinary manifest path, which serves the upstream's tag as before.
func (s *Server) serveVSAFallback(q *request) bool {
	if s.vsa == nil || q.rt.Digest != "" || !strings.HasPrefix(q.rt.Reference, "sha256-") {
		return false
	}
	mm := fallbackTagRE.FindStringSubmatch(q.rt.Reference)
	if mm == nil {
		return false
	}
	subject := digest.NewDigestFromEncoded(digest.SHA256, mm[1])
	// The record first: a digest without a VSA (any tag a client makes
	// up) costs one record read, no decision and no upstream request.
	vd, ok := s.vsaReferrer(q, subject, "")
	if !ok {
		return false
	}
	sv, err := s.eng.SubjectVerdict(q.q, subject)
	if err != nil || !signsVSA(sv) {
		return false
	}
	l, err := s.fallbackListing(q, subject)
	if err != nil || !l.notFound && !l.index {
		return false
	}
	descs := withVSA(s.eng.Servable(q.q, l.descs), vd)
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: descs}
	idx.SchemaVersion = 2
	body, err := json.Marshal(idx)
	if err != nil {
		return false
	}
	dgst := digest.FromBytes(body)
	s.record(q, "manifest", q.rt.Reference, dgst, engine.Verdict{
		Allowed: true, Rule: sv.Rule, Mode: sv.Mode, Revision: sv.Revision, ExitCode: policy.ExitAllowed, Evidence: true,
		Reasons: []string{fmt.Sprintf("rule %s: referrers tag of allowed %s, with pullgate's VSA of it", sv.Rule, subject)},
	}, false)
	writeObject(q, ocispec.MediaTypeImageIndex, dgst, body)
	return true
}

// fallbackListing is the upstream's listing of q's referrers tag (of
// subject): remembered for the upstream's tag TTL, as the engine's tag
// resolutions are (the ordinary path asks the upstream for a tag once per
// TTL, so does this one). A failed request is not remembered.
func (s *Server) fallbackListing(q *request, subject digest.Digest) (fallbackListing, error) {
	key := q.rt.Upstream + "/" + q.rt.Repo + ":" + q.rt.Reference
	if l, ok := s.vsa.fallback.Get(key); ok {
		return l, nil
	}
	descs, index, err := q.up.FallbackIndex(q.ctx(), q.rt.Repo, subject, int64(s.cfg.Limits.MaxManifestSize))
	l := fallbackListing{descs: descs, index: index}
	if upstream.IsKind(err, upstream.NotFound) {
		l = fallbackListing{notFound: true}
	} else if err != nil {
		return fallbackListing{}, err
	}
	if ucfg, ok := s.cfg.Upstream(q.rt.Upstream); ok {
		s.vsa.fallback.Add(key, l, ucfg.TagTTL.D())
	}
	return l, nil
}

// withVSA lists the VSA's descriptor after descs, unless they list it.
func withVSA(descs []ocispec.Descriptor, d ocispec.Descriptor) []ocispec.Descriptor {
	if slices.ContainsFunc(descs, func(x ocispec.Descriptor) bool { return x.Digest == d.Digest }) {
		return descs
	}
	return append(descs, d)
}
