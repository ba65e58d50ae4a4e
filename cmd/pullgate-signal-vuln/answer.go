package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/pullgate/pullgate/verify/signals"
	"github.com/pullgate/pullgate/verify/strictjson"
)

// providerName is the provider.name of every answer.
const providerName = "pullgate-signal-vuln"

// maxRequestBytes caps a request (stdin or HTTP body).
const maxRequestBytes = 1 << 20

// errBadRequest marks a request that cannot be answered as sent.
var errBadRequest = errors.New("malformed request")

// readRequest decodes one signals.Request (at most maxRequestBytes) and
// checks what the answer depends on: the API version and the digest. It
// is read one way (verify/strictjson); fields this program does not read
// are allowed (the contract may grow).
func readRequest(r io.Reader) (*signals.Request, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading: %v", errBadRequest, err)
	}
	if len(data) > maxRequestBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", errBadRequest, maxRequestBytes)
	}
	var req signals.Request
	if err := strictjson.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if req.APIVersion != signals.APIVersion {
		return nil, fmt.Errorf("%w: apiVersion %q, want %q", errBadRequest, req.APIVersion, signals.APIVersion)
	}
	if !validDigest(req.Subject.Digest) {
		return nil, fmt.Errorf("%w: subject.digest %q is not a sha256 or sha512 digest", errBadRequest, req.Subject.Digest)
	}
	return &req, nil
}

// options are the answer's settings from the command line.
type options struct {
	failOn      string // lowest severity that makes the verdict "vulnerable"
	maxFindings int    // findings listed in an answer (counts cover all)
}

// answer builds the Answer about req's digest from the index.
func answer(ix *index, req *signals.Request, opt options) *signals.Answer {
	a := &signals.Answer{
		APIVersion: signals.APIVersion,
		Provider:   signals.ProviderInfo{Name: providerName, Version: version},
	}
	a.Subject.Digest = req.Subject.Digest
	it := ix.lookup(req.Subject.Digest)
	if it == nil {
		// Not scanned yet: the policy's onPending decides.
		a.Status = signals.StatusPending
		return a
	}
	rep := it.rep
	a.Status = signals.StatusDone
	a.Provider.DBVersion = dbVersionOf(it)

	counts := map[string]int{}
	for _, s := range signals.Severities {
		counts[s] = 0
	}
	fixable := 0
	vulnerable := false
	findings := make([]signals.Finding, 0, len(rep.Vulns))
	for _, v := range rep.Vulns {
		counts[v.Severity]++
		if v.Fixed != "" {
			fixable++
		}
		if severityRank[v.Severity] >= severityRank[opt.failOn] {
			vulnerable = true
		}
		findings = append(findings, signals.Finding{ID: v.ID, Severity: v.Severity, Message: message(v)})
	}
	sort.SliceStable(findings, func(i, j int) bool {
		if ri, rj := severityRank[findings[i].Severity], severityRank[findings[j].Severity]; ri != rj {
			return ri > rj
		}
		if findings[i].ID != findings[j].ID {
			return findings[i].ID < findings[j].ID
		}
		return findings[i].Message < findings[j].Message
	})
	facts := map[string]any{
		"scanner":      rep.Scanner,
		"counts":       counts,
		"report":       it.file,
		"reportDigest": "sha256:" + rep.sum,
		"fixable":      fixable,
		"total":        len(rep.Vulns),
		"failOn":       opt.failOn,
	}
	if rep.ScannerVersion != "" {
		facts["scannerVersion"] = rep.ScannerVersion
	}
	if rep.Artifact != "" {
		facts["artifact"] = rep.Artifact
	}
	if !rep.ScannedAt.IsZero() {
		facts["scannedAt"] = rep.ScannedAt.UTC().Format(time.RFC3339)
	}
	if len(findings) > opt.maxFindings {
		findings = findings[:opt.maxFindings]
		facts["findingsTruncated"] = true
	}
	a.Verdict = "clean"
	if vulnerable {
		a.Verdict = "vulnerable"
	}
	a.Findings = findings
	a.Facts = facts
	return a
}

// dbVersionOf is the answer's provider.dbVersion: the scanner's database
// as the report names it (Trivy client/server: Trivy.Server.VulnerabilityDB;
// Grype: descriptor.db), else the report itself (its SHA-256): a re-scan
// with a newer database writes a new report, which makes earlier answers
// stale either way.
func dbVersionOf(it *indexed) string {
	if it.rep.DBVersion != "" {
		return it.rep.DBVersion
	}
	return "report sha256:" + it.rep.sum
}

// message is a finding's text: "pkg version (fixed in X)".
func message(v vuln) string {
	fix := "no fix"
	if v.Fixed != "" {
		fix = "fixed in " + v.Fixed
	}
	m := fmt.Sprintf("%s %s (%s)", v.Pkg, v.Installed, fix)
	if v.Title != "" {
		const maxTitle = 200
		t := v.Title
		if len(t) > maxTitle {
			t = t[:maxTitle] + "..."
		}
		m += ": " + t
	}
	return m
}

// writeAnswer writes a as one line of JSON.
func writeAnswer(w io.Writer, a *signals.Answer) error {
	return json.NewEncoder(w).Encode(a)
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
