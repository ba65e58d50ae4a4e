package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/pullgate/pullgate/verify/strictjson"
)

// Bounds on what one report may hold. A report is operator-supplied but
// may be large (a full image scan); these keep a corrupt or hostile file
// from exhausting memory or time.
const (
	maxReportBytes  = 64 << 20 // per file
	maxResults      = 10_000   // Trivy Results[] per report
	maxVulns        = 500_000  // vulnerabilities (Trivy) or matches (Grype) per report
	maxNamedDigests = 1_000    // digests one report may name
)

// severityRank orders severities for --fail-on: higher is worse.
// "info" and "unknown" never reach a --fail-on threshold.
var severityRank = map[string]int{"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0, "unknown": -1}

// vuln is one finding of a report, scanner-neutral.
type vuln struct {
	ID, Severity, Pkg, Installed, Fixed, Title string
}

// report is a parsed Trivy or Grype report.
type report struct {
	Scanner        string    // "trivy" or "grype"
	ScannerVersion string    // the scanner's own version, when the report says
	DBVersion      string    // the vulnerability database version (see dbVersionOf)
	ScannedAt      time.Time // when the report was written, zero when unknown
	Artifact       string    // what was scanned, as the report names it
	Digests        []string  // manifest digests the report names
	Vulns          []vuln
	sum            string // SHA-256 of the report's bytes, hex
}

// parseReport recognises a Trivy (`trivy image --format json`, schema 2)
// or Grype (`grype -o json`) report by its structure and parses it.
// Anything else is an error. Reports are read one way (verify/strictjson:
// no repeated key, keys match field names exactly, nothing after the
// value, nesting bounded); keys this program does not read are ignored,
// since scanners add fields between releases.
func parseReport(data []byte) (*report, error) {
	if len(data) > maxReportBytes {
		return nil, fmt.Errorf("report is %d bytes, more than the %d allowed", len(data), maxReportBytes)
	}
	var top map[string]json.RawMessage
	if err := strictjson.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	_, hasSchema := top["SchemaVersion"]
	_, hasMatches := top["matches"]
	_, hasDescriptor := top["descriptor"]
	var r *report
	var err error
	switch {
	case hasSchema && !hasMatches:
		r, err = parseTrivy(data)
	case hasMatches && hasDescriptor && !hasSchema:
		r, err = parseGrype(data)
	default:
		return nil, errors.New("neither a Trivy JSON report (SchemaVersion, Results) nor a Grype JSON report (matches, descriptor)")
	}
	if err != nil {
		return nil, err
	}
	r.sum = sum(data)
	return r, nil
}

// trivyReport holds the fields read from a Trivy JSON report. Defined by
// aquasecurity/trivy pkg/types/report.go (Report, TrivyInfo, Metadata,
// Result), pkg/types/vulnerability.go (DetectedVulnerability, which embeds
// trivy-db pkg/types.Vulnerability: Title, Severity), pkg/version/doc
// VersionInfo (Trivy.Server, client/server mode only) and trivy-db
// pkg/metadata/metadata.go (Metadata: Version, UpdatedAt, NextUpdate,
// DownloadedAt). Trivy writes Go field names as JSON keys.
type trivyReport struct {
	SchemaVersion int
	Trivy         struct {
		Version string
		Server  struct {
			Version         string
			VulnerabilityDB *struct {
				Version   int
				UpdatedAt time.Time
			}
		}
	}
	CreatedAt    time.Time
	ArtifactName string
	ArtifactType string
	Metadata     struct {
		ImageID     string
		RepoTags    []string
		RepoDigests []string
	}
	Results []struct {
		Target          string
		Class           string
		Vulnerabilities []struct {
			VulnerabilityID  string
			PkgName          string
			InstalledVersion string
			FixedVersion     string
			Title            string
			Severity         string
		}
	}
}

func parseTrivy(data []byte) (*report, error) {
	var t trivyReport
	if err := strictjson.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("trivy report: %w", err)
	}
	if t.SchemaVersion != 2 {
		return nil, fmt.Errorf("trivy report: SchemaVersion %d, want 2", t.SchemaVersion)
	}
	if len(t.Results) > maxResults {
		return nil, fmt.Errorf("trivy report: %d Results, more than the %d allowed", len(t.Results), maxResults)
	}
	r := &report{
		Scanner:        "trivy",
		ScannerVersion: t.Trivy.Version,
		ScannedAt:      t.CreatedAt,
		Artifact:       t.ArtifactName,
	}
	// The vulnerability database is named in the report only in
	// client/server mode (Trivy.Server.VulnerabilityDB); standalone
	// reports leave dbVersion to the caller (see dbVersionOf).
	if db := t.Trivy.Server.VulnerabilityDB; db != nil && !db.UpdatedAt.IsZero() {
		r.DBVersion = fmt.Sprintf("trivy-db v%d %s", db.Version, db.UpdatedAt.UTC().Format(time.RFC3339))
	}
	names := append([]string{t.ArtifactName}, t.Metadata.RepoDigests...)
	if err := r.addDigests(names); err != nil {
		return nil, fmt.Errorf("trivy report: %w", err)
	}
	for i, res := range t.Results {
		for j, v := range res.Vulnerabilities {
			if len(r.Vulns) >= maxVulns {
				return nil, fmt.Errorf("trivy report: more than %d vulnerabilities", maxVulns)
			}
			if v.VulnerabilityID == "" {
				return nil, fmt.Errorf("trivy report: Results[%d].Vulnerabilities[%d] has no VulnerabilityID", i, j)
			}
			sev, err := trivySeverity(v.Severity)
			if err != nil {
				return nil, fmt.Errorf("trivy report: Results[%d].Vulnerabilities[%d] (%s): %w", i, j, v.VulnerabilityID, err)
			}
			r.Vulns = append(r.Vulns, vuln{ID: v.VulnerabilityID, Severity: sev, Pkg: v.PkgName,
				Installed: v.InstalledVersion, Fixed: v.FixedVersion, Title: v.Title})
		}
	}
	return r, nil
}

// trivySeverity maps trivy-db's severity names (pkg/types/types.go
// SeverityNames: UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL) to the contract's.
func trivySeverity(s string) (string, error) {
	switch l := strings.ToLower(s); l {
	case "critical", "high", "medium", "low", "unknown":
		return l, nil
	case "":
		return "unknown", nil
	}
	return "", fmt.Errorf("severity %q is not one of Trivy's (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN)", s)
}

// grypeReport holds the fields read from a Grype JSON report. Defined by
// anchore/grype grype/presenter/models/document.go (Document: matches,
// source, descriptor), match.go (Match: vulnerability, artifact),
// vulnerability.go (Vulnerability: fix {versions, state}),
// vulnerability_metadata.go (id, severity), package.go (Package: name,
// version), source.go (source {type, target}; an image target is syft's
// syft/source/image_metadata.go ImageMetadata: userInput, imageID,
// manifestDigest, tags, repoDigests) and descriptor.go (name, version,
// db, timestamp). descriptor.db is, since the v6 database,
// cmd/grype/cli/commands/root.go dbInfo {status, providers} with status
// grype/vulnerability/provider.go ProviderStatus {schemaVersion, from,
// built, valid}; before it (v5), grype/db/v5 distribution Status {built,
// schemaVersion, location, checksum}: both are read.
type grypeReport struct {
	Matches []struct {
		Vulnerability struct {
			ID       string `json:"id"`
			Severity string `json:"severity"`
			Fix      struct {
				Versions []string `json:"versions"`
				State    string   `json:"state"`
			} `json:"fix"`
			Description string `json:"description"`
		} `json:"vulnerability"`
		Artifact struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"artifact"`
	} `json:"matches"`
	Source *struct {
		Type   string          `json:"type"`
		Target json.RawMessage `json:"target"`
	} `json:"source"`
	Descriptor struct {
		Name      string          `json:"name"`
		Version   string          `json:"version"`
		DB        json.RawMessage `json:"db"`
		Timestamp string          `json:"timestamp"`
	} `json:"descriptor"`
}

// grypeImageTarget is source.target when source.type is "image".
type grypeImageTarget struct {
	UserInput      string   `json:"userInput"`
	ImageID        string   `json:"imageID"`
	ManifestDigest string   `json:"manifestDigest"`
	Tags           []string `json:"tags"`
	RepoDigests    []string `json:"repoDigests"`
}

// grypeDBStatus is the part of a database status read for dbVersion.
type grypeDBStatus struct {
	Built         string          `json:"built"`
	SchemaVersion json.RawMessage `json:"schemaVersion"` // "v6.0.2" (v6) or 5 (v5)
	Checksum      string          `json:"checksum"`
}

func parseGrype(data []byte) (*report, error) {
	var g grypeReport
	if err := strictjson.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("grype report: %w", err)
	}
	if g.Descriptor.Name != "grype" {
		return nil, fmt.Errorf("grype report: descriptor.name is %q, want \"grype\"", g.Descriptor.Name)
	}
	if len(g.Matches) > maxVulns {
		return nil, fmt.Errorf("grype report: %d matches, more than the %d allowed", len(g.Matches), maxVulns)
	}
	r := &report{Scanner: "grype", ScannerVersion: g.Descriptor.Version}
	if g.Descriptor.Timestamp != "" {
		if ts, err := time.Parse(time.RFC3339Nano, g.Descriptor.Timestamp); err == nil {
			r.ScannedAt = ts
		}
	}
	if db, err := grypeDBVersion(g.Descriptor.DB); err != nil {
		return nil, fmt.Errorf("grype report: descriptor.db: %w", err)
	} else {
		r.DBVersion = db
	}
	if g.Source != nil && g.Source.Type == "image" {
		var tgt grypeImageTarget
		if err := strictjson.Unmarshal(g.Source.Target, &tgt); err != nil {
			return nil, fmt.Errorf("grype report: source.target: %w", err)
		}
		r.Artifact = tgt.UserInput
		names := append([]string{tgt.UserInput, tgt.ManifestDigest}, tgt.RepoDigests...)
		if err := r.addDigests(names); err != nil {
			return nil, fmt.Errorf("grype report: %w", err)
		}
	}
	for i, m := range g.Matches {
		v := m.Vulnerability
		if v.ID == "" {
			return nil, fmt.Errorf("grype report: matches[%d] has no vulnerability.id", i)
		}
		sev, err := grypeSeverity(v.Severity)
		if err != nil {
			return nil, fmt.Errorf("grype report: matches[%d] (%s): %w", i, v.ID, err)
		}
		fixed := ""
		if v.Fix.State == "fixed" || len(v.Fix.Versions) > 0 {
			fixed = strings.Join(v.Fix.Versions, ", ")
			if fixed == "" {
				fixed = "a later version"
			}
		}
		r.Vulns = append(r.Vulns, vuln{ID: v.ID, Severity: sev, Pkg: m.Artifact.Name,
			Installed: m.Artifact.Version, Fixed: fixed, Title: v.Description})
	}
	return r, nil
}

// grypeDBVersion names the database of descriptor.db: "<schema> built
// <time>" (v6: db.status; v5: db itself), or "" when absent.
func grypeDBVersion(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var db struct {
		Status *grypeDBStatus `json:"status"`
		grypeDBStatus
	}
	if err := strictjson.Unmarshal(raw, &db); err != nil {
		return "", err
	}
	st := db.grypeDBStatus
	if db.Status != nil {
		st = *db.Status
	}
	if st.Built == "" {
		return "", nil
	}
	built, err := time.Parse(time.RFC3339Nano, st.Built)
	if err != nil {
		return "", fmt.Errorf("built: %w", err)
	}
	schema := strings.Trim(string(st.SchemaVersion), `"`)
	if schema == "" || schema == "null" {
		schema = "?"
	}
	return fmt.Sprintf("grype-db %s %s", schema, built.UTC().Format(time.RFC3339)), nil
}

// grypeSeverity maps Grype's severities (grype/vulnerability/severity.go:
// Unknown, Negligible, Low, Medium, High, Critical) to the contract's;
// Negligible becomes info. The names come from the database's metadata
// ("Critical", "Low", ...): matched without regard to case.
func grypeSeverity(s string) (string, error) {
	switch l := strings.ToLower(s); l {
	case "critical", "high", "medium", "low", "unknown":
		return l, nil
	case "negligible":
		return "info", nil
	case "":
		return "unknown", nil
	}
	return "", fmt.Errorf("severity %q is not one of Grype's (Critical, High, Medium, Low, Negligible, Unknown)", s)
}

// addDigests records the manifest digests named by references such as
// "registry/repo@sha256:..." or a bare "sha256:...". Names without a
// well-formed digest (tags, image IDs are not indexed) are skipped.
func (r *report) addDigests(names []string) error {
	seen := map[string]bool{}
	for _, d := range r.Digests {
		seen[d] = true
	}
	for _, n := range names {
		d := n
		if i := strings.LastIndexByte(n, '@'); i >= 0 {
			d = n[i+1:]
		} else if !strings.Contains(n, ":") || strings.Contains(n, "/") {
			continue
		}
		if !validDigest(d) || seen[d] {
			continue
		}
		if len(r.Digests) >= maxNamedDigests {
			return fmt.Errorf("names more than %d digests", maxNamedDigests)
		}
		seen[d] = true
		r.Digests = append(r.Digests, d)
	}
	return nil
}

// validDigest accepts sha256 and sha512 digests in canonical (lower hex)
// form, the only ones pullgate asks about.
func validDigest(s string) bool {
	d, err := digest.Parse(s)
	return err == nil && (d.Algorithm() == digest.SHA256 || d.Algorithm() == digest.SHA512)
}
