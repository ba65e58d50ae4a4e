package nodecheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

const pg = "10.96.100.50:5000"

var regs = []string{"docker.io", "ghcr.io", "registry.example.com"}

// tree is a node's files, by node path.
type tree map[string]string

func (tr tree) with(path, content string) tree {
	out := tree{}
	for k, v := range tr {
		out[k] = v
	}
	if content == "" {
		delete(out, path)
	} else {
		out[path] = content
	}
	return out
}

func (tr tree) write(t testing.TB) string {
	root := t.TempDir()
	for p, c := range tr {
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// hostsPG is the one-decision form: server is the only pull route, and a
// push-only [host] table satisfies containerd 1.6.
const hostsPG = `server = "http://10.96.100.50:5000"
capabilities = ["pull", "resolve"]

[host."http://10.96.100.50:5000"]
  capabilities = ["push"]
`

// hostsTwice has pullgate as a pulling [host] and as server.
const hostsTwice = `server = "http://10.96.100.50:5000"

[host."http://10.96.100.50:5000"]
  capabilities = ["pull", "resolve"]
`

const configV2 = `version = 2

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`

// goodContainerd routes every registry through pullgate, one decision per pull.
var goodContainerd = tree{
	"/etc/containerd/config.toml":                             configV2,
	"/etc/containerd/certs.d/docker.io/hosts.toml":            hostsPG,
	"/etc/containerd/certs.d/ghcr.io/hosts.toml":              hostsPG,
	"/etc/containerd/certs.d/registry.example.com/hosts.toml": hostsPG,
	"/etc/containerd/certs.d/_default/hosts.toml":             hostsPG,
}

const registriesPG = `unqualified-search-registries = ["docker.io"]
short-name-mode = "enforcing"

[[registry]]
prefix = "docker.io"
location = "10.96.100.50:5000/docker.io"
insecure = true

[[registry]]
prefix = "ghcr.io"
location = "10.96.100.50:5000/ghcr.io"
insecure = true

[[registry]]
prefix = "registry.example.com"
location = "10.96.100.50:5000/registry.example.com"
insecure = true
`

const policyReject = `{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {
      "docker.io": [{"type": "insecureAcceptAnything"}],
      "ghcr.io": [{"type": "insecureAcceptAnything"}],
      "registry.example.com": [{"type": "insecureAcceptAnything"}]
    }
  }
}
`

var goodContainers = tree{
	"/etc/containers/registries.conf": registriesPG,
	"/etc/containers/policy.json":     policyReject,
}

func check(t *testing.T, tr tree) *Report {
	t.Helper()
	root := tr.write(t)
	rep, err := Check(Options{Root: root, Pullgate: pg, Registries: regs, Paths: NodePaths()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rep.Findings {
		rep.Findings[i].File = strings.TrimPrefix(rep.Findings[i].File, root)
	}
	return rep
}

func TestGoodTrees(t *testing.T) {
	// registries.conf cannot close unlisted registries: policy.json keeps
	// their images out, but requests still leave the node (a warning).
	rep := check(t, goodContainers)
	if len(rep.Findings) != 1 || rep.Findings[0].Severity != Warning || rep.Findings[0].File != "/etc/containers/policy.json" {
		t.Errorf("containers tree: want the policy.json warning only, got %+v", rep.Findings)
	}
	rep = check(t, goodContainerd)
	if len(rep.Findings) != 0 {
		t.Errorf("containerd tree: want no finding, got %+v", rep.Findings)
	}
	// containerd 2.x config (version 3) reads the same certs.d.
	rep = check(t, goodContainerd.with("/etc/containerd/config.toml", "version = 3\n\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"))
	if rep.Errors() != 0 {
		t.Errorf("containerd v3 tree: want no error, got %+v", rep.Findings)
	}
}

func TestDefects(t *testing.T) {
	cases := []struct {
		name     string
		tree     tree
		severity string
		file     string
		line     int
		route    string // substring
	}{
		{"containerd ghcr.io missing", goodContainerd.with("/etc/containerd/certs.d/ghcr.io/hosts.toml", "").with("/etc/containerd/certs.d/_default/hosts.toml", ""),
			Error, "/etc/containerd/certs.d/ghcr.io/hosts.toml", 0, "ghcr.io/... pulls go straight to ghcr.io"},
		{"containerd unlisted without _default", goodContainerd.with("/etc/containerd/certs.d/_default/hosts.toml", ""),
			Error, "/etc/containerd/certs.d/_default/hosts.toml", 0, "quay.io"},
		{"hosts.toml typo in table", goodContainerd.with("/etc/containerd/certs.d/docker.io/hosts.toml", "server = \"http://10.96.100.50:5000\"\n\n[hosts.\"http://10.96.100.50:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
			Error, "/etc/containerd/certs.d/docker.io/hosts.toml", 3, `unknown key "hosts.`},
		{"hosts.toml typo in key", goodContainerd.with("/etc/containerd/certs.d/docker.io/hosts.toml", "server = \"http://10.96.100.50:5000\"\n\n[host.\"http://10.96.100.50:5000\"]\n  capabilites = [\"pull\", \"resolve\"]\n"),
			Error, "/etc/containerd/certs.d/docker.io/hosts.toml", 4, `unknown key "host.http://10.96.100.50:5000.capabilites"`},
		{"hosts.toml misspelled server", goodContainerd.with("/etc/containerd/certs.d/ghcr.io/hosts.toml", strings.Replace(hostsPG, "server =", "sever =", 1)),
			Error, "/etc/containerd/certs.d/ghcr.io/hosts.toml", 1, `unknown key "sever"`},
		{"hosts.toml syntax error", goodContainerd.with("/etc/containerd/certs.d/docker.io/hosts.toml", "server = \"http://10.96.100.50:5000\"\n[host.\"http://10.96.100.50:5000\"\n"),
			Error, "/etc/containerd/certs.d/docker.io/hosts.toml", 2, "containerd 1.6 ignores the whole file"},
		{"hosts.toml only server upstream", goodContainerd.with("/etc/containerd/certs.d/docker.io/hosts.toml", "# comment\nserver = \"https://registry-1.docker.io\"\n"),
			Error, "/etc/containerd/certs.d/docker.io/hosts.toml", 2, "goes straight to https://registry-1.docker.io"},
		{"hosts.toml only server pullgate", goodContainerd.with("/etc/containerd/certs.d/docker.io/hosts.toml", "server = \"http://10.96.100.50:5000\"\n"),
			Error, "/etc/containerd/certs.d/docker.io/hosts.toml", 1, "containerd 1.6 refuses such a file"},
		{"hosts.toml server falls back upstream", goodContainerd.with("/etc/containerd/certs.d/ghcr.io/hosts.toml", "server = \"https://ghcr.io\"\n\n[host.\"http://10.96.100.50:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
			Error, "/etc/containerd/certs.d/ghcr.io/hosts.toml", 1, "server https://ghcr.io is not pullgate"},
		{"legacy registry.mirrors with config_path", goodContainerd.with("/etc/containerd/config.toml", configV2+"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"http://10.96.100.50:5000\"]\n"),
			Error, "/etc/containerd/config.toml", 6, "disables its CRI plugin"},
		{"containerd 1.x without config_path", goodContainerd.with("/etc/containerd/config.toml", "version = 2\n"),
			Error, "/etc/containerd/config.toml", 0, "read no certs.d"},
		{"host and server both pullgate", goodContainerd.with("/etc/containerd/certs.d/docker.io/hosts.toml", hostsTwice),
			Warning, "/etc/containerd/certs.d/docker.io/hosts.toml", 1, "decided twice"},
		{"registries.conf ghcr.io missing", goodContainers.with("/etc/containers/registries.conf", strings.Replace(registriesPG, "prefix = \"ghcr.io\"\nlocation = \"10.96.100.50:5000/ghcr.io\"", "prefix = \"ghcr.example\"\nlocation = \"10.96.100.50:5000/ghcr.example\"", 1)),
			Error, "/etc/containers/registries.conf", 0, "no [[registry]] entry for ghcr.io"},
		{"short-name alias to quay.io", goodContainers.with("/etc/containers/registries.conf.d/000-shortnames.conf", "[aliases]\n  # centos\n  \"centos\" = \"quay.io/centos/centos\"\n").with("/etc/containers/policy.json", ""),
			Error, "/etc/containers/registries.conf.d/000-shortnames.conf", 3, `alias "centos" = "quay.io/centos/centos"`},
		{"erased alias, then cache alias to quay.io", goodContainers.with("/etc/containers/registries.conf.d/000-shortnames.conf", "[aliases]\n\"centos\" = \"quay.io/centos/centos\"\n").with("/etc/containers/registries.conf.d/zz.conf", "[aliases]\n\"centos\" = \"\"\n").with("/var/cache/containers/short-name-aliases.conf", "[aliases]\n\"centos\" = \"quay.io/centos/centos\"\n").with("/etc/containers/policy.json", ""),
			Error, "/var/cache/containers/short-name-aliases.conf", 2, "quay.io"},
		{"short-name cache alias to quay.io", goodContainers.with("/var/cache/containers/short-name-aliases.conf", "[aliases]\n\"fedora\" = \"registry.fedoraproject.org/fedora\"\n").with("/etc/containers/policy.json", ""),
			Error, "/var/cache/containers/short-name-aliases.conf", 2, "registry.fedoraproject.org"},
		{"unlisted registries without policy.json", goodContainers.with("/etc/containers/policy.json", ""),
			Error, "/etc/containers/policy.json", 0, "quay.io"},
		{"unqualified search registry not routed", goodContainers.with("/etc/containers/registries.conf", strings.Replace(registriesPG, `["docker.io"]`, `["docker.io", "quay.io"]`, 1)).with("/etc/containers/policy.json", ""),
			Error, "/etc/containers/registries.conf", 1, "unqualified-search registry quay.io"},
		{"location upstream with pullgate mirror", goodContainers.with("/etc/containers/registries.conf", strings.Replace(registriesPG, "location = \"10.96.100.50:5000/ghcr.io\"\ninsecure = true\n", "location = \"ghcr.io\"\n\n[[registry.mirror]]\nlocation = \"10.96.100.50:5000/ghcr.io\"\ninsecure = true\n", 1)),
			Error, "/etc/containers/registries.conf", 11, "a mirror never fails closed"},
		{"mirror and location both pullgate", goodContainers.with("/etc/containers/registries.conf", strings.Replace(registriesPG, "location = \"10.96.100.50:5000/ghcr.io\"\ninsecure = true\n", "location = \"10.96.100.50:5000/ghcr.io\"\n\n[[registry.mirror]]\nlocation = \"10.96.100.50:5000/ghcr.io\"\n", 1)),
			Warning, "/etc/containers/registries.conf", 13, "decided twice"},
		{"registries.conf typo", goodContainers.with("/etc/containers/registries.conf.d/50-typo.conf", "[[registry]]\nprefix = \"quay.io\"\nlocaton = \"10.96.100.50:5000/quay.io\"\n"),
			Error, "/etc/containers/registries.conf.d/50-typo.conf", 3, `unknown key "registry.locaton"`},
		{"policy.json accepts an unrouted registry", goodContainers.with("/etc/containers/policy.json", strings.Replace(policyReject, `"ghcr.io": [`, `"quay.io": [{"type": "insecureAcceptAnything"}],
      "ghcr.io": [`, 1)),
			Error, "/etc/containers/policy.json", 6, "policy.json accepts quay.io"},
		{"docker registry-mirrors fallback", tree{"/etc/docker/daemon.json": "{\n  \"registry-mirrors\": [\"http://10.96.100.50:5000\"]\n}\n"},
			Error, "/etc/docker/daemon.json", 2, "falls back to registry-1.docker.io"},
		{"docker daemon.json syntax", tree{"/etc/docker/daemon.json": "{\n  \"registry-mirrors\": [\"http://10.96.100.50:5000\"],\n}\n"},
			Error, "/etc/docker/daemon.json", 3, "does not parse"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := check(t, tc.tree)
			for _, f := range rep.Findings {
				if f.Severity == tc.severity && f.File == tc.file && f.Line == tc.line && strings.Contains(f.Route, tc.route) && f.Fix != "" {
					return
				}
			}
			t.Errorf("want %s %s:%d %q; got:", tc.severity, tc.file, tc.line, tc.route)
			for _, f := range rep.Findings {
				t.Errorf("  %s %s:%d %s | fix: %s", f.Severity, f.File, f.Line, f.Route, f.Fix)
			}
		})
	}
}

func TestUnreadable(t *testing.T) {
	root := t.TempDir()
	// A directory where a file must be: present but not readable as a file.
	if err := os.MkdirAll(filepath.Join(root, "etc/docker/daemon.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(Options{Root: root, Pullgate: pg, Registries: regs, Paths: NodePaths()}); err == nil {
		t.Fatal("want an error for an unreadable daemon.json")
	}
	if _, err := Check(Options{Root: t.TempDir(), Pullgate: pg, Registries: regs, Paths: NodePaths()}); err != ErrNothingToCheck {
		t.Fatalf("empty root: got %v, want ErrNothingToCheck", err)
	}
}

// FuzzCheck feeds the same bytes to every file a node check reads: the
// parsers and the line lookups must never panic.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{hostsPG, configV2, registriesPG, policyReject, "{\"registry-mirrors\": [\"x\"]}", "[[registry]]\n[[registry.mirror]]\n[aliases]\n\"a\" = \"b\"\n", "[host.\"\"]\n", "version = 3\n[plugins.cri.registry.mirrors.x]\n", "=\n[\n[["} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseHosts(data)
		ParseContainerdConfig(data)
		ParseRegistriesConf(data)
		_, _, _ = ParseDaemonJSON(data)
		_, _ = ParsePolicyJSON(data)
		fsys := fstest.MapFS{}
		for _, p := range []string{"/etc/containerd/config.toml", "/etc/containerd/certs.d/docker.io/hosts.toml", "/etc/containerd/certs.d/_default/hosts.toml",
			"/etc/containers/registries.conf", "/etc/containers/registries.conf.d/a.conf", "/var/cache/containers/short-name-aliases.conf", "/etc/containers/policy.json", "/etc/docker/daemon.json"} {
			fsys[strings.TrimPrefix(p, "/")] = &fstest.MapFile{Data: data}
		}
		if _, err := Check(Options{FS: fsys, Pullgate: pg, Registries: regs, Paths: NodePaths()}); err != nil {
			t.Fatal(err)
		}
	})
}
