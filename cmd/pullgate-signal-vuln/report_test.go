package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Files that are not Trivy or Grype reports, or break their shape, are
// rejected with a message naming the problem.
func TestParseReportRejects(t *testing.T) {
	trivy, err := os.ReadFile("testdata/trivy-critical.json")
	if err != nil {
		t.Fatal(err)
	}
	grype, err := os.ReadFile("testdata/grype-low.json")
	if err != nil {
		t.Fatal(err)
	}
	tr, gr := string(trivy), string(grype)
	for _, tc := range []struct{ name, data, msg string }{
		{"empty", "", "not a JSON object"},
		{"array", "[]", "not a JSON object"},
		{"other JSON", `{"bomFormat": "CycloneDX"}`, "neither a Trivy"},
		{"both shapes", `{"SchemaVersion": 2, "matches": [], "descriptor": {}}`, "neither a Trivy"},
		{"trivy schema 1", strings.Replace(tr, `"SchemaVersion": 2`, `"SchemaVersion": 1`, 1), "SchemaVersion 1, want 2"},
		{"trivy unknown severity", strings.Replace(tr, `"Severity": "HIGH"`, `"Severity": "URGENT"`, 1), `severity "URGENT"`},
		{"trivy no id", strings.Replace(tr, `"VulnerabilityID": "CVE-2023-0286"`, `"VulnerabilityID": ""`, 1), "no VulnerabilityID"},
		{"trivy wrong type", strings.Replace(tr, `"RepoDigests": [`, `"RepoDigests": 7, "x": [`, 1), "trivy report"},
		{"trivy trailing data", tr + "{}", "data after the JSON value"},
		{"trivy repeated key", strings.Replace(tr, `"Severity": "LOW"`, `"Severity": "LOW", "Severity": "CRITICAL"`, 1), "not a JSON object"},
		{"trivy key in another case", strings.Replace(tr, `"Severity": "LOW"`, `"severity": "LOW"`, 1), "trivy report"},
		{"grype other tool", strings.Replace(gr, `"name": "grype"`, `"name": "trivy"`, 1), `descriptor.name is "trivy"`},
		{"grype unknown severity", strings.Replace(gr, `"severity": "Low"`, `"severity": "Lowish"`, 1), `severity "Lowish"`},
		{"grype bad db time", strings.Replace(gr, `"built": "2026-12-01T04:08:24Z"`, `"built": "yesterday"`, 1), "descriptor.db: built"},
		{"grype target not an object", `{"matches": [], "descriptor": {"name": "grype"}, "source": {"type": "image", "target": 5}}`, "source.target"},
		{"grype match not an object", `{"matches": [5], "descriptor": {"name": "grype"}}`, "grype report"},
		{"too large", strings.Repeat(" ", maxReportBytes+1), "more than the"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseReport([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("parseReport = %+v, %v; want an error with %q", r, err, tc.msg)
			}
		})
	}
}

// The digests a report names: references with @digest and bare digests;
// tags and malformed digests are not indexed.
func TestReportDigests(t *testing.T) {
	var r report
	d := "sha256:" + strings.Repeat("0a", 32)
	err := r.addDigests([]string{
		"reg.example/a@" + d, d, "reg.example/a:1.0", "sha256:ABC", "reg.example/a@sha256:" + strings.Repeat("0A", 32),
		"md5:" + strings.Repeat("0", 32), "sha512:" + strings.Repeat("f", 128), "",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{d, "sha512:" + strings.Repeat("f", 128)}
	if strings.Join(r.Digests, " ") != strings.Join(want, " ") {
		t.Fatalf("digests = %v, want %v", r.Digests, want)
	}
}

// FuzzParseReport feeds the Trivy and Grype parsers arbitrary bytes
// (seeds: the test data): no panic, and what parses keeps the invariants
// the answers rely on.
func FuzzParseReport(f *testing.F) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"VulnerabilityID":"x","Severity":"low"}]}]}`))
	f.Add([]byte(`{"matches":[{"vulnerability":{"id":"x","severity":"Negligible"}}],"descriptor":{"name":"grype","db":{"built":"2026-01-01T00:00:00Z","schemaVersion":5}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseReport(data)
		if err != nil {
			return
		}
		if r.Scanner != "trivy" && r.Scanner != "grype" {
			t.Fatalf("scanner %q", r.Scanner)
		}
		for _, d := range r.Digests {
			if !validDigest(d) {
				t.Fatalf("indexed digest %q", d)
			}
		}
		for _, v := range r.Vulns {
			if _, ok := severityRank[v.Severity]; !ok || v.ID == "" {
				t.Fatalf("finding %+v", v)
			}
		}
	})
}
