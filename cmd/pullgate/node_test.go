package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/cmd/pullgate/nodecheck"
)

// The upstreams of deploy/kubernetes/overlays/example, as the node examples
// address pullgate.
var exampleArgs = []string{"--pullgate", "10.96.100.50:5000", "--registry", "docker.io", "--registry", "ghcr.io", "--registry", "registry.example.com"}

// nodeTreeArgs points node check at one client's directory of deploy/nodes
// (a file the examples do not ship is not read).
func nodeTreeArgs(dir, client string) []string {
	opt := func(flag, rel string) []string {
		p := filepath.Join(dir, client, rel)
		if _, err := os.Stat(p); err != nil {
			p = "none"
		}
		return []string{"--" + flag, p}
	}
	args := []string{"--containerd-config", "none", "--certs-d", "none", "--registries-conf", "none", "--registries-d", "none",
		"--short-name-cache", "none", "--policy-json", "none", "--daemon-json", "none"}
	switch client {
	case "containerd":
		args = append(args, opt("certs-d", "certs.d")...)
	case "crio":
		args = append(args, opt("registries-conf", "registries.conf")...)
		args = append(args, opt("registries-d", "registries.conf.d")...)
		args = append(args, opt("policy-json", "policy.json")...)
	case "docker":
		args = append(args, opt("daemon-json", "daemon.json")...)
	}
	return args
}

func runNodeCheck(t *testing.T, args ...string) (int, nodecheck.Report) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cmdNodeCheck(append(append([]string{"-o", "json"}, exampleArgs...), args...), &out, &errb)
	var rep nodecheck.Report
	if code == nodeExitFindings || code == nodeExitWarnings || code == 0 {
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("exit %d, output %q: %v (stderr %s)", code, out.String(), err, errb.String())
		}
	}
	return code, rep
}

// TestNodeCheckShippedExamples runs node check on deploy/nodes: the
// containerd examples (every config.toml with certs.d) pass, CRI-O has
// only the warning no CRI-O config can avoid, Docker cannot fail closed.
// (The examples before issue 13 had errors for certs.d/_default, ghcr.io,
// policy.json and registries.conf, and double-decision warnings.)
func TestNodeCheckShippedExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "nodes")
	want := map[string][]string{
		"containerd": nil,
		// No CRI-O config closes unlisted registries alone: a rejecting
		// policy.json refuses their images, but requests still leave the
		// node (the fix named is the egress firewall).
		"crio": {"warning crio/policy.json:0"},
		// Docker cannot fail closed: registry-mirrors falls back to Docker Hub.
		"docker": {"error docker/daemon.json:2"},
	}
	// containerd: each shipped config.toml (config-1.6.toml, ...) with certs.d.
	configs, _ := filepath.Glob(filepath.Join(dir, "containerd", "config*.toml"))
	if len(configs) == 0 {
		configs = []string{"none"}
	}
	type run struct{ name, client string }
	var runs []run
	for _, c := range configs {
		runs = append(runs, run{"containerd/" + filepath.Base(c), "containerd"})
	}
	runs = append(runs, run{"crio", "crio"}, run{"docker", "docker"})
	for _, r := range runs {
		client := r.client
		t.Run(r.name, func(t *testing.T) {
			args := nodeTreeArgs(dir, client)
			if client == "containerd" {
				args = append(args, "--containerd-config", configs[0])
				for _, c := range configs {
					if "containerd/"+filepath.Base(c) == r.name {
						args[len(args)-1] = c
					}
				}
			}
			code, rep := runNodeCheck(t, args...)
			var got []string
			for _, f := range rep.Findings {
				file := f.File
				if i := strings.Index(file, "deploy/nodes/"); i >= 0 {
					file = strings.TrimPrefix(file[i+len("deploy/nodes/"):], "containerd/")
				}
				got = append(got, fmt.Sprintf("%s %s:%d", f.Severity, file, f.Line))
			}
			sort.Strings(got)
			w := want[client]
			sort.Strings(w)
			if strings.Join(got, "\n") != strings.Join(w, "\n") {
				t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(w, "\n"))
			}
			wantCode := 0
			if rep.Errors() > 0 {
				wantCode = nodeExitFindings
			} else if len(rep.Findings) > 0 {
				wantCode = nodeExitWarnings
			}
			if code != wantCode {
				t.Errorf("exit %d, want %d", code, wantCode)
			}
		})
	}
}

func TestNodeCheckExitCodes(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		f := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := "[[registry]]\nprefix = \"%s\"\nlocation = \"10.96.100.50:5000/%s\"\n"
	conf := fmt.Sprintf(reg, "docker.io", "docker.io") + fmt.Sprintf(reg, "ghcr.io", "ghcr.io") + fmt.Sprintf(reg, "registry.example.com", "registry.example.com")
	write("etc/containers/registries.conf", conf)
	hosts := "server = \"http://10.96.100.50:5000\"\n\n[host.\"http://10.96.100.50:5000\"]\n  capabilities = [\"push\"]\n"
	write("etc/containerd/config.toml", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n")
	for _, r := range []string{"_default", "docker.io", "ghcr.io", "registry.example.com"} {
		write("etc/containerd/certs.d/"+r+"/hosts.toml", hosts)
	}
	write("etc/containers/policy.json", `{"default": [{"type": "reject"}], "transports": {"docker": {"docker.io": [{"type": "insecureAcceptAnything"}]}}}`)
	if code, rep := runNodeCheck(t, "--root", root); code != nodeExitWarnings || rep.Errors() != 0 {
		t.Fatalf("closed node (policy.json warning only): exit %d, findings %+v", code, rep.Findings)
	}
	if code, rep := runNodeCheck(t, "--root", root, "--registries-conf", "none", "--policy-json", "none"); code != 0 || len(rep.Findings) != 0 || len(rep.Checked) != 6 {
		t.Fatalf("closed containerd node: exit %d, findings %+v", code, rep.Findings)
	}
	// The registries from a pullgate config: quay.io must be routed too.
	write("pullgate.yaml", "policy: policy.yaml\nupstreams:\n  - name: quay.io\n    url: https://quay.io\n")
	var out, errb bytes.Buffer
	code := cmdNodeCheck([]string{"--pullgate", "10.96.100.50:5000", "--config", filepath.Join(root, "pullgate.yaml"), "--root", root}, &out, &errb)
	if code != nodeExitFindings || !strings.Contains(out.String(), "no [[registry]] entry for quay.io") || !strings.Contains(out.String(), "registries.conf") {
		t.Fatalf("--config: exit %d, output %s %s", code, out.String(), errb.String())
	}
	// A present but unreadable input is not a finding.
	write("etc/docker/daemon.json/x", "")
	if code, _ := runNodeCheck(t, "--root", root); code != nodeExitUnreadable {
		t.Fatalf("unreadable daemon.json: exit %d, want %d", code, nodeExitUnreadable)
	}
	if code, _ := runNodeCheck(t, "--root", root, "-o", "yaml"); code != nodeExitUsage {
		t.Fatalf("bad -o: exit %d, want %d", code, nodeExitUsage)
	}
}
