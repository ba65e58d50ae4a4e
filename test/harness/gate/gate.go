// Package gate opens the pullgate proxy under test from a generated
// pullgate.yaml and policy.yaml (see package harness for upstreams, content
// and clients).
package gate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/test/harness"
)

// Rule names of the default policy. Tests assert that clients show the deny
// rule's name, so it is distinct from any repository path.
const (
	DenyRule  = "pg-rule-quarantine"
	AllowRule = "pg-rule-open"
)

// DefaultPolicy denies <upstream>/blocked/** (rule DenyRule) and allows
// everything else of the given upstreams (rule AllowRule); anything else is
// denied by pullgate's fail-closed default.
func DefaultPolicy(upstreams ...string) string {
	var deny, allow []string
	for _, u := range upstreams {
		deny = append(deny, fmt.Sprintf("%q", u+"/blocked/**"))
		allow = append(allow, fmt.Sprintf("%q", u+"/**"))
	}
	return fmt.Sprintf(`rules:
  - name: %s
    match: [%s]
    action: deny
  - name: %s
    match: [%s]
    action: allow
`, DenyRule, strings.Join(deny, ", "), AllowRule, strings.Join(allow, ", "))
}

// Options shape the proxy under test.
type Options struct {
	Upstreams []*harness.Upstream
	// Policy is the policy YAML (default DefaultPolicy of all upstreams).
	Policy string
	// DockerConfig gives credentials through a generated Docker config.json
	// (dockerConfig:) instead of username/password.
	DockerConfig bool
	// TagTTL and OfflineGrace set every upstream's durations ("" keeps the default).
	TagTTL       string
	OfflineGrace string
	// Dir reuses a proxy directory (store, audit) from an earlier proxy.
	Dir string
	// Edit changes the config document before it is written.
	Edit func(doc map[string]any)
}

// Proxy is a running pullgate.
type Proxy struct {
	URL  string // http://127.0.0.1:port
	Host string // 127.0.0.1:port

	Dir         string
	ConfigPath  string
	PolicyPath  string
	AuditPath   string
	StoragePath string
	LogPath     string
	Config      *config.Config
	Server      *proxy.Server

	http *httptest.Server
	log  *os.File
	once sync.Once
}

// Start writes pullgate.yaml and policy.yaml into a temp dir, opens the
// proxy with proxy.Open and serves its handler on 127.0.0.1. It is closed
// when the test ends; on failure the proxy log is printed.
func Start(t testing.TB, o Options) *Proxy {
	t.Helper()
	dir := o.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	p := &Proxy{
		Dir:         dir,
		ConfigPath:  filepath.Join(dir, "pullgate.yaml"),
		PolicyPath:  filepath.Join(dir, "policy.yaml"),
		AuditPath:   filepath.Join(dir, "audit.jsonl"),
		StoragePath: filepath.Join(dir, "data"),
		LogPath:     filepath.Join(dir, "pullgate.log"),
	}
	if o.Policy == "" {
		var names []string
		for _, u := range o.Upstreams {
			names = append(names, u.Name)
		}
		o.Policy = DefaultPolicy(names...)
	}
	if err := os.WriteFile(p.PolicyPath, []byte(o.Policy), 0o600); err != nil {
		t.Fatal(err)
	}
	var ups []map[string]any
	for _, u := range o.Upstreams {
		e := map[string]any{"name": u.Name, "url": u.URL}
		if u.Creds != nil {
			if o.DockerConfig {
				e["dockerConfig"] = writeDockerConfig(t, dir, u)
			} else {
				e["username"], e["password"] = u.Creds.Username, u.Creds.Password
			}
		}
		if u.CA != nil {
			e["ca"] = u.CA.CertFile
		}
		if o.TagTTL != "" {
			e["tagTTL"] = o.TagTTL
		}
		if o.OfflineGrace != "" {
			e["offlineGrace"] = o.OfflineGrace
		}
		ups = append(ups, e)
	}
	doc := map[string]any{
		"listen":    "127.0.0.1:0",
		"storage":   map[string]any{"path": p.StoragePath},
		"upstreams": ups,
		"policy":    p.PolicyPath,
		"audit":     map[string]any{"path": p.AuditPath},
		"log":       map[string]any{"level": "debug", "format": "text"},
	}
	if o.Edit != nil {
		o.Edit(doc)
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.ConfigPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p.ConfigPath)
	if err != nil {
		t.Fatalf("config.Load: %v\n%s", err, b)
	}
	p.Config = cfg
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.log = logf
	logger := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := proxy.Open(context.Background(), cfg, logger)
	if err != nil {
		logf.Close()
		t.Fatalf("proxy.Open: %v", err)
	}
	p.Server = srv
	p.http = httptest.NewServer(srv.Handler())
	p.URL = p.http.URL
	p.Host = strings.TrimPrefix(p.URL, "http://")
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			if b, err := os.ReadFile(p.LogPath); err == nil {
				t.Logf("proxy log (last 6000 bytes):\n%s", tail(b, 6000))
			}
		}
	})
	return p
}

// Close stops serving and closes the proxy. Safe to call twice.
func (p *Proxy) Close() {
	p.once.Do(func() {
		p.http.CloseClientConnections()
		p.http.Close()
		_ = p.Server.Close()
		_ = p.log.Close()
	})
}

// Ref is the client-side reference of content on an upstream:
// <proxy>/<upstream>/<repo>[:tag|@digest].
func (p *Proxy) Ref(u *harness.Upstream, repoAndRef string) string {
	return p.Host + "/" + u.Name + "/" + repoAndRef
}

// Name is the client-side repository name <upstream>/<repo>.
func Name(u *harness.Upstream, repo string) string { return u.Name + "/" + repo }

// AuditEvent is one line of the audit log, kept raw plus the common fields.
type AuditEvent struct {
	Raw        map[string]any
	Decision   string
	Rule       string
	Repository string
	Digest     string
	Upstream   string
}

// Audit reads the audit log.
func (p *Proxy) Audit(t testing.TB) []AuditEvent {
	t.Helper()
	b, err := os.ReadFile(p.AuditPath)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	var out []AuditEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, sc.Text())
		}
		str := func(k string) string { s, _ := m[k].(string); return s }
		out = append(out, AuditEvent{Raw: m, Decision: str("decision"), Rule: str("rule"),
			Repository: str("repository"), Digest: str("digest"), Upstream: str("upstream")})
	}
	return out
}

// Log returns what the proxy logged so far.
func (p *Proxy) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func writeDockerConfig(t testing.TB, dir string, u *harness.Upstream) string {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(u.Creds.Username + ":" + u.Creds.Password))
	doc := map[string]any{"auths": map[string]any{u.Host: map[string]string{"auth": auth}}}
	b, _ := json.Marshal(doc)
	p := filepath.Join(dir, "docker-config-"+strings.NewReplacer(".", "-", ":", "-").Replace(u.Name)+".json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
