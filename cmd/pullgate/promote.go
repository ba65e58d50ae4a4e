package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/cache/stored"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/engine"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/intoto"
	"github.com/pullgate/pullgate/verify/vsa"
)

const promoteUsage = `usage: pullgate promote <src-ref> <dst-ref> --policy policy.yaml --key signing.key
       pullgate promote <src-ref> <dst-ref> --policy policy.yaml --id-token-file token --fulcio URL
         (--tsa URL | --rekor URL | both) --trusted-root trusted_root.json
         [--config pullgate.yaml] [--verifier-id URI] [--policy-uri URI] [--copy-evidence]
         [--refresh-after 24h] [--timeout 30m] [--plain-http] [-o text|json]

Decides <src-ref> with the proxy's engine (as pullgate verify), streams every manifest and
blob of it through the proxy's checks (digest, content inspection under the matching rule),
and only when everything passed copies the exact bytes to <dst-ref> (<registry>/<repo>[:tag];
credentials from the Docker config), signs the digest there with --key (a cosign v3 bundle
referrer, with the sha256-<hex> tag fallback) and attaches a pullgate VSA signed with the same
key. A refused source writes nothing to <dst-ref>. When <dst-ref> already holds that digest
(and tag) with a signature and a VSA of this policy revision by this key, not older than
--refresh-after, nothing is written ("already promoted"); an older one is promoted again.

Keyless (--id-token-file instead of --key): both are signed with an ephemeral key certified by
--fulcio for the OIDC identity of the token (read from the file, never printed), timestamped by
--tsa and/or recorded in --rekor (one is required: without an observer time the short-lived
certificate cannot be verified). --trusted-root (the Fulcio CA, the TSA chain, the Rekor key)
checks the fresh bundles before anything is written, and "already promoted" then requires a
signature and VSA by the same certificate identity (SAN) and OIDC issuer.

<src-ref> is named as for pullgate verify. --key is a PEM private key or a cosign key
(password in $COSIGN_PASSWORD). --plain-http applies to both registries without --config,
to <dst-ref> with it.

Exit codes as pullgate verify: 0 promoted (or already), 10 no evidence found, 11 signature
invalid or signer untrusted, 12 digest or subject mismatch, 13 requirements not met (a content
finding included), 14 malformed evidence, 2 usage or configuration error, 1 any other failure
(a registry unreachable, a write refused).
`

// defaultVerifierID is the VSA's verifier.id without --verifier-id. The
// configuration's vsa.verifierId is not used: it names a proxy instance,
// and a node pinning that instance should not also accept what promote
// signed (pin each where it is meant to count).
const defaultVerifierID = "https://github.com/pullgate/pullgate/promote"

// promoteResult is `pullgate promote -o json`.
type promoteResult struct {
	Source          string          `json:"source"`
	Destination     string          `json:"destination"`
	Digest          digest.Digest   `json:"digest,omitempty"`
	Decision        promoteDecision `json:"decision"`
	ManifestsCopied []digest.Digest `json:"manifestsCopied"`
	BlobsCopied     []digest.Digest `json:"blobsCopied"`
	Signature       string          `json:"signature,omitempty"`
	VSA             string          `json:"vsa,omitempty"`
	Signer          *promoteSigner  `json:"signer,omitempty"`
	EvidenceCopied  []digest.Digest `json:"evidenceCopied"`
	AlreadyPromoted bool            `json:"alreadyPromoted"`
	ExitCode        int             `json:"exitCode"`
	Error           string          `json:"error,omitempty"`
}

// promoteSigner says who signs: the key's hint (base64 SHA-256 of its
// PKIX DER, as in the bundles), or the certificate identity (SAN) and
// OIDC issuer of a keyless signer.
type promoteSigner struct {
	KeyHint  string `json:"keyHint,omitempty"`
	Identity string `json:"identity,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
}

type promoteDecision struct {
	Allowed  bool     `json:"allowed"`
	Reasons  []string `json:"reasons"`
	ExitCode int      `json:"exitCode"`
}

func cmdPromote(args []string) int {
	fs := flag.NewFlagSet("promote", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, promoteUsage) }
	policyPath := fs.String("policy", "", "policy file (required)")
	keyPath := fs.String("key", "", "private key signing the promoted digest and its VSA (or --id-token-file)")
	var keyless keylessFlags
	addKeylessFlags(fs, &keyless)
	fs.StringVar(&keyless.trustedRoot, "trusted-root", "", "keyless: Sigstore trusted_root.json (Fulcio CA, TSA chain, Rekor key) the new signatures must verify against")
	cfgPath := fs.String("config", "", "pullgate configuration (for upstream names and credentials)")
	verifierID := fs.String("verifier-id", "", "the VSA's verifier.id (default "+defaultVerifierID+")")
	policyURI := fs.String("policy-uri", "", "the VSA's policy.uri (default: the policy file's file:// URL)")
	copyEvidence := fs.Bool("copy-evidence", false, "also copy the source's signatures and attestations the decision counted")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound of the whole promotion (decision, copy, signing)")
	refreshAfter := fs.Duration("refresh-after", 24*time.Hour, "a promotion whose newest VSA is older than this is done again (a new VSA); keep it well below the nodes' --max-age / maxAge")
	plain := fs.Bool("plain-http", false, "talk plain HTTP to the registries (the source only without --config)")
	out := fs.String("o", "text", "output: text or json")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return parseExit(err)
	}
	if len(pos) != 2 || *policyPath == "" || (*out != "text" && *out != "json") {
		fs.Usage()
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "pullgate promote: "+format+"\n", a...)
		return 2
	}
	signing, err := promoteSigning(*keyPath, keyless)
	if err != nil {
		return usage("%v", err)
	}
	upName, repo, tag, err := splitImageRef(pos[0])
	if err != nil {
		return usage("%v", err)
	}
	var nopts []name.Option
	if *plain {
		nopts = append(nopts, name.Insecure)
	}
	dst, err := name.ParseReference(pos[1], nopts...)
	if err != nil {
		return usage("destination %q: %v", pos[1], err)
	}
	if _, ok := dst.(name.Digest); ok {
		return usage("destination %q: name a repository or a tag, not a digest (the digest is the source's)", pos[1])
	}
	dstTag := ""
	if t, ok := dst.(name.Tag); ok && strings.Contains(pos[1][strings.LastIndex(pos[1], "/")+1:], ":") {
		dstTag = t.TagStr()
	}
	if *verifierID == "" {
		*verifierID = defaultVerifierID
	}
	if *policyURI == "" {
		abs, _ := filepath.Abs(*policyPath)
		*policyURI = "file://" + abs
	}
	// An interrupt or a termination ends the run as a failure would: the
	// work stops, the temporary copies are removed, and what was not
	// written yet (the tag last) is not.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	eng, closeEng, code := decisionEngine("promote", *cfgPath, *policyPath, upName, *plain)
	if code != 0 {
		return code
	}
	defer closeEng()
	// A key the policy trusts is refused (keyless: the identity is known
	// only from the first certificate Fulcio issues).
	if k := signing.opts.Signer; k != nil {
		if err := policy.SeparateKey(eng.Policy(), k.Public(), "--key"); err != nil {
			fmt.Fprintf(os.Stderr, "pullgate promote: %v\n", err)
			return policy.ExitConfig
		}
	}
	work, err := os.MkdirTemp("", "pullgate-promote-blobs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return policy.ExitOther
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithTimeout(sigCtx, *timeout)
	defer cancel()
	p := &promoter{
		ctx: ctx, eng: eng, dir: work, signing: signing,
		dst: dst.Context(), dstTag: dstTag, verifierID: *verifierID, policyURI: *policyURI, copyEvidence: *copyEvidence, refreshAfter: *refreshAfter,
		ropts: []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)},
		blobs: map[digest.Digest]string{}, seen: map[digest.Digest]bool{},
		r: promoteResult{Source: pos[0], Destination: pos[1], ManifestsCopied: []digest.Digest{}, BlobsCopied: []digest.Digest{}, EvidenceCopied: []digest.Digest{}},
	}
	p.ropts = append(p.ropts, remote.WithContext(p.ctx))
	p.run(upName, repo, tag)
	if sigCtx.Err() != nil && p.r.ExitCode != policy.ExitAllowed {
		// Whatever the run failed on, it failed because it was stopped.
		p.r.ExitCode = policy.ExitOther
		p.r.Error = "interrupted by a signal: nothing more was written, and the destination tag was not moved (it is written last)"
	}
	if *out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p.r)
	} else {
		p.print(os.Stdout)
	}
	if p.r.Error != "" && *out == "json" {
		fmt.Fprintf(os.Stderr, "pullgate promote: %s\n", p.r.Error)
	}
	return p.r.ExitCode
}

// promoter is one promotion under way.
type promoter struct {
	ctx          context.Context
	eng          *engine.Engine
	dir          string // verified blob copies, one file per digest
	signing      *signing
	dst          name.Repository
	dstTag       string
	verifierID   string
	policyURI    string
	copyEvidence bool
	refreshAfter time.Duration // an older VSA is not "already promoted"
	ropts        []remote.Option

	decision engine.Decision
	// What is copied, in the order it is written: blobs before the
	// manifests that reference them, children before their index.
	manifests []copied
	blobs     map[digest.Digest]string // digest → verified copy on disk
	blobOrder []ocispec.Descriptor
	seen      map[digest.Digest]bool // manifests admitted
	pending   []pendingBlob          // blobs of the manifests admitted, to admit
	finalTag  *copied                // the destination tag, written last
	bundles   [][]byte               // the signature and VSA bundles, attached once the artifact is written
	inspected bool                   // some blob was inspected under a content rule
	formats   []string               // the formats inspection recognised (sorted)
	r         promoteResult
}

// pendingBlob is a blob as one manifest lists it.
type pendingBlob struct {
	q    *engine.Query
	desc ocispec.Descriptor
}

// admitPending admits every blob as every manifest lists it (AdmitBlob for
// each pair: the grant then holds every class the blob is declared as),
// copying each once.
func (p *promoter) admitPending() error {
	for _, b := range p.pending {
		if err := p.admitBlob(b.q, b.desc); err != nil {
			return err
		}
	}
	p.pending = nil
	return nil
}

// copied is a manifest to write to the destination: exactly the bytes the
// engine verified.
type copied struct {
	dgst      digest.Digest
	mediaType string
	raw       []byte
	tag       string // a tag to write it under too ("": by digest only)
	evidence  bool
}

// refusal is a verdict that stops the promotion.
type refusal struct{ v engine.Verdict }

func (r *refusal) Error() string { return strings.Join(r.v.Reasons, "; ") }

func (p *promoter) fail(code int, err error) {
	p.r.ExitCode, p.r.Error = code, err.Error()
}

func (p *promoter) refuse(v engine.Verdict) {
	p.r.Decision = promoteDecision{Allowed: false, Reasons: v.Reasons, ExitCode: exitOf(v)}
	p.r.ExitCode = p.r.Decision.ExitCode
}

func exitOf(v engine.Verdict) int {
	if v.Allowed && !v.WouldDeny {
		return policy.ExitAllowed
	}
	if v.ExitCode == 0 {
		return policy.ExitOther
	}
	return v.ExitCode
}

func (p *promoter) run(upName, repo, tag string) {
	sub, err := p.eng.NewSubject(upName, repo, tag)
	if err != nil {
		p.fail(policy.ExitConfig, err)
		return
	}
	// 1. The decision, as pullgate verify makes it.
	d, err := p.eng.Decide(p.ctx, sub)
	if err != nil {
		p.fail(policy.ExitOther, err)
		return
	}
	p.decision, p.r.Digest = d, d.Digest
	p.r.Decision = promoteDecision{Allowed: d.Allowed && !d.WouldDeny, Reasons: d.Reasons, ExitCode: exitOf(d.Verdict)}
	if !p.r.Decision.Allowed {
		p.r.ExitCode = p.r.Decision.ExitCode
		return
	}
	if len(d.Waivers) > 0 {
		// A VSA says PASSED for as long as a node accepts it; an
		// exception expires. Fix what it waives, then promote.
		p.r.Decision.Allowed = false
		p.r.Decision.Reasons = append(slices.Clone(d.Reasons), fmt.Sprintf("allowed only by exception %s (until %s): promote does not sign a PASSED VSA for a waived decision",
			strings.Join(d.Waivers, ", "), d.WaivedUntil.UTC().Format(time.RFC3339)))
		p.r.Decision.ExitCode, p.r.ExitCode = policy.ExitUnmet, policy.ExitUnmet
		return
	}
	// 2. The signature over the digest, signed now (keyless: the
	// certificate names who signs) and checked against the trust before
	// anything is written: a signing failure writes nothing.
	if err := p.signDigest(); err != nil {
		code := policy.ExitOther
		if _, ok := err.(*configError); ok {
			code = policy.ExitConfig
		}
		p.fail(code, err)
		return
	}
	// Already there, signed and summarised under this policy revision
	// by this key (or identity): nothing to write.
	if done, err := p.alreadyPromoted(); err != nil {
		p.fail(policy.ExitOther, err)
		return
	} else if done {
		p.r.AlreadyPromoted = true
		return
	}
	// 3. Every manifest and blob through the engine's admission, as a
	// pull through the proxy: nothing is written before all passed.
	q, _ := p.eng.Query(p.ctx, engine.Subject{Upstream: sub.Upstream, Repo: sub.Repo, Digest: d.Digest})
	err = p.admitManifest(q, d.Digest, "", false, 0)
	if err == nil {
		err = p.admitPending()
	}
	if err != nil {
		var rf *refusal
		if errors.As(err, &rf) {
			p.refuse(rf.v)
		} else {
			p.fail(policy.ExitOther, err)
		}
		return
	}
	if p.dstTag != "" {
		p.manifests[len(p.manifests)-1].tag = p.dstTag
	}
	if p.copyEvidence {
		err := p.admitEvidence(q, sub)
		if err == nil {
			err = p.admitPending()
		}
		if err != nil {
			p.fail(policy.ExitOther, fmt.Errorf("evidence: %w", err))
			return
		}
	}
	// 4. The VSA, signed and checked before anything is written.
	if err := p.sign(sub); err != nil {
		p.fail(policy.ExitOther, err)
		return
	}
	// 5. Write: blobs, then manifests (children first); attach the
	// signature and the VSA; then the tag.
	if err := p.write(); err != nil {
		p.fail(policy.ExitOther, err)
		return
	}
	if err := p.attach(); err != nil {
		p.fail(policy.ExitOther, err)
		return
	}
	if err := p.writeTag(); err != nil {
		p.fail(policy.ExitOther, err)
	}
}

// admitManifest admits manifest dgst as a pull of it would be admitted
// (AdmitManifest: verified bytes, decided, its blobs granted), then each
// child (an index) or blob (an image) the same way.
func (p *promoter) admitManifest(q *engine.Query, dgst digest.Digest, tag string, evidence bool, depth int) error {
	if p.seen[dgst] {
		return nil
	}
	if depth > 4 {
		return fmt.Errorf("manifest %s: indexes nested deeper than 4 levels", dgst)
	}
	m, v, _, err := p.eng.AdmitManifest(q, dgst)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", dgst, err)
	}
	if !v.Allowed || v.WouldDeny {
		if len(v.Reasons) == 0 {
			v.Reasons = []string{"manifest " + dgst.String() + " denied"}
		}
		return &refusal{v}
	}
	if len(v.Waivers) > 0 {
		v.Allowed, v.ExitCode = false, policy.ExitUnmet
		v.Reasons = append(slices.Clone(v.Reasons), "manifest "+dgst.String()+" is allowed only by exception "+strings.Join(v.Waivers, ", ")+": promote does not sign a PASSED VSA for a waived decision")
		return &refusal{v}
	}
	if m.IsIndex() {
		for _, c := range m.Manifests {
			if err := p.admitManifest(q.About(c.Digest), c.Digest, "", evidence, depth+1); err != nil {
				return err
			}
		}
	} else {
		// Admitted once every manifest is: a blob two manifests list is
		// then inspected as every class they declare it as.
		for _, b := range m.Blobs() {
			p.pending = append(p.pending, pendingBlob{q: q, desc: b})
		}
	}
	p.seen[dgst] = true
	p.manifests = append(p.manifests, copied{dgst: dgst, mediaType: m.MediaType, raw: m.Raw, tag: tag, evidence: evidence})
	return nil
}

// admitBlob lets one blob out as the proxy serves it (serveblob.go):
// AdmitBlob (the grant of an allowed manifest; a stored copy checked as the
// grant requires), then a stored copy hashed again (VerifyStored) or the
// engine's verified download (Fetch: digest and content inspection while
// the bytes stream, the last ones held back until both passed). The bytes
// it lets out go to a file, pushed once every blob was let out.
func (p *promoter) admitBlob(mq *engine.Query, desc ocispec.Descriptor) error {
	sub := mq.Subject()
	q, _ := p.eng.Query(p.ctx, engine.Subject{Upstream: sub.Upstream, Repo: sub.Repo, Digest: desc.Digest})
	grant, v, ok, err := p.eng.AdmitBlob(q)
	var cf *engine.ContentFailure
	switch {
	case errors.As(err, &cf):
		return &refusal{q.ContentDenial(cf)}
	case err != nil:
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	case !ok:
		return &refusal{v}
	}
	inspected := false
	if r := q.Rule(); r != nil && r.Content != nil && !grant.Uninspected && !grant.Evidence {
		p.inspected, inspected = true, true
	}
	if _, ok := p.blobs[desc.Digest]; ok {
		// Copied already; AdmitBlob above inspected the stored copy as
		// this manifest declares it too.
		p.addFormats(q, grant, inspected)
		return nil
	}
	path := filepath.Join(p.dir, desc.Digest.Encoded())
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	n, err := p.letOut(q, grant, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	var mm *engine.Mismatch
	switch {
	case errors.As(err, &cf):
		return &refusal{q.ContentDenial(cf)}
	case errors.As(err, &mm):
		// The source sent other bytes than the digest names: tampering,
		// exit 12 as pullgate verify's digest mismatch.
		return &refusal{engine.Verdict{ExitCode: policy.ExitMismatch, Reasons: []string{mm.Error()}}}
	case err != nil:
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if n != desc.Size {
		return fmt.Errorf("blob %s: %d bytes let out, the manifest says %d", desc.Digest, n, desc.Size)
	}
	p.blobs[desc.Digest] = path
	p.blobOrder = append(p.blobOrder, desc)
	p.addFormats(q, grant, inspected)
	return nil
}

// addFormats adds the formats an inspected blob was recognised as (read
// from the engine's records, written once the inspection passed) to those
// the VSA names.
func (p *promoter) addFormats(q *engine.Query, grant engine.BlobGrant, inspected bool) {
	if !inspected {
		return
	}
	for _, f := range p.eng.InspectedFormats(q, grant) {
		if i, found := slices.BinarySearch(p.formats, f); !found {
			p.formats = slices.Insert(p.formats, i, f)
		}
	}
}

// letOut writes the blob the grant lets out to w, as the proxy would send
// it to a client, and returns how many bytes it wrote.
func (p *promoter) letOut(q *engine.Query, grant engine.BlobGrant, w io.Writer) (int64, error) {
	dgst := grant.Desc.Digest
	if size, ok := p.eng.Store().Has(dgst); ok {
		c, err := stored.Open(p.ctx, p.eng.Store(), dgst, size)
		if err == nil {
			defer c.Close()
			rs, err := p.eng.VerifyStored(p.ctx, c)
			if err != nil {
				return 0, err
			}
			return io.Copy(w, rs)
		}
	}
	f, err := p.eng.Fetch(q, grant)
	if err != nil {
		return 0, err
	}
	defer f.Release()
	size, err := f.Wait(p.ctx)
	if err != nil {
		return 0, err
	}
	n, err := f.CopyTo(p.ctx, w, 0, size)
	if verr := f.Verified(p.ctx); verr != nil {
		return n, verr
	}
	return n, err
}

// admitEvidence adds the source's signature and attestation artifacts
// the decision counted (one of their layers is evidence a passed check
// names): sigstore bundle referrers (referrers API or sha256-<hex> tag
// fallback) and cosign's legacy sha256-<hex>.sig/.att tags, each admitted
// as a pull of it through the proxy would be (decided by its subject).
func (p *promoter) admitEvidence(q *engine.Query, sub engine.Subject) error {
	counted := countedEvidence(p.decision)
	if len(counted) == 0 {
		return nil
	}
	d := p.decision.Digest
	type candidate struct {
		dgst digest.Digest
		tag  string
		q    *engine.Query // the referrer's query: by digest, or its tag
	}
	var cands []candidate
	descs, err := p.referrers(q, sub, d)
	if err != nil {
		return err
	}
	for _, r := range descs {
		cands = append(cands, candidate{dgst: r.Digest, q: q.About(r.Digest)})
	}
	for _, suffix := range []string{"sig", "att"} {
		t := cosign.TagFor(d, suffix)
		tq, _ := p.eng.Query(p.ctx, engine.Subject{Upstream: sub.Upstream, Repo: sub.Repo, Tag: t})
		td, err := p.eng.Resolve(tq)
		if err != nil {
			continue // no such tag
		}
		cands = append(cands, candidate{dgst: td, tag: t, q: tq})
	}
	for _, c := range cands {
		cq := c.q
		m, v, _, err := p.eng.AdmitManifest(cq, c.dgst)
		// Only an artifact every layer of which the decision counted: one
		// that also holds another signer's layer is not copied.
		if err != nil || !v.Allowed || m.IsIndex() || len(m.Layers) == 0 || slices.ContainsFunc(m.Layers, func(l ocispec.Descriptor) bool { return !counted[l.Digest] }) {
			continue
		}
		if err := p.admitManifest(cq, c.dgst, c.tag, true, 0); err != nil {
			return err
		}
		p.r.EvidenceCopied = append(p.r.EvidenceCopied, c.dgst)
	}
	return nil
}

// referrers lists the referrers of d at the source: the referrers API
// through the engine's upstream client, else the sha256-<hex> fallback
// index (admitted as evidence, as the proxy serves it).
func (p *promoter) referrers(q *engine.Query, sub engine.Subject, d digest.Digest) ([]ocispec.Descriptor, error) {
	descs, _, ok, err := q.Upstream().ReferrersAPI(p.ctx, sub.Repo, d, "", 4<<20)
	if err != nil || ok {
		return descs, err
	}
	t := "sha256-" + d.Encoded()
	tq, _ := p.eng.Query(p.ctx, engine.Subject{Upstream: sub.Upstream, Repo: sub.Repo, Tag: t})
	td, err := p.eng.Resolve(tq)
	if err != nil {
		return nil, nil // no fallback tag: no referrers
	}
	m, v, _, err := p.eng.AdmitManifest(tq, td)
	if err != nil || !v.Allowed || !m.IsIndex() {
		return nil, nil
	}
	return m.Manifests, nil
}

// alreadyPromoted reports whether the destination holds the digest (under
// its tag) with a signature by the key and a VSA by the key of this
// verifier and policy revision: a promotion done before, which would
// change nothing now.
func (p *promoter) alreadyPromoted() (bool, error) {
	d := p.decision.Digest
	desc, err := remote.Head(p.dst.Digest(d.String()), p.ropts...)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("destination %s: %w", p.dst, err)
	}
	if desc.Digest.String() != d.String() {
		return false, nil
	}
	if p.dstTag != "" {
		td, err := remote.Head(p.dst.Tag(p.dstTag), p.ropts...)
		if err != nil || td.Digest.String() != d.String() {
			return false, nil
		}
	}
	res := verify.Collect(p.ctx, &attest.RegistryFetcher{Repo: p.dst, Opts: p.ropts}, d, p.signing.trust, verify.CollectOptions{})
	if len(res.Signatures) == 0 {
		return false, nil
	}
	// The newest VSA, and not older than --refresh-after: nodes refuse a
	// VSA past their maximum age, and only a new run renews it.
	s, err := vsa.CheckResult(res, vsa.CheckOptions{VerifierID: p.verifierID, MaxAge: p.refreshAfter})
	if err != nil {
		return false, nil
	}
	if vsa.Digest(s.Policy.Digest) != digest.Digest(p.decision.Revision) || s.Verifier.Version[vsa.VersionComponent] != version {
		// Another policy, or another pullgate (its checks may differ):
		// promoted again.
		return false, nil
	}
	if p.copyEvidence {
		// The evidence the decision counted must be there too (a run
		// without --copy-evidence did not copy it).
		for ev := range countedEvidence(p.decision) {
			l, err := remote.Layer(p.dst.Digest(ev.String()), p.ropts...)
			if err != nil {
				return false, err
			}
			if ok, err := partial.Exists(l); err != nil || !ok {
				return false, nil
			}
		}
	}
	return true, nil
}

// countedEvidence is the evidence (signature and attestation layers) the
// decision's passed checks counted.
func countedEvidence(d engine.Decision) map[digest.Digest]bool {
	counted := map[digest.Digest]bool{}
	for _, e := range d.CountedEvidence() {
		counted[e] = true
	}
	return counted
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// write pushes every verified blob, then every manifest by digest
// (children before the index, evidence after its subject), then the tags.
func (p *promoter) write() error {
	for _, desc := range p.blobOrder {
		l := &fileLayer{path: p.blobs[desc.Digest], desc: desc}
		if err := remote.WriteLayer(p.dst, l, p.ropts...); err != nil {
			return fmt.Errorf("writing blob %s to %s: %w", desc.Digest, p.dst, err)
		}
		p.r.BlobsCopied = append(p.r.BlobsCopied, desc.Digest)
	}
	for _, m := range p.manifests {
		rm := rawManifest{raw: m.raw, mt: m.mediaType}
		if err := remote.Put(p.dst.Digest(m.dgst.String()), rm, p.ropts...); err != nil {
			return fmt.Errorf("writing manifest %s to %s: %w", m.dgst, p.dst, err)
		}
		if !m.evidence {
			p.r.ManifestsCopied = append(p.r.ManifestsCopied, m.dgst)
		}
		if m.tag == "" {
			continue
		}
		if !m.evidence {
			p.finalTag = &m // written last, once signed and summarised
			continue
		}
		// A cosign sha256-<hex>.sig/.att tag already at the destination
		// (other signatures of the digest) is not replaced.
		if _, err := remote.Head(p.dst.Tag(m.tag), p.ropts...); err == nil {
			continue
		} else if !isNotFound(err) {
			return fmt.Errorf("destination %s:%s: %w", p.dst, m.tag, err)
		}
		if err := remote.Tag(p.dst.Tag(m.tag), rm, p.ropts...); err != nil {
			return fmt.Errorf("tagging %s:%s: %w", p.dst, m.tag, err)
		}
	}
	return nil
}

// writeTag moves the destination tag to the promoted digest, last: a tag
// never names a digest not yet signed and summarised.
func (p *promoter) writeTag() error {
	if p.finalTag == nil {
		return nil
	}
	m := p.finalTag
	if err := remote.Tag(p.dst.Tag(m.tag), rawManifest{raw: m.raw, mt: m.mediaType}, p.ropts...); err != nil {
		return fmt.Errorf("tagging %s:%s: %w", p.dst, m.tag, err)
	}
	return nil
}

// signDigest signs the destination digest (a cosign v3 bundle: DSSE of an
// in-toto statement of cosign's sign predicate) and checks the bundle
// against the trust of this signer (keyless: learning the identity from
// the certificate Fulcio issued); attach writes it.
func (p *promoter) signDigest() error {
	d := p.decision.Digest
	stmt, err := json.Marshal(map[string]any{
		"_type":         intoto.StatementV1,
		"subject":       []map[string]any{{"name": p.dst.Name(), "digest": vsa.DigestSet(d)}},
		"predicateType": cosign.SignPredicateType,
		"predicate":     map[string]any{},
	})
	if err != nil {
		return err
	}
	opts, err := p.signing.current()
	if err != nil {
		return err
	}
	sig, err := attest.Sign(p.ctx, stmt, opts)
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, p.signing.hint(err))
	}
	if err := p.signing.learn(sig); err != nil {
		return err
	}
	p.r.Signer = &p.signing.who
	if p.signing.keyless {
		if err := policy.SeparateIdentity(p.eng.Policy(), p.signing.who.Identity, p.signing.who.Issuer, "the --id-token-file identity"); err != nil {
			return &configError{err}
		}
	}
	res := verify.VerifyBundle(p.ctx, sig, d, p.signing.trust, verify.CollectOptions{})
	if len(res.Signatures) != 1 || len(res.Failures) > 0 {
		return fmt.Errorf("the new signature of %s does not verify against %s: %s", d, p.signing.describe(), failures(res))
	}
	p.bundles = append(p.bundles, sig)
	return nil
}

// configError is a promotion refused by how it was set up (exit 2), not by
// the artifact.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }

// failures describes a verification result's failures.
func failures(res verify.Result) string {
	var out []string
	for _, f := range res.Failures {
		out = append(out, f.Reason)
	}
	if len(out) == 0 {
		return "nothing verified"
	}
	return strings.Join(out, "; ")
}

// sign makes the VSA, signed the same way as the signature and checked
// against the same trust before anything is written; attach writes it.
func (p *promoter) sign(sub engine.Subject) error {
	d := p.decision.Digest
	summary := vsa.Summary{
		Subject:            d,
		Verifier:           vsa.Verifier{ID: p.verifierID, Version: map[string]string{vsa.VersionComponent: version}},
		TimeVerified:       time.Now(),
		ResourceURI:        "oci://" + p.dst.Name() + "@" + d.String(),
		Policy:             vsa.ResourceDescriptor{URI: p.policyURI, Digest: vsa.DigestSet(digest.Digest(p.decision.Revision))},
		InputAttestations:  vsa.Inputs(sub.Repository(), p.decision.CountedEvidence()),
		VerificationResult: vsa.Passed,
		VerifiedLevels:     p.decision.VerifiedLevels(p.inspected, p.formats),
	}
	vstmt, err := vsa.Statement(summary)
	if err != nil {
		return err
	}
	opts, err := p.signing.current()
	if err != nil {
		return err
	}
	vb, err := vsa.SignWith(p.ctx, vstmt, opts)
	if err != nil {
		return fmt.Errorf("signing the VSA of %s: %w", d, p.signing.hint(err))
	}
	if _, err := vsa.Check(p.ctx, [][]byte{vb}, d, p.signing.trust, vsa.CheckOptions{VerifierID: p.verifierID}); err != nil {
		return fmt.Errorf("the new VSA does not verify against %s: %w", p.signing.describe(), err)
	}
	p.bundles = append(p.bundles, vb)
	return nil
}

// attach attaches the signature and the VSA to the destination digest as
// bundle referrers (attest.Push: the referrers API, else the sha256-<hex>
// tag fallback).
func (p *promoter) attach() error {
	d := p.decision.Digest
	insecure := p.dst.Scheme() == "http"
	pushed, err := attest.Push(p.ctx, p.dst.Digest(d.String()).String(), p.bundles,
		attest.PushOptions{Keychain: authn.DefaultKeychain, Insecure: insecure})
	if err != nil {
		return err
	}
	for _, x := range pushed {
		switch x.PredicateType {
		case cosign.SignPredicateType:
			p.r.Signature = x.Digest
		case vsa.PredicateType:
			p.r.VSA = x.Digest
		}
	}
	return nil
}

func (p *promoter) print(w io.Writer) {
	r := p.r
	switch {
	case r.Error != "":
		fmt.Fprintf(w, "FAILED %s -> %s: %s\n", r.Source, r.Destination, r.Error)
	case !r.Decision.Allowed:
		fmt.Fprintf(w, "REFUSED %s: nothing written to %s\n", r.Source, r.Destination)
		for _, s := range r.Decision.Reasons {
			fmt.Fprintf(w, "  reason: %s\n", s)
		}
		return
	case r.AlreadyPromoted:
		fmt.Fprintf(w, "ALREADY PROMOTED %s -> %s@%s (signed, VSA of this policy revision): nothing written\n", r.Source, r.Destination, r.Digest)
		return
	default:
		fmt.Fprintf(w, "PROMOTED %s -> %s@%s\n", r.Source, r.Destination, r.Digest)
	}
	fmt.Fprintf(w, "  manifests copied: %d\n  blobs copied:     %d\n", len(r.ManifestsCopied), len(r.BlobsCopied))
	if len(r.EvidenceCopied) > 0 {
		fmt.Fprintf(w, "  evidence copied:  %d\n", len(r.EvidenceCopied))
	}
	if r.Signature != "" {
		fmt.Fprintf(w, "  signature:        %s\n", r.Signature)
	}
	if r.VSA != "" {
		fmt.Fprintf(w, "  vsa:              %s\n", r.VSA)
	}
	if s := r.Signer; s != nil && s.Identity != "" {
		fmt.Fprintf(w, "  signed by:        %s (issuer %s)\n", s.Identity, s.Issuer)
	} else if s != nil {
		fmt.Fprintf(w, "  signed by key:    %s\n", s.KeyHint)
	}
}

// fileLayer is a verified blob copy on disk, pushed as it is.
type fileLayer struct {
	path string
	desc ocispec.Descriptor
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return v1.NewHash(l.desc.Digest.String()) }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return v1.NewHash(l.desc.Digest.String()) }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *fileLayer) Size() (int64, error)                 { return l.desc.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}

// rawManifest writes a manifest's exact bytes.
type rawManifest struct {
	raw []byte
	mt  string
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(r.mt), nil }
