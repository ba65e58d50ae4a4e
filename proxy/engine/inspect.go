package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/cache/stored"
	"github.com/pullgate/pullgate/cache/verified"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/shape"
)

// ContentFailure is a blob refused by content inspection.
type ContentFailure struct {
	finding *content.Finding
	// recorded: the finding was read from the records (in its own
	// scope), not found now; it is not recorded again (in another scope).
	recorded bool
}

func (c *ContentFailure) Error() string { return c.finding.Error() }

// text is the finding as it is recorded against the blob (and as a
// manifest's content reason quotes it after "layer <digest>: ").
func (c *ContentFailure) text() string {
	if c.recorded {
		return c.finding.Reason
	}
	return c.finding.Error()
}

// lateCheck inspects a fetched blob's spool file as the declarations
// allowed since its fetch started, returning the classes it inspected.
type lateCheck func(ctx context.Context, path string, size int64) ([]content.Class, error)

// lateDeclarations is the lateCheck of a content fetch that started with
// classes: before the fetch finishes, a finding recorded against the blob
// meanwhile refuses it, and classes the held grant gained meanwhile (a tag
// allowed while the bytes streamed, declaring the blob otherwise) are
// inspected over the verified spool file.
// The extra classes' load-time references are judged as the fetch's own
// (the rule's content.references, against the MBOM expectation exp), since a name
// may make the same bytes a config whose references the first classes
// never read (a template name, then adapter_config.json).
func (s *Engine) lateDeclarations(rev, rule, rep string, dgst digest.Digest, opts content.Options, classes []content.Class, exp *tensorExpectation) lateCheck {
	return func(ctx context.Context, path string, size int64) ([]content.Class, error) {
		for _, scope := range layerScopes(exp, opts.References) {
			if f, bad, err := s.badBlob(ctx, rev, rule, dgst, scope); err != nil {
				return nil, err
			} else if bad {
				return nil, &ContentFailure{finding: &content.Finding{Format: "content", Offset: -1, Reason: f}, recorded: true}
			}
		}
		held, ok := s.blobGrants.Get(grantKey(rev, rep, dgst))
		if !ok || held.Evidence {
			return nil, nil
		}
		var extra []content.Class
		for _, c := range held.classes() {
			if !slices.Contains(classes, c) {
				extra = append(extra, c)
			}
		}
		if len(extra) == 0 {
			return nil, nil
		}
		din, err := content.NewDeclaredInspector(opts, extra, size)
		if err != nil {
			return extra, asFinding(err, "content")
		}
		// Tensors were compared with the MBOM over the first classes
		// (the same bytes).
		in := expectingInspector{Inspector: din, exp: exp, refs: opts.References, skipTensors: true}
		file, err := os.Open(path)
		if err != nil {
			_ = in.Close()
			return nil, err
		}
		defer file.Close()
		// The spool file holds the bytes the download just hashed to the
		// digest (nothing else writes it): read, not hashed again.
		if _, err := stored.CopyBuffer(in, io.LimitReader(file, size)); err != nil {
			_ = in.Close()
			var fd *content.Finding
			if errors.As(err, &fd) {
				return extra, &ContentFailure{finding: fd}
			}
			return nil, err
		}
		if err := in.Close(); err != nil {
			return extra, asFinding(err, "content")
		}
		return extra, nil
	}
}

// asFinding turns an inspector error into a ContentFailure.
func asFinding(err error, format string) error {
	var fd *content.Finding
	if errors.As(err, &fd) {
		return &ContentFailure{finding: fd}
	}
	return &ContentFailure{finding: &content.Finding{Format: format, Offset: -1, Reason: err.Error()}}
}

// recordInspection records the outcome of inspecting a blob: format
// results per rule, results that depend on the MBOM per expectation scope
// as well (layerScopes, findingScope). A failure purges cached decisions
// (every manifest referencing the blob in that scope is denied from then
// on).
// A finding marks the blob bad however it is declared; a pass counts only
// for the classes it was inspected as (see records.Records.PutInspected),
// recorded with the format the inspector recognised (what a VSA names).
func (s *Engine) recordInspection(ctx context.Context, rev, rule string, dgst digest.Digest, classes []content.Class, scopes []string, format string, cf *ContentFailure) {
	if cf != nil {
		if !cf.recorded {
			s.markBad(ctx, rev, rule, dgst, findingScope(cf.finding, scopes), cf.finding.Error())
		}
		return
	}
	for _, scope := range scopes {
		for _, c := range classes {
			if err := s.records.PutInspected(ctx, rev, rule, dgst, scope, c.Key(), format); err != nil {
				s.log.Warn("store: inspection record write failed", "err", err)
			}
		}
	}
}

// inspectStored runs a content rule's inspection over a stored blob unless
// it is recorded as inspected as every class of the grant under this rule,
// policy revision (and MBOM tensor expectation); it fails when the blob is
// recorded bad. A class added later (a manifest declaring the blob
// otherwise) has no record: the stored copy is inspected again, as every
// class, before it is served.
func (s *Engine) inspectStored(q *Query, grant BlobGrant, size int64) error {
	ctx := q.ctx()
	rev, rule, dgst := q.pol.Revision(), q.rule.Name, q.sub.Digest
	exp, _ := s.tensors.Get(grantKey(rev, q.repository(), dgst))
	opts := q.rule.Content.Options()
	scopes := layerScopes(exp, opts.References)
	for _, scope := range scopes {
		if f, bad, err := s.badBlob(ctx, rev, rule, dgst, scope); err != nil {
			return err
		} else if bad {
			return &ContentFailure{finding: &content.Finding{Format: "content", Offset: -1, Reason: f}, recorded: true}
		}
	}
	classes := grant.classes()
	if s.inspectedAs(ctx, rev, rule, dgst, scopes, classes) {
		return nil
	}
	// Inspected as every class again, not only the missing ones: one
	// read of the copy either way, and a finding names the class it was
	// found as among all the blob's (content.NewDeclaredInspector).
	in, err := newLayerInspector(opts, classes, size, exp, s.reportReferences(q, dgst))
	if err != nil {
		cf := asFinding(err, "content").(*ContentFailure)
		s.recordInspection(ctx, rev, rule, dgst, classes, scopes, "", cf)
		return cf
	}
	start := time.Now()
	err = s.inspectStoredWith(ctx, dgst, size, in)
	s.metrics.inspectDuration.Observe(time.Since(start).Seconds())
	var cf *ContentFailure
	if errors.As(err, &cf) {
		s.recordInspection(ctx, rev, rule, dgst, classes, scopes, "", cf)
		return cf
	}
	if err != nil {
		return err // reading the store failed: nothing is concluded about the blob
	}
	s.recordInspection(ctx, rev, rule, dgst, classes, scopes, content.FormatOf(in), nil)
	return nil
}

// InspectedFormats lists (sorted, distinct) the formats a blob is recorded
// as recognised in, inspected as its grant's classes under the query's
// content rule and policy revision: what a VSA names as the content checks
// that ran (vsa.ContentLevel). Nothing without a content rule or records.
func (s *Engine) InspectedFormats(q *Query, grant BlobGrant) []string {
	if q.rule == nil || q.rule.Content == nil || grant.Evidence || grant.Uninspected {
		return nil
	}
	ctx := q.ctx()
	rev, rule, dgst := q.pol.Revision(), q.rule.Name, q.sub.Digest
	exp, _ := s.tensors.Get(grantKey(rev, q.repository(), dgst))
	var out []string
	for _, scope := range layerScopes(exp, q.rule.Content.Options().References) {
		for _, c := range grant.classes() {
			if f, ok, err := s.records.InspectedFormat(ctx, rev, rule, dgst, scope, c.Key()); err == nil && ok && f != "" && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return out
}

// inspectedAs reports whether a blob is recorded as inspected as every
// class in every scope.
func (s *Engine) inspectedAs(ctx context.Context, rev, rule string, dgst digest.Digest, scopes []string, classes []content.Class) bool {
	for _, c := range classes {
		for _, scope := range scopes {
			if ok, err := s.records.Inspected(ctx, rev, rule, dgst, scope, c.Key()); err != nil || !ok {
				return false
			}
		}
	}
	return true
}

// inspectStoredWith feeds a stored blob through an inspector and closes it,
// re-checking its digest (content corrupted at rest is removed, never
// judged; a copy that hashed to its digest is recorded, so serving it next
// does not hash it again). Findings come back as *ContentFailure; other
// errors are store errors.
func (s *Engine) inspectStoredWith(ctx context.Context, dgst digest.Digest, size int64, in content.Inspector) error {
	c, err := stored.Open(ctx, s.store, dgst, size)
	if err != nil {
		_ = in.Close()
		return err
	}
	defer c.Close()
	if c.ID().Size != size {
		// A copy of another size than the blob's is not the blob (it is
		// read up to the blob's size only).
		_ = in.Close()
		s.StoreCorrupt(ctx, dgst, fmt.Sprintf("%d bytes stored, %d expected", c.ID().Size, size))
		return fmt.Errorf("stored blob %s is corrupted", dgst)
	}
	ferr, err := c.Inspect(in)
	var mm *verified.MismatchError
	switch {
	case errors.As(err, &mm):
		_ = in.Close()
		s.StoreCorrupt(ctx, dgst, "hashes to "+mm.Got.String())
		return fmt.Errorf("stored blob %s is corrupted", dgst)
	case err != nil:
		_ = in.Close()
		return errors.Unwrap(err) // the store's own error
	case ferr == nil:
		s.MarkVerified(c)
	}
	if cerr := in.Close(); ferr == nil {
		ferr = cerr
	}
	if ferr != nil {
		return asFinding(ferr, "content")
	}
	return nil
}

// newLayerInspector is the content inspector of one layer blob as every
// class it is declared as (content.NewDeclaredInspector), with the MBOM's
// tensor expectations for it when there are any, and the rule's
// content.references requirement (judged against the same MBOM). report,
// when set, is told the load-time references of a layer that passed.
func newLayerInspector(opts content.Options, classes []content.Class, size int64, exp *tensorExpectation, report func([]content.Reference)) (content.Inspector, error) {
	in, err := content.NewDeclaredInspector(opts, classes, size)
	if err != nil {
		return in, err
	}
	return expectingInspector{Inspector: in, exp: exp, refs: opts.References, report: report}, nil
}

// reportReferences logs the load-time references of a layer that passed
// inspection (the names its configs tell a loader to fetch by, outside
// the signed artifact): what an admin reads to see an artifact's closure.
func (s *Engine) reportReferences(q *Query, dgst digest.Digest) func([]content.Reference) {
	repo, rule := q.repository(), q.rule.Name
	return func(refs []content.Reference) {
		out := make([]string, len(refs))
		for i, r := range refs {
			out[i] = r.String()
			s.metrics.references.WithLabelValues(r.Kind).Inc()
		}
		s.log.Info("load-time references", "repository", repo, "digest", dgst, "rule", rule, "references", out)
	}
}

// classesKey names a set of classes (sorted) in fetch keys.
func classesKey(classes []content.Class) string {
	var b strings.Builder
	for i, c := range classes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.Key())
	}
	return b.String()
}

// newEvidenceInspector accepts a signature/attestation blob only if it is
// JSON of at most the evidence size limit; nothing is released before the
// whole blob was checked.
func newEvidenceInspector(mediaType string, size, limit int64) (content.Inspector, error) {
	if size > limit {
		return nil, &content.Finding{Format: "evidence", Offset: -1, Reason: fmt.Sprintf("signature/attestation blob of %d bytes exceeds the evidence limit of %d", size, limit)}
	}
	return content.NewBufferedInspector("evidence", size, limit, "signature/attestation blob exceeds the evidence limit of %d bytes", func(b []byte) error {
		if !json.Valid(b) {
			return &content.Finding{Format: "evidence", Offset: 0, Reason: "signature/attestation blob is not JSON"}
		}
		// Served under the subject's decision rather than the content
		// rules: it must be evidence, not any JSON a loader acts on.
		if err := shape.Check(mediaType, b); err != nil {
			return &content.Finding{Format: "evidence", Offset: 0, Reason: "signature/attestation blob declared " + mediaType + ": " + err.Error()}
		}
		return nil
	}), nil
}

// checkStoredEvidence checks a stored blob served as a signature/attestation
// layer the same way as one streamed from the upstream.
func (s *Engine) checkStoredEvidence(ctx context.Context, desc ocispec.Descriptor, size int64) error {
	in, err := newEvidenceInspector(desc.MediaType, size, int64(s.cfg.Limits.MaxEvidenceSize))
	if err != nil {
		return asFinding(err, "evidence")
	}
	return s.inspectStoredWith(ctx, desc.Digest, size, in)
}
