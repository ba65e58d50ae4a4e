package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/tools"
)

// Real podman on a node configured as deploy/nodes/crio does: each registry
// pullgate fronts has its location (not a mirror) at pullgate, so every
// attempt reaches pullgate once and nothing falls back to the registry.
// Podman runs as root with its own storage (vfs), registries.conf,
// containers.conf, policy.json, certificates and HOME: nothing of the host's
// container configuration (aliases, mirrors, credentials) applies.

// podman is one isolated podman "node".
type podman struct {
	bin      string
	dir      string
	regConf  string // containers-registries.conf(5)
	policy   string // containers-policy.json(5)
	certDir  string // CA certificates for TLS registries (--cert-dir)
	env      []string
	baseArgs []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	bin := tools.Need(t, "podman")
	// podman refuses a runroot longer than 50 characters: t.TempDir's is.
	dir, err := os.MkdirTemp("", "pgpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &podman{bin: bin, dir: dir}
	for _, d := range []string{"home", "root", "runroot", "tmp", "certs", "run"} {
		if err := os.MkdirAll(filepath.Join(p.dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p.regConf = filepath.Join(p.dir, "registries.conf")
	p.policy = filepath.Join(p.dir, "policy.json")
	p.certDir = filepath.Join(p.dir, "certs")
	containersConf := filepath.Join(p.dir, "containers.conf")
	storageConf := filepath.Join(p.dir, "storage.conf")
	write(t, containersConf, "[engine]\nevents_logger = \"none\"\ncgroup_manager = \"cgroupfs\"\n")
	write(t, storageConf, fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(p.dir, "root"), filepath.Join(p.dir, "runroot")))
	write(t, p.policy, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	write(t, p.regConf, "unqualified-search-registries = []\n")
	home := filepath.Join(p.dir, "home")
	p.env = []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"TMPDIR=" + filepath.Join(p.dir, "tmp"),
		"XDG_RUNTIME_DIR=" + filepath.Join(p.dir, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"CONTAINERS_REGISTRIES_CONF=" + p.regConf,
		"CONTAINERS_CONF=" + containersConf,
		"CONTAINERS_STORAGE_CONF=" + storageConf,
		"NO_PROXY=*",
	}
	p.baseArgs = []string{
		"--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "runroot"),
		"--storage-driver", "vfs",
		"--tmpdir", filepath.Join(p.dir, "tmp"),
		"--events-backend", "none",
		"--cgroup-manager", "cgroupfs",
	}
	return p
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// nodeConf is a node's registries.conf.
type nodeConf struct {
	pullgate string   // pullgate's host:port
	fronted  []string // registry names pullgate fronts (its upstream names)
	blocked  []string // prefixes refused on the node itself (blocked = true)
	// blockedFirst writes the blocked entries before the fronted ones
	// (the longest prefix wins whatever the order).
	blockedFirst bool
	// mirrorTo, when set, is the broken shape of the old example: pullgate as
	// [[registry.mirror]] and the location at mirrorTo (the registry itself,
	// or pullgate again).
	mirrorTo string
}

// String is the registries.conf in the shape of the shipped CRI-O/podman
// example: no search registries, short names enforced, for each name
// pullgate fronts a [[registry]] whose location is pullgate's path form
// <pullgate>/<name> with no [[registry.mirror]] (containers/image tries
// mirrors first and then the location: a location at the registry fetches
// what pullgate refused, a mirror and a location both at pullgate ask it
// twice), and blocked = true for registries it does not front.
func (c nodeConf) String() string {
	var b strings.Builder
	b.WriteString("unqualified-search-registries = []\nshort-name-mode = \"enforcing\"\n")
	if c.blockedFirst {
		c.writeBlocked(&b)
	}
	for _, n := range c.fronted {
		loc := c.pullgate + "/" + n
		if c.mirrorTo != "" {
			loc = c.mirrorTo
		}
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n", n, loc)
		if c.mirrorTo != "" {
			fmt.Fprintf(&b, "\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", c.pullgate+"/"+n)
		}
	}
	if !c.blockedFirst {
		c.writeBlocked(&b)
	}
	return b.String()
}

func (c nodeConf) writeBlocked(b *strings.Builder) {
	for _, n := range c.blocked {
		// Only a wildcard prefix (*.example.com) may go without a location.
		fmt.Fprintf(b, "\n[[registry]]\nprefix = %q\n", n)
		if !strings.HasPrefix(n, "*.") {
			fmt.Fprintf(b, "location = %q\n", n)
		}
		b.WriteString("blocked = true\n")
	}
}

// run runs podman; a timeout is an error of its own.
func (p *podman) run(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return runNodeClient(t, "podman", p.bin, p.env, p.dir, append(append([]string{}, p.baseArgs...), args...), args)
}

// runNodeClient runs a node's client bin with env in dir and logs it as
// "$ name logArgs..."; a timeout is an error of its own.
func runNodeClient(t *testing.T, name, bin string, env []string, dir string, args, logArgs []string) harness.Result {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), harness.ClientTimeout)
	defer cancel()
	cmd := exec.CommandContext(c, bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if c.Err() != nil {
		err = fmt.Errorf("%s timed out after %s: %w", name, harness.ClientTimeout, err)
	}
	res := harness.Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
	t.Logf("$ %s %s\n%s", name, strings.Join(logArgs, " "), res.Output())
	return res
}

func (p *podman) pull(t *testing.T, ref string) harness.Result {
	t.Helper()
	return p.run(t, "pull", "--signature-policy", p.policy, "--cert-dir", p.certDir, "--quiet", ref)
}

// digest is the manifest digest podman recorded for ref.
func (p *podman) digest(t *testing.T, ref string) string {
	t.Helper()
	res := p.run(t, "image", "inspect", "--format", "{{.Digest}}", ref)
	if res.Err != nil {
		t.Fatalf("podman image inspect %s: %v", ref, res)
	}
	return strings.TrimSpace(res.Stdout)
}

// decisions are the audit lines about repository repo of upstream up.
func decisions(t *testing.T, px *gate.Proxy, up, repo string) []gate.AuditEvent {
	t.Helper()
	var out []gate.AuditEvent
	for _, e := range px.Audit(t) {
		if e.Repository == repo || e.Repository == up+"/"+repo {
			if e.Upstream == "" || e.Upstream == up {
				out = append(out, e)
			}
		}
	}
	return out
}

// An allowed pull, by tag and by digest, stores the upstream's manifest
// digest. The node also blocks the wildcard *.local: the fronted entry
// upstream.local, a longer match, still wins, before or after it.
func TestPodmanAllowedPullSameDigest(t *testing.T) {
	tools.Need(t, "podman") // skips or fails (CI) here, not in a subtest
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	for _, tc := range []struct {
		name         string
		ref          string
		blockedFirst bool
	}{
		{"by-tag", f.up.Name + "/open/app:v1", false},
		{"by-digest", f.up.Name + "/open/app@" + f.allowed.Digest, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pm := newPodman(t) // an empty store: everything comes through pullgate
			write(t, pm.regConf, nodeConf{pullgate: f.px.Host, fronted: []string{f.up.Name},
				blocked: []string{"*.local"}, blockedFirst: tc.blockedFirst}.String())
			before := f.up.Reg.Total()
			if res := pm.pull(t, tc.ref); res.Err != nil {
				t.Fatalf("podman pull %s: %v", tc.ref, res)
			}
			if got := pm.digest(t, tc.ref); got != f.allowed.Digest {
				t.Fatalf("podman stored digest %s for %s, upstream has %s", got, tc.ref, f.allowed.Digest)
			}
			if f.up.Reg.Total() == before && tc.name == "by-tag" {
				t.Fatal("the first pull reached no upstream: pullgate did not fetch it")
			}
		})
	}
	checkAllowed(t, f, "open/app")
}

// checkAllowed checks that the audit log has decisions about repo of the
// fixture's upstream, all "allow".
func checkAllowed(t *testing.T, f *fixture, repo string) {
	t.Helper()
	ds := decisions(t, f.px, f.up.Name, repo)
	if len(ds) == 0 {
		t.Fatal("no audit decision for the allowed pulls")
	}
	for _, e := range ds {
		if e.Decision != "allow" {
			t.Errorf("audit decision %q for an allowed pull: %v", e.Decision, e.Raw)
		}
	}
}

// A denied pull fails, podman shows pullgate's reason, and the audit log has
// exactly one decision for it. The old example's shape (pullgate as mirror
// and as location) is the control: podman asks twice, two decisions.
func TestPodmanDeniedPullOneDecision(t *testing.T) {
	tools.Need(t, "podman") // skips or fails (CI) here, not in a subtest
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	for _, tc := range []struct {
		name      string
		reference string // tag or digest
		conf      nodeConf
		decisions int
	}{
		{"location", "v1", nodeConf{pullgate: f.px.Host, fronted: []string{f.up.Name}}, 1},
		{"location-by-digest", f.denied.Digest, nodeConf{pullgate: f.px.Host, fronted: []string{f.up.Name}}, 1},
		{"mirror-and-location", "v1", nodeConf{pullgate: f.px.Host, fronted: []string{f.up.Name}, mirrorTo: f.px.Host + "/" + f.up.Name}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sep := ":"
			if strings.HasPrefix(tc.reference, "sha256:") {
				sep = "@"
			}
			ref := f.up.Name + "/blocked/app" + sep + tc.reference
			before := len(decisions(t, f.px, f.up.Name, "blocked/app"))
			pm := newPodman(t)
			write(t, pm.regConf, tc.conf.String())
			res := pm.pull(t, ref)
			if res.Err == nil {
				t.Fatalf("podman pulled denied %s: %v", ref, res)
			}
			want := "denied: pullgate denied " + f.up.Name + "/blocked/app@" + tc.reference + ": rule " + gate.DenyRule
			if !strings.Contains(res.Stderr, want) {
				t.Fatalf("podman stderr does not show pullgate's denial %q: %q", want, res.Stderr)
			}
			if n := f.up.Count("", "/blocked/app/blobs/"); n != 0 {
				t.Errorf("upstream served %d blob requests of the denied image", n)
			}
			ds := decisions(t, f.px, f.up.Name, "blocked/app")[before:]
			if len(ds) != tc.decisions {
				t.Fatalf("audit has %d decisions for one denied podman pull, want %d: %+v", len(ds), tc.decisions, ds)
			}
			for _, d := range ds {
				if d.Decision != "deny" || d.Rule != gate.DenyRule {
					t.Fatalf("audit decision %q rule %q, want deny by %s: %v", d.Decision, d.Rule, gate.DenyRule, d.Raw)
				}
			}
		})
	}
}

// A registry pullgate does not front, reachable from the node (its CA is in
// the node's certificates directory), is refused without a single request:
// routed to pullgate (which has no upstream for it), or blocked = true. The
// controls show the route exists: without either podman fetches from it, and
// policy.json's reject alone still asks it for the manifest (containers/image
// checks the policy after fetching it).
func TestPodmanUnlistedRegistryNotFetched(t *testing.T) {
	tools.Need(t, "podman") // skips or fails (CI) here, not in a subtest
	f, unl := unlistedFixture(t)
	ref := unl.Host + "/other/app:v1"
	node := func(t *testing.T, blocked ...string) *podman {
		pm := newPodmanTrusting(t, unl)
		write(t, pm.regConf, nodeConf{pullgate: f.px.Host, fronted: []string{f.up.Name}, blocked: blocked}.String())
		return pm
	}

	t.Run("control-no-block", func(t *testing.T) {
		unl.Reg.ResetCounts()
		if res := node(t).pull(t, ref); res.Err != nil {
			t.Fatalf("control: podman cannot reach the unlisted registry at all: %v", res)
		}
		if unl.Reg.Total() == 0 {
			t.Fatal("control: the pull succeeded but the unlisted registry counted no request")
		}
	})
	t.Run("control-policy-reject-only", func(t *testing.T) {
		unl.Reg.ResetCounts()
		pm := node(t)
		write(t, pm.policy, fmt.Sprintf(`{"default":[{"type":"reject"}],"transports":{"docker":{%q:[{"type":"insecureAcceptAnything"}]}}}`, f.up.Name))
		res := pm.pull(t, ref)
		if res.Err == nil {
			t.Fatalf("policy.json reject let the pull through: %v", res)
		}
		if n := unl.Reg.Count("", "/manifests/"); n == 0 {
			t.Fatalf("policy.json reject alone: no manifest request reached the unlisted registry (docs say it does): %v", res)
		}
		if n := unl.Reg.Count("", "/blobs/"); n != 0 {
			t.Errorf("policy.json reject: %d blob requests reached the unlisted registry", n)
		}
	})
	// The shipped example's way for registries pullgate does not front yet:
	// route them to pullgate anyway (location <pullgate>/<name>), which has
	// no upstream of that name and refuses. The prefix is the registry's
	// address here (a reference path cannot hold its ":port").
	t.Run("routed-to-pullgate", func(t *testing.T) {
		unl.Reg.ResetCounts()
		pm := node(t)
		conf := nodeConf{pullgate: f.px.Host, fronted: []string{f.up.Name}}.String() +
			fmt.Sprintf("\n[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n", unl.Host, f.px.Host+"/"+unl.Name)
		write(t, pm.regConf, conf)
		res := pm.pull(t, ref)
		if res.Err == nil {
			t.Fatalf("podman pulled from a registry pullgate does not front: %v", res)
		}
		if !strings.Contains(res.Stderr, f.px.Host+"/"+unl.Name) {
			t.Errorf("podman stderr does not show pullgate's refusal for %s: %q", unl.Name, res.Stderr)
		}
		if n := unl.Reg.Total(); n != 0 {
			t.Fatalf("the unlisted registry received %d requests", n)
		}
	})
	t.Run("blocked", func(t *testing.T) {
		unl.Reg.ResetCounts()
		res := node(t, unl.Host).pull(t, ref)
		if res.Err == nil {
			t.Fatalf("podman pulled from a blocked registry: %v", res)
		}
		if !strings.Contains(res.Stderr, "blocked") {
			t.Errorf("podman stderr does not say the registry is blocked: %q", res.Stderr)
		}
		if n := unl.Reg.Total(); n != 0 {
			t.Fatalf("the blocked, unlisted registry received %d requests", n)
		}
	})
}

// With pullgate stopped the pull fails and the upstream sees no request. The
// old example's shape with the location at the registry itself is the
// control: podman falls back to it and pulls what pullgate never checked.
func TestPodmanPullgateDownFailsClosed(t *testing.T) {
	tools.Need(t, "podman") // skips or fails (CI) here, not in a subtest
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	pgHost := f.px.Host
	f.px.Close()
	ref := f.up.Name + "/open/app:v1"

	t.Run("location", func(t *testing.T) {
		f.up.Reg.ResetCounts()
		pm := newPodman(t)
		write(t, pm.regConf, nodeConf{pullgate: pgHost, fronted: []string{f.up.Name}}.String())
		refusedWhileDown(t, "podman", pm.pull(t, ref), pgHost, "pullgate's address", f.up.Reg)
	})
	t.Run("control-mirror-location-at-registry", func(t *testing.T) {
		f.up.Reg.ResetCounts()
		pm := newPodman(t)
		write(t, pm.regConf, nodeConf{pullgate: pgHost, fronted: []string{f.up.Name}, mirrorTo: f.up.Host}.String())
		if res := pm.pull(t, ref); res.Err != nil {
			t.Fatalf("control: podman did not fall back to the registry: %v", res)
		}
		if f.up.Reg.Total() == 0 {
			t.Fatal("control: pulled, but the upstream counted no request")
		}
	})
}

// Short-name aliases win over unqualified-search-registries and
// short-name-mode = "enforcing": a distribution's alias file (here a drop-in
// pointing "pgapp" at a registry pullgate does not front) sends a short-name
// pull straight to that registry (control). A later drop-in, loaded after it
// as deploy/nodes/crio's zz-pullgate-shortnames.conf is, re-points the alias
// at a fronted name, or erases it (empty value) so the search registry
// (through pullgate) applies: either way the registry gets no request.
func TestPodmanShortNameAliases(t *testing.T) {
	tools.Need(t, "podman") // skips or fails (CI) here, not in a subtest
	f, unl := unlistedFixture(t)
	for _, tc := range []struct {
		name     string
		override string // zz- drop-in; "" = none
		wantErr  bool
		digest   string
	}{
		{"control-distribution-alias", "", false, ""},
		{"override-to-fronted", fmt.Sprintf("[aliases]\n\"pgapp\" = %q\n", f.up.Name+"/open/app"), false, f.allowed.Digest},
		{"override-erased", "[aliases]\n\"pgapp\" = \"\"\n", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unl.Reg.ResetCounts()
			pm := newPodmanTrusting(t, unl)
			conf := nodeConf{pullgate: f.px.Host, fronted: []string{f.up.Name}}.String()
			conf = strings.Replace(conf, "unqualified-search-registries = []", fmt.Sprintf("unqualified-search-registries = [%q]", f.up.Name), 1)
			write(t, pm.regConf, conf)
			dropins := filepath.Join(pm.dir, "home", ".config", "containers", "registries.conf.d")
			if err := os.MkdirAll(dropins, 0o700); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dropins, "000-shortnames.conf"), fmt.Sprintf("[aliases]\n\"pgapp\" = %q\n", unl.Host+"/other/app"))
			if tc.override != "" {
				write(t, filepath.Join(dropins, "zz-pullgate-shortnames.conf"), tc.override)
			}
			res := pm.pull(t, "pgapp:v1")
			if tc.override == "" {
				if res.Err != nil || unl.Reg.Total() == 0 {
					t.Fatalf("control: the alias did not send the pull to the unlisted registry (%d requests): %v", unl.Reg.Total(), res)
				}
				return
			}
			if n := unl.Reg.Total(); n != 0 {
				t.Fatalf("the aliased, unlisted registry received %d requests", n)
			}
			if tc.wantErr != (res.Err != nil) {
				t.Fatalf("pull error %v, want error %v: %v", res.Err, tc.wantErr, res)
			}
			if tc.digest != "" {
				if got := pm.digest(t, f.up.Name+"/open/app:v1"); got != tc.digest {
					t.Fatalf("podman stored digest %s, upstream has %s", got, tc.digest)
				}
			}
		})
	}
}

// unlistedFixture is the fixture plus a registry pullgate does not front
// (TLS, other/app:v1), as reachable from the node as any public registry.
func unlistedFixture(t *testing.T) (*fixture, *harness.Upstream) {
	t.Helper()
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	unl := harness.StartUpstream(t, harness.UpstreamOptions{Name: "unlisted.local", TLS: true})
	unl.PushImage(t, "other/app", "v1", harness.ImageOptions{})
	return f, unl
}

// newPodmanTrusting is a podman node that trusts u's CA.
func newPodmanTrusting(t *testing.T, u *harness.Upstream) *podman {
	t.Helper()
	pm := newPodman(t)
	write(t, filepath.Join(pm.certDir, "ca.crt"), string(mustRead(t, u.CA.CertFile)))
	return pm
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refusedWhileDown checks a pull a client made while pullgate was down:
// it failed, its stderr names want (what), and the upstream received no
// request (the client did not go around pullgate).
func refusedWhileDown(t *testing.T, client string, res harness.Result, want, what string, up *demoupstream.Registry) {
	t.Helper()
	if res.Err == nil {
		t.Fatalf("%s pulled with pullgate down: %v", client, res)
	}
	if !strings.Contains(res.Stderr, want) {
		t.Errorf("%s stderr does not name %s %s: %q", client, what, want, res.Stderr)
	}
	if n := up.Total(); n != 0 {
		t.Fatalf("upstream received %d requests while pullgate was down", n)
	}
}
