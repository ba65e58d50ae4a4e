package signals

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// realAnswers are answers as providers write them (the seed corpus).
func realAnswers() []string {
	return []string{
		answerJSON(digestA, StatusDone, "db-1", `"verdict":"clean"`),
		answerJSON(digestA, StatusPending, "", ``),
		answerJSON(digestA, StatusDone, "2026-12-06T00:00:00Z", `"verdict":"malicious","findings":[{"id":"CVE-2026-0001","severity":"critical","message":"pickle GLOBAL os.system"},{"id":"net","severity":"info"}],"facts":{"egressAttempts":2,"sandbox":{"gpu":false}},"ttl":300`),
		answerJSON(digestA, StatusDone, "db-1", `"evidence":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{}}]`),
	}
}

func TestParseAnswer(t *testing.T) {
	for i, a := range realAnswers() {
		if _, err := ParseAnswer([]byte(a), digestA); err != nil {
			t.Errorf("answer %d refused: %v", i, err)
		}
	}
	base := func(extra string) string { return answerJSON(digestA, StatusDone, "db-1", extra) }
	many := func(n int, item string) string {
		return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
	}
	for name, c := range map[string]struct{ in, kind, msg string }{
		"not JSON":          {`scan ok`, KindMalformed, "not a JSON object"},
		"array":             {`[` + base("") + `]`, KindMalformed, "not a JSON object"},
		"unknown field":     {base(`"decision":"allow"`), KindMalformed, "decision"},
		"unknown nested":    {strings.Replace(base(""), `"version"`, `"build":"x","version"`, 1), KindMalformed, "build"},
		"duplicate key":     {base(`"verdict":"malicious","verdict":"clean"`), KindMalformed, "verdict"},
		"case-folded key":   {base(`"Verdict":"clean"`), KindMalformed, "Verdict"},
		"trailing data":     {base("") + `{}`, KindMalformed, "after the JSON value"},
		"apiVersion":        {strings.Replace(base(""), APIVersion, "pullgate.dev/signals/v0", 1), KindMalformed, "apiVersion"},
		"no version":        {strings.Replace(base(""), `"version":"1.2.0"`, `"version":""`, 1), KindMalformed, "provider.version"},
		"no name":           {strings.Replace(base(""), `"name":"sandbox"`, `"name":""`, 1), KindMalformed, "provider.name"},
		"status":            {answerJSON(digestA, "complete", "", ""), KindMalformed, "status"},
		"other digest":      {answerJSON(digestB, StatusDone, "", ""), KindSubject, digestB},
		"no digest":         {strings.Replace(base(""), digestA, "", 1), KindSubject, "asked about"},
		"severity":          {base(`"findings":[{"id":"x","severity":"severe"}]`), KindMalformed, "severity"},
		"finding id":        {base(`"findings":[{"severity":"low"}]`), KindMalformed, "id is required"},
		"facts array":       {base(`"facts":[1]`), KindMalformed, "facts"},
		"facts null":        {base(`"facts":null`), KindMalformed, "facts must be a JSON object"},
		"facts dup":         {base(`"facts":{"a":1,"a":2}`), KindMalformed, "facts"},
		"too many findings": {base(`"findings":[` + many(MaxFindings+1, `{"id":"x","severity":"low"}`) + `]`), KindMalformed, "findings"},
		"too much evidence": {base(`"evidence":[` + many(MaxEvidence+1, `{}`) + `]`), KindMalformed, "evidence items"},
		"evidence string":   {base(`"evidence":["x"]`), KindMalformed, "evidence[0]"},
		"negative ttl":      {base(`"ttl":-1`), KindMalformed, "ttl"},
		"fraction ttl":      {base(`"ttl":1.5`), KindMalformed, "ttl"},
		"too large":         {base(`"verdict":"` + strings.Repeat("a", MaxAnswerSize) + `"`), KindMalformed, "larger than"},
		"invalid UTF-8":     {base(`"verdict":"` + "\xff" + `"`), KindMalformed, "UTF-8"},
	} {
		a, err := ParseAnswer([]byte(c.in), digestA)
		var e *Error
		if a != nil || !errors.As(err, &e) || e.Kind != c.kind || !strings.Contains(e.Msg, c.msg) {
			t.Errorf("%s: %v, want kind %s with %q", name, err, c.kind, c.msg)
		}
	}
	// At the bounds: accepted.
	if _, err := ParseAnswer([]byte(base(`"findings":[`+many(MaxFindings, `{"id":"x","severity":"low"}`)+`],"evidence":[`+many(MaxEvidence, `{}`)+`]`)), digestA); err != nil {
		t.Errorf("at the bounds: %v", err)
	}
}

func FuzzParseAnswer(f *testing.F) {
	for _, a := range realAnswers() {
		f.Add([]byte(a))
	}
	f.Add([]byte(answerJSON(digestB, StatusDone, "", "")))
	f.Add([]byte(answerJSON(digestA, StatusDone, "", `"verdict":"a","verdict":"b"`)))
	f.Add([]byte(answerJSON(digestA, StatusDone, "", `"facts":null,"ttl":-3`)))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := ParseAnswer(in, digestA)
		if (a == nil) == (err == nil) {
			t.Fatalf("answer %v and error %v", a, err)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Kind != KindMalformed && e.Kind != KindSubject) {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		if a.Subject.Digest != digestA || a.APIVersion != APIVersion || a.Provider.Version == "" || a.TTL < 0 ||
			(a.Status != StatusDone && a.Status != StatusPending) || len(a.Findings) > MaxFindings || len(a.Evidence) > MaxEvidence {
			t.Fatalf("accepted %+v", a)
		}
		for _, fi := range a.Findings {
			if !validSeverity(fi.Severity) {
				t.Fatalf("severity %q accepted", fi.Severity)
			}
		}
	})
}

// What a provider sends is repeated in reasons, audit lines and
// pullgate verify's output only short and printable.
func TestParseAnswerLabels(t *testing.T) {
	const d = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	ans := func(name, version, db, verdict string) string {
		b, _ := json.Marshal(map[string]any{"apiVersion": APIVersion, "provider": map[string]any{"name": name, "version": version, "dbVersion": db},
			"subject": map[string]any{"digest": d}, "status": StatusDone, "verdict": verdict})
		return string(b)
	}
	for name, a := range map[string]string{
		"long verdict":      ans("p", "1", "db", strings.Repeat("v", 129)),
		"escape in version": ans("p", "1\x1b[31m", "db", "clean"),
		"bidi in name":      ans("p\u202e", "1", "db", "clean"),
		"newline in db":     ans("p", "1", "db\n", "clean"),
	} {
		if _, err := ParseAnswer([]byte(a), d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseAnswer([]byte(ans("acme-sandbox", "1.4.0+build.7", "2026-12-01T00:00:00Z", "clean")), d); err != nil {
		t.Fatal(err)
	}
	// A long subject is quoted clipped in the error.
	long := strings.Replace(ans("p", "1", "db", "clean"), d, strings.Repeat("x", 1<<16), 1)
	_, err := ParseAnswer([]byte(long), d)
	if err == nil || len(err.Error()) > 500 {
		t.Fatalf("error of %d bytes: %.200v", len(err.Error()), err)
	}
}
