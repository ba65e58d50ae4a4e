package verify

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"

	"github.com/pullgate/pullgate/cache/verified"
	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/dsse"
	"github.com/pullgate/pullgate/verify/intoto"
)

// Evidence sources recorded in Signature.Source, Attestation.Source and
// Failure.Source.
const (
	SourceCosignSignature   = "cosign-signature"   // legacy sha256-<hex>.sig
	SourceCosignAttestation = "cosign-attestation" // legacy sha256-<hex>.att
	SourceBundleReferrer    = "bundle-referrer"    // sigstore bundle v0.3 referrer
	SourceSubject           = "subject"            // the request itself
	SourceFile              = "file"               // a bundle given as a local file (VerifyBundle)
)

// VerifyOptions say what, beyond a valid signature by configured trust, every
// piece of evidence must carry. Everything is checked offline against the
// trusted root.
type VerifyOptions struct {
	// RequireTlog requires a Rekor entry (inclusion promise or proof) from a
	// log in the trusted root, for key-based and keyless evidence alike.
	RequireTlog bool
	// RequireTimestamp requires an RFC 3161 timestamp from a timestamp
	// authority in the trusted root.
	RequireTimestamp bool
	// RequireSCT requires Fulcio certificates to carry a verified signed
	// certificate timestamp from a CT log in the trusted root (keyless).
	RequireSCT bool
}

// CollectOptions bound and shape one Collect call.
type CollectOptions struct {
	VerifyOptions
	// MaxEvidence bounds the pieces of evidence examined per source (layers
	// of a .sig/.att manifest, referrers). Default 64.
	MaxEvidence int
	// MaxBlobSize bounds one evidence blob. Default 8 MiB.
	MaxBlobSize int64
	// DetachedSubjectTypes are predicate types whose statements name
	// content by other means than the decided digest (OpenSSF model signing
	// names the root digest of the model's files). Such statements, when
	// attached to the subject and signed by configured trust, are returned
	// with DetachedSubject set; the caller must bind them to what it serves
	// (verify/release.CheckOpenSSF compares their per-file digests with the
	// layers) before they count.
	DetachedSubjectTypes []string
}

const (
	defaultMaxEvidence = 64
	defaultMaxBlobSize = 8 << 20
	maxManifestSize    = 4 << 20
)

// Collect discovers and verifies all evidence about subject that f can see:
// cosign legacy signatures (.sig) and attestations (.att), sigstore bundle
// referrers (cosign v3, cosign v2 --new-bundle-format), and cosign's legacy
// layers attached as OCI 1.1 referrers, key-based and keyless. Only evidence
// verified against trust lands in Signatures/Attestations; everything else
// found is a Failure with a precise kind. Collect never returns an error:
// a fetch problem is a FailFetch failure, which can never count as evidence.
//
// Collect is per digest: for a multi-arch image the caller decides whether
// the index digest, the child digest, or both must carry evidence.
func Collect(ctx context.Context, f Fetcher, subject digest.Digest, trust *Trust, opts CollectOptions) Result {
	c, res := newCollector(ctx, f, subject, trust, opts)
	if c == nil {
		return *res
	}
	// The three sources are independent: fetch and verify them at once, and
	// merge in a fixed order so the result is deterministic.
	c.parallel(3, func(i int, sub *collector) {
		switch i {
		case 0:
			sub.legacy("sig", SourceCosignSignature, cosign.SimpleSigningMediaType, (*collector).legacySignature)
		case 1:
			sub.legacy("att", SourceCosignAttestation, cosign.DSSEMediaType, (*collector).legacyAttestation)
		case 2:
			sub.referrers()
		}
	})
	return *res
}

// newCollector validates subject and fills in the defaults; a nil collector
// means the result already says why there is nothing to collect.
func newCollector(ctx context.Context, f Fetcher, subject digest.Digest, trust *Trust, opts CollectOptions) (*collector, *Result) {
	res := &Result{Subject: subject, Signatures: []Signature{}, Attestations: []Attestation{}, Failures: []Failure{}}
	if err := subject.Validate(); err != nil {
		res.Failures = append(res.Failures, Failure{Kind: FailMalformed, Source: SourceSubject, Reason: fmt.Sprintf("invalid subject digest %q: %v", clip(subject.String()), err)})
		return nil, res
	}
	if trust == nil {
		trust = &Trust{}
	}
	if opts.MaxEvidence <= 0 {
		opts.MaxEvidence = defaultMaxEvidence
	}
	if opts.MaxBlobSize <= 0 {
		opts.MaxBlobSize = defaultMaxBlobSize
	}
	return &collector{ctx: ctx, f: f, subject: subject, trust: trust, opts: opts, res: res}, res
}

// VerifyBundle verifies one Sigstore bundle held locally (a file) about
// subject against trust, exactly as Collect verifies a bundle it finds as
// a referrer: only a bundle signed by configured trust whose statement (or
// message signature) names subject yields signatures or attestations;
// anything else is a failure with its kind.
func VerifyBundle(ctx context.Context, blob []byte, subject digest.Digest, trust *Trust, opts CollectOptions) Result {
	c, res := newCollector(ctx, nil, subject, trust, opts)
	if c == nil {
		return *res
	}
	ev := digest.FromBytes(blob)
	res.Found = 1
	if int64(len(blob)) > c.opts.MaxBlobSize {
		c.fail(FailMalformed, SourceFile, ev, "bundle of %d bytes exceeds the limit of %d", len(blob), c.opts.MaxBlobSize)
		return *res
	}
	c.bundle(SourceFile, ev, blob)
	return *res
}

// maxParallel bounds concurrent evidence fetches and verifications per
// source within one Collect.
const maxParallel = 8

// parallel runs fn(i) for i in [0,n) on forks of c (each with its own
// result), at most maxParallel at a time, then merges the forks into c in
// index order.
func (c *collector) parallel(n int, fn func(i int, sub *collector)) {
	subs := make([]*collector, n)
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sub := *c
		sub.res = &Result{}
		subs[i] = &sub
		if n == 1 {
			guarded(fn, 0, subs[0])
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			guarded(fn, i, subs[i])
		}(i)
	}
	wg.Wait()
	for _, sub := range subs {
		c.res.Found += sub.res.Found
		c.res.Signatures = append(c.res.Signatures, sub.res.Signatures...)
		c.res.Attestations = append(c.res.Attestations, sub.res.Attestations...)
		c.res.Failures = append(c.res.Failures, sub.res.Failures...)
	}
}

// guarded runs fn and turns a panic (a bug in a parser or in a library fed
// hostile bytes) into a failure: it must neither crash the proxy, whose
// HTTP recovery does not cover these goroutines, nor count as evidence.
func guarded(fn func(int, *collector), i int, sub *collector) {
	defer func() {
		if r := recover(); r != nil {
			if sub.res.Found == 0 {
				sub.res.Found = 1
			}
			sub.fail(FailMalformed, SourceSubject, "", "internal error while verifying evidence: %v", r)
		}
	}()
	fn(i, sub)
}

type collector struct {
	ctx     context.Context
	f       Fetcher
	subject digest.Digest
	trust   *Trust
	opts    CollectOptions
	res     *Result
}

func (c *collector) fail(kind FailureKind, source string, ev digest.Digest, format string, args ...any) {
	c.res.Failures = append(c.res.Failures, Failure{Kind: kind, Source: source, Evidence: ev, Reason: fmt.Sprintf(format, args...)})
}

// manifestLayers is the part of an image manifest evidence lives in.
type manifestLayers struct {
	MediaType    string               `json:"mediaType"`
	ArtifactType string               `json:"artifactType"`
	Config       ocispec.Descriptor   `json:"config"`
	Layers       []ocispec.Descriptor `json:"layers"`
	Subject      *ocispec.Descriptor  `json:"subject"`
	Annotations  map[string]string    `json:"annotations"`
}

func parseManifest(body []byte) (*manifestLayers, error) {
	if len(body) > maxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes exceeds the %d byte limit", len(body), maxManifestSize)
	}
	var m manifestLayers
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %v", err)
	}
	switch m.MediaType {
	case ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json", "":
	default:
		return nil, fmt.Errorf("unexpected manifest media type %q", clip(m.MediaType))
	}
	return &m, nil
}

type layerHandler func(c *collector, source string, layer ocispec.Descriptor, blob []byte)

// legacy reads the cosign tag sha256-<hex>.<suffix> and hands every layer of
// the wanted media type to handle.
func (c *collector) legacy(suffix, source, mediaType string, handle layerHandler) {
	tag := cosign.TagFor(c.subject, suffix)
	body, _, mdgst, err := c.f.Manifest(c.ctx, tag)
	if err != nil {
		if IsNotFound(err) {
			return
		}
		c.fail(FailFetch, source, "", "fetch %s: %v", tag, err)
		return
	}
	m, err := parseManifest(body)
	if err != nil {
		c.res.Found++
		c.fail(FailMalformed, source, mdgst, "%s: %v", tag, err)
		return
	}
	if len(m.Layers) == 0 {
		c.res.Found++
		c.fail(FailMalformed, source, mdgst, "%s has no layers", tag)
		return
	}
	layers := m.Layers
	if len(layers) > c.opts.MaxEvidence {
		layers = layers[:c.opts.MaxEvidence]
	}
	c.parallel(len(layers), func(i int, sub *collector) {
		l := layers[i]
		sub.res.Found++
		if err := sub.ctx.Err(); err != nil {
			sub.fail(FailFetch, source, l.Digest, "%s: %v", tag, err)
			return
		}
		if l.MediaType != mediaType {
			sub.fail(FailMalformed, source, l.Digest, "%s layer %d has media type %q, want %q", tag, i, clip(l.MediaType), mediaType)
			return
		}
		blob, ok := sub.blob(source, l)
		if !ok {
			return
		}
		handle(sub, source, l, blob)
	})
	if len(m.Layers) > len(layers) {
		c.fail(FailMalformed, source, mdgst, "%s has %d layers; only the first %d were examined", tag, len(m.Layers), c.opts.MaxEvidence)
	}
}

func (c *collector) blob(source string, l ocispec.Descriptor) ([]byte, bool) {
	if err := l.Digest.Validate(); err != nil {
		c.fail(FailMalformed, source, "", "layer digest %q is invalid: %v", clip(l.Digest.String()), err)
		return nil, false
	}
	if l.Size < 0 || l.Size > c.opts.MaxBlobSize {
		c.fail(FailMalformed, source, l.Digest, "evidence blob size %d is outside 0..%d", l.Size, c.opts.MaxBlobSize)
		return nil, false
	}
	blob, err := c.f.Blob(c.ctx, l.Digest, c.opts.MaxBlobSize)
	if err != nil {
		c.fail(FailFetch, source, l.Digest, "fetch evidence blob: %v", err)
		return nil, false
	}
	if verified.Check(l.Digest, blob) != nil {
		// Fetchers must verify; check anyway, this is the security boundary.
		c.fail(FailFetch, source, l.Digest, "evidence blob does not match its digest")
		return nil, false
	}
	return blob, true
}

// legacySignature verifies one simple-signing layer of a .sig manifest.
func (c *collector) legacySignature(source string, l ocispec.Descriptor, blob []byte) {
	sig, err := cosign.DecodeSignatureAnnotation(l.Annotations[cosign.SignatureAnnotation])
	if err != nil {
		c.fail(FailMalformed, source, l.Digest, "%v", err)
		return
	}
	ss, err := cosign.ParseSimpleSigning(blob)
	if err != nil {
		c.fail(FailMalformed, source, l.Digest, "%v", err)
		return
	}
	ev, err := legacyEvidence(l.Annotations)
	if err != nil {
		c.fail(FailMalformed, source, l.Digest, "%v", err)
		return
	}
	ev.message, ev.sig = blob, sig
	out := c.verify(ev)
	if out.fail != nil {
		c.fail(out.fail.kind, source, l.Digest, "%s", out.fail.reason)
		return
	}
	if ss.ManifestDigest != c.subject {
		c.fail(FailMismatch, source, l.Digest, "signature is for %s, not %s (signed by %s)", ss.ManifestDigest, c.subject, out.names())
		return
	}
	for _, s := range out.signers {
		c.res.Signatures = append(c.res.Signatures, Signature{Signer: s.name, Identity: s.identity, Subject: c.subject, Source: source, Evidence: l.Digest, SignedAt: out.signedAt})
	}
}

// legacyAttestation verifies one DSSE layer of an .att manifest.
func (c *collector) legacyAttestation(source string, l ocispec.Descriptor, blob []byte) {
	env, st, ok := c.parseEnvelope(source, l.Digest, blob)
	if !ok {
		return
	}
	ev, err := legacyEvidence(l.Annotations)
	if err != nil {
		c.fail(FailMalformed, source, l.Digest, "%v", err)
		return
	}
	ev.env = env
	ev.tsData = blob // cosign v2 timestamps an attestation's whole envelope
	out := c.verify(ev)
	if out.fail != nil {
		c.fail(out.fail.kind, source, l.Digest, "%s", out.fail.reason)
		return
	}
	c.statement(source, l.Digest, env, st, out)
}

// parseEnvelope parses a DSSE envelope holding an in-toto statement.
func (c *collector) parseEnvelope(source string, ev digest.Digest, blob []byte) (*dsse.Envelope, *intoto.Statement, bool) {
	env, st, err := intoto.ParseEnvelope(blob)
	if err != nil {
		c.fail(FailMalformed, source, ev, "%v", err)
		return nil, nil, false
	}
	return env, st, true
}

// statement records a verified statement: an attestation, or a signature
// when it is cosign's signature predicate. The subject must match.
func (c *collector) statement(source string, ev digest.Digest, env *dsse.Envelope, st *intoto.Statement, out verifyOutcome) {
	detached := false
	if !st.HasSubjectDigest(c.subject.Algorithm().String(), c.subject.Encoded()) {
		if !slices.Contains(c.opts.DetachedSubjectTypes, st.PredicateType) {
			c.fail(FailMismatch, source, ev, "statement (%s) subjects %s do not include %s (signed by %s)", clip(st.PredicateType), subjectList(st), c.subject, out.names())
			return
		}
		detached = true
	}
	if st.PredicateType == cosign.SignPredicateType {
		for _, s := range out.signers {
			c.res.Signatures = append(c.res.Signatures, Signature{Signer: s.name, Identity: s.identity, Subject: c.subject, Source: source, Evidence: ev, SignedAt: out.signedAt})
		}
		return
	}
	subs := make([]Subject, len(st.Subjects))
	for i, s := range st.Subjects {
		subs[i] = Subject{Name: s.Name, Digest: s.Digest}
	}
	stDigest := digest.FromBytes(env.Payload)
	for _, s := range out.signers {
		c.res.Attestations = append(c.res.Attestations, Attestation{
			Signer: s.name, Identity: s.identity, PredicateType: st.PredicateType, StatementType: st.Type,
			Predicate: st.Predicate, Subjects: subs, Source: source, Evidence: ev,
			Statement: stDigest, SignedAt: out.signedAt, DetachedSubject: detached,
		})
	}
}

func subjectList(st *intoto.Statement) string {
	var parts []string
	for i, s := range st.Subjects {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(st.Subjects)-3))
			break
		}
		var ds []string
		for alg, v := range s.Digest {
			ds = append(ds, clip(alg+":"+v))
		}
		parts = append(parts, strings.Join(ds, ","))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// Artifact types of the OCI 1.1 referrers Collect reads.
const (
	// CosignSignatureArtifactType is what cosign writes with
	// --registry-referrers-mode=oci-1-1 (experimental): the legacy
	// simple-signing manifest attached as a referrer.
	CosignSignatureArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json"
	// InTotoArtifactType marks referrers whose layers are DSSE envelopes
	// with in-toto statements (cosign's WriteAttestationsReferrer).
	InTotoArtifactType = "application/vnd.in-toto+json"
	// Sources of evidence found that way.
	SourceCosignSignatureReferrer   = "cosign-signature-referrer"
	SourceCosignAttestationReferrer = "cosign-attestation-referrer"
)

// maxLayersPerReferrer bounds the evidence layers read from one referrer.
const maxLayersPerReferrer = 16

// referrers reads OCI 1.1 referrers of the subject: sigstore bundles (cosign
// v3, cosign v2 --new-bundle-format) and cosign's legacy formats attached as
// referrers. One unfiltered listing serves all kinds.
func (c *collector) referrers() {
	source := SourceBundleReferrer
	descs, err := c.f.Referrers(c.ctx, c.subject, "")
	if err != nil {
		if IsNotFound(err) {
			return
		}
		c.fail(FailFetch, source, "", "list referrers of %s: %v", c.subject, err)
		return
	}
	seen := map[digest.Digest]bool{}
	var todo []ocispec.Descriptor
	for _, d := range descs {
		switch d.ArtifactType {
		case cosign.BundleMediaType, CosignSignatureArtifactType, InTotoArtifactType, "":
		default:
			continue // SBOMs, other tools' artifacts: not evidence we read
		}
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		todo = append(todo, d)
	}
	n := len(todo)
	if n > c.opts.MaxEvidence {
		todo = todo[:c.opts.MaxEvidence]
	}
	c.parallel(len(todo), func(i int, sub *collector) {
		if err := sub.ctx.Err(); err != nil {
			sub.res.Found++
			sub.fail(FailFetch, referrerSource(todo[i].ArtifactType), todo[i].Digest, "referrers: %v", err)
			return
		}
		sub.referrer(todo[i])
	})
	if n > len(todo) {
		c.fail(FailMalformed, source, "", "%d evidence referrers; only the first %d were examined", n, c.opts.MaxEvidence)
	}
}

func referrerSource(artifactType string) string {
	switch artifactType {
	case CosignSignatureArtifactType:
		return SourceCosignSignatureReferrer
	case InTotoArtifactType:
		return SourceCosignAttestationReferrer
	}
	return SourceBundleReferrer
}

// referrer reads one referrer manifest and verifies its evidence layers.
func (c *collector) referrer(d ocispec.Descriptor) {
	source := referrerSource(d.ArtifactType)
	known := d.ArtifactType != ""
	if known {
		c.res.Found++
	}
	if err := d.Digest.Validate(); err != nil {
		c.res.Found += b2i(!known)
		c.fail(FailMalformed, source, "", "referrer digest %q is invalid", clip(d.Digest.String()))
		return
	}
	body, _, got, err := c.f.Manifest(c.ctx, d.Digest.String())
	if err != nil {
		c.res.Found += b2i(!known)
		c.fail(FailFetch, source, d.Digest, "fetch referrer manifest: %v", err)
		return
	}
	if got != d.Digest {
		c.res.Found += b2i(!known)
		c.fail(FailFetch, source, d.Digest, "referrer manifest came back as %s", got)
		return
	}
	m, err := parseManifest(body)
	if err != nil {
		c.res.Found += b2i(!known)
		c.fail(FailMalformed, source, d.Digest, "referrer manifest: %v", err)
		return
	}
	if !known {
		// The registry did not say what this is: decide from the manifest.
		at := m.ArtifactType
		if at == "" {
			at = m.Config.MediaType
		}
		switch at {
		case cosign.BundleMediaType, CosignSignatureArtifactType, InTotoArtifactType:
		default:
			return // not evidence we read
		}
		source = referrerSource(at)
		c.res.Found++
	}
	if m.Subject == nil || m.Subject.Digest != c.subject {
		var s string
		if m.Subject != nil {
			s = clip(m.Subject.Digest.String())
		}
		c.fail(FailMismatch, source, d.Digest, "referrer manifest subject is %q, not %s", s, c.subject)
		return
	}
	type item struct {
		l      ocispec.Descriptor
		handle layerHandler
	}
	var items []item
	for _, l := range m.Layers {
		switch {
		case source == SourceBundleReferrer && isBundleMediaType(l.MediaType):
			items = append(items, item{l, func(c *collector, source string, l ocispec.Descriptor, blob []byte) { c.bundle(source, l.Digest, blob) }})
		case source == SourceCosignSignatureReferrer && l.MediaType == cosign.SimpleSigningMediaType:
			items = append(items, item{l, (*collector).legacySignature})
		case source == SourceCosignAttestationReferrer && l.MediaType == cosign.DSSEMediaType:
			items = append(items, item{l, (*collector).legacyAttestation})
		}
	}
	if len(items) == 0 {
		c.fail(FailMalformed, source, d.Digest, "referrer manifest has no evidence layer")
		return
	}
	if len(items) > maxLayersPerReferrer {
		c.fail(FailMalformed, source, d.Digest, "referrer has %d evidence layers; only the first %d were examined", len(items), maxLayersPerReferrer)
		items = items[:maxLayersPerReferrer]
	}
	c.res.Found += len(items) - 1 // the referrer itself was counted once
	for _, it := range items {
		blob, ok := c.blob(source, it.l)
		if !ok {
			continue
		}
		it.handle(c, source, it.l, blob)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isBundleMediaType(mt string) bool {
	switch mt {
	case cosign.BundleMediaType, "application/vnd.dev.sigstore.bundle+json;version=0.3",
		"application/vnd.dev.sigstore.bundle.v0.3.1+json":
		return true
	}
	return false
}

// parsedBundle is a sigstore bundle as Collect reads it: exactly one of
// env (with its statement) or msgDigest (with sig) is set.
type parsedBundle struct {
	b         *bundle.Bundle
	cert      *x509.Certificate
	env       *dsse.Envelope
	st        *intoto.Statement
	msgDigest []byte
	sig       []byte
}

// parseBundleEvidence parses a sigstore bundle and the evidence in it: a
// DSSE envelope with an in-toto statement, or a SHA2_256 message
// signature. Every error is malformed evidence.
func parseBundleEvidence(blob []byte) (*parsedBundle, error) {
	b, err := ParseBundle(blob)
	if err != nil {
		return nil, err
	}
	sc, err := b.SignatureContent()
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	p := &parsedBundle{b: b, cert: vc.Certificate()}
	if envc := sc.EnvelopeContent(); envc != nil {
		envJSON, err := json.Marshal(envc.RawEnvelope())
		if err != nil {
			return nil, fmt.Errorf("bundle envelope: %w", err)
		}
		if p.env, p.st, err = intoto.ParseEnvelope(envJSON); err != nil {
			return nil, err
		}
		return p, nil
	}
	ms := sc.MessageSignatureContent()
	if ms == nil {
		return nil, errors.New("bundle has neither a DSSE envelope nor a message signature")
	}
	if ms.DigestAlgorithm() != "SHA2_256" || len(ms.Digest()) != sha256.Size {
		return nil, fmt.Errorf("bundle message digest is %s, want a SHA2_256 digest of the manifest", clip(ms.DigestAlgorithm()))
	}
	p.msgDigest, p.sig = ms.Digest(), ms.Signature()
	return p, nil
}

// CheckBundle reports why blob is not a sigstore bundle Collect reads as
// evidence (nil when it is one): the proxy serves a bundle blob only when
// the verifier reads it, and reads it the same way.
func CheckBundle(blob []byte) error {
	_, err := parseBundleEvidence(blob)
	return err
}

// bundle verifies one sigstore bundle about the subject.
func (c *collector) bundle(source string, ev digest.Digest, blob []byte) {
	p, err := parseBundleEvidence(blob)
	if err != nil {
		c.fail(FailMalformed, source, ev, "%v", err)
		return
	}
	e := &evidence{bundle: p.b, cert: p.cert, env: p.env, msgDigest: p.msgDigest, sig: p.sig}
	out := c.verify(e)
	if out.fail != nil {
		c.fail(out.fail.kind, source, ev, "%s", out.fail.reason)
		return
	}
	if p.env != nil {
		c.statement(source, ev, p.env, p.st, out)
		return
	}
	if c.subject.Algorithm() != digest.SHA256 || hex.EncodeToString(p.msgDigest) != c.subject.Encoded() {
		c.fail(FailMismatch, source, ev, "bundle signs sha256:%s, not %s (signed by %s)", hex.EncodeToString(p.msgDigest), c.subject, out.names())
		return
	}
	for _, s := range out.signers {
		c.res.Signatures = append(c.res.Signatures, Signature{Signer: s.name, Identity: s.identity, Subject: c.subject, Source: source, Evidence: ev, SignedAt: out.signedAt})
	}
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// legacyEvidence reads the certificate and Rekor/TSA annotations of a
// cosign legacy layer.
func legacyEvidence(ann map[string]string) (*evidence, error) {
	ev := &evidence{legacy: true}
	if pemCert := ann[cosign.CertificateAnnotation]; pemCert != "" {
		cert, err := parseCertPEM(pemCert)
		if err != nil {
			return nil, fmt.Errorf("certificate annotation: %w", err)
		}
		ev.cert = cert
	}
	if rb := ann[cosign.BundleAnnotation]; rb != "" {
		b, err := cosign.ParseRekorBundle(rb)
		if err != nil {
			return nil, err
		}
		ev.rekor = b
	}
	if ts := ann[cosign.RFC3161TimestampAnnotation]; ts != "" {
		der, err := cosign.ParseRFC3161Annotation(ts)
		if err != nil {
			return nil, err
		}
		ev.timestamps = [][]byte{der}
	}
	return ev, nil
}

func parseCertPEM(s string) (*x509.Certificate, error) {
	if len(s) > cosign.MaxAnnotationSize {
		return nil, errors.New("certificate is too large")
	}
	block, _ := pemDecode([]byte(s))
	if block == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block)
}
