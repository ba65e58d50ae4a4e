package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/verify/signals"
)

const base = "policy: p\nupstreams: [{name: a.b, url: https://x}]\n"

func TestSignalsConfig(t *testing.T) {
	dir := t.TempDir()
	const dg = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	scan := filepath.Join(dir, "bin", "scan.sh")
	if err := os.MkdirAll(filepath.Dir(scan), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(scan, []byte(`#!/bin/sh
cat >/dev/null
printf '{"apiVersion":"`+signals.APIVersion+`","provider":{"name":"scanner","version":"1"},"subject":{"digest":"`+dg+`"},"status":"done","verdict":"%s"}' "$1"
`), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "pullgate.yaml")
	// The example of docs/signals.md and README.md.
	if err := os.WriteFile(cfg, []byte(base+`
signals:
  - name: sandbox
    url: https://sandbox.internal/v1/signals
    ca: ./sandbox-ca.pem
    tokenFile: /run/secrets/sandbox-token
    timeout: 2s
    cacheTTL: 1h
    onError: deny
    onPending: deny
  - name: scanner
    exec: ./bin/scan.sh
    args: [clean]
    timeout: 5s
    onPending: ignore
    retries: 0
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ps := c.SignalProviders()
	if len(ps) != 2 {
		t.Fatalf("%+v", ps)
	}
	sb, sc := ps[0], ps[1]
	if sb.CA != filepath.Join(dir, "sandbox-ca.pem") || sb.TokenFile != "/run/secrets/sandbox-token" || sb.Timeout != 2*time.Second ||
		sb.CacheTTL != time.Hour || sb.OnError != "deny" || sb.MaxConcurrent != 8 || sb.Retries != 1 {
		t.Errorf("sandbox: %+v", sb)
	}
	if sc.Exec != scan || sc.CacheTTL != time.Hour || sc.OnError != "deny" || sc.OnPending != "ignore" || sc.Retries >= 0 {
		t.Errorf("scanner: %+v", sc)
	}
	// The resolved exec provider runs.
	s, err := signals.NewService(ps[1:], signals.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, _ := s.Provider("scanner"); p.Retries != 0 {
		t.Errorf("retries: 0 became %d", p.Retries)
	}
	r := s.Ask(context.Background(), "scanner", signals.Request{Subject: signals.Subject{Digest: dg}})
	if r.Err != nil || r.Answer.Verdict != "clean" {
		t.Fatalf("%+v %v", r.Answer, r.Err)
	}
}

func TestSignalsConfigErrors(t *testing.T) {
	for name, c := range map[string]struct{ yaml, want string }{
		"bad name":     {"signals: [{name: Sand-box, exec: /x}]", "must match"},
		"cel keyword":  {"signals: [{name: 9x, exec: /x}]", "must match"},
		"duplicate":    {"signals: [{name: s, exec: /x}, {name: s, exec: /y}]", "duplicate"},
		"both":         {"signals: [{name: s, exec: /x, url: https://h}]", "exactly one of url and exec"},
		"neither":      {"signals: [{name: s}]", "exactly one of url and exec"},
		"http":         {"signals: [{name: s, url: http://h/v1}]", "https"},
		"userinfo":     {"signals: [{name: s, url: https://u:p@h/v1}]", "credentials"},
		"allow":        {"signals: [{name: s, exec: /x, onError: allow}]", "use deny or ignore"},
		"pending":      {"signals: [{name: s, exec: /x, onPending: maybe}]", "use deny or ignore"},
		"half mTLS":    {"signals: [{name: s, url: https://h, clientCert: c.pem}]", "go together"},
		"tls on exec":  {"signals: [{name: s, exec: /x, ca: ca.pem}]", "go with url"},
		"args on url":  {"signals: [{name: s, url: https://h, args: [a]}]", "go with exec"},
		"negative":     {"signals: [{name: s, exec: /x, retries: -1}]", "negative"},
		"bad duration": {"signals: [{name: s, exec: /x, timeout: soon}]", "not a duration"},
		"unknown key":  {"signals: [{name: s, exec: /x, policy: allow}]", "policy"},
	} {
		_, err := Parse([]byte(base + c.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
