package nodecheck

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

const ctrd = "containerd"

// HostsFile is containerd's certs.d/<host>/hosts.toml, with every key
// containerd 1.6-2.x reads; any other key is a typo containerd ignores.
type HostsFile struct {
	Server string `toml:"server"`
	// HostEntry holds the server's own settings (same keys as a [host]).
	HostEntry
	Host map[string]HostEntry `toml:"host"`
}

// HostEntry is one [host."URL"] table of a hosts.toml.
type HostEntry struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

// TOMLProblem is a syntax error or an unknown key, with its position.
type TOMLProblem struct {
	Line, Column int
	Key          string // the unknown key, "" for a syntax error
	Msg          string
}

// ParseHosts decodes a hosts.toml strictly: problems lists the syntax error
// or the unknown keys (containerd 1.6 ignores such a file or key without a
// word). The HostsFile is nil on a syntax error.
func ParseHosts(data []byte) (*HostsFile, []TOMLProblem) {
	var h HostsFile
	return &h, decodeStrict(data, &h)
}

func decodeStrict(data []byte, v any) (probs []TOMLProblem) {
	// go-toml v2.2.4 panics on some tables that collide with a typed
	// field ([[registry.0]]): report those as an error of the file.
	defer func() {
		if r := recover(); r != nil {
			probs = []TOMLProblem{{Line: 1, Msg: fmt.Sprintf("cannot decode: %v", r)}}
		}
	}()
	d := toml.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	err := d.Decode(v)
	if err == nil {
		return nil
	}
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		var ps []TOMLProblem
		for _, e := range sm.Errors {
			r, col := e.Position()
			ps = append(ps, TOMLProblem{Line: r, Column: col, Key: strings.Join(e.Key(), "."), Msg: "unknown key"})
		}
		return ps
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		r, col := de.Position()
		return []TOMLProblem{{Line: r, Column: col, Msg: de.Error()}}
	}
	return []TOMLProblem{{Msg: err.Error()}}
}

// ContainerdRegistry is what config.toml says about registries.
type ContainerdRegistry struct {
	Version    int64
	Plugin     string // the CRI plugin table that holds registry settings
	ConfigPath string
	Mirrors    []string // legacy registry.mirrors hosts
}

var criPlugins = []string{"io.containerd.cri.v1.images", "io.containerd.grpc.v1.cri", "cri"}

// ParseContainerdConfig reads the registry settings of containerd's
// config.toml (version 1, 2 or 3).
func ParseContainerdConfig(data []byte) (reg *ContainerdRegistry, prob *TOMLProblem) {
	defer func() {
		if r := recover(); r != nil {
			reg, prob = nil, &TOMLProblem{Line: 1, Msg: fmt.Sprintf("cannot decode: %v", r)}
		}
	}()
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		p := TOMLProblem{Msg: err.Error()}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			p.Line, p.Column = de.Position()
		}
		return nil, &p
	}
	r := &ContainerdRegistry{}
	if v, ok := m["version"].(int64); ok {
		r.Version = v
	}
	plugins, _ := m["plugins"].(map[string]any)
	for _, name := range criPlugins {
		pl, _ := plugins[name].(map[string]any)
		reg, _ := pl["registry"].(map[string]any)
		if reg == nil {
			continue
		}
		if r.Plugin == "" {
			r.Plugin = name
		}
		if cp, ok := reg["config_path"].(string); ok && cp != "" && r.ConfigPath == "" {
			r.ConfigPath, r.Plugin = cp, name
		}
		if mir, ok := reg["mirrors"].(map[string]any); ok {
			for h := range mir {
				r.Mirrors = append(r.Mirrors, h)
			}
		}
	}
	sort.Strings(r.Mirrors)
	return r, nil
}

func (c *checker) containerd() error {
	p := c.opts.Paths
	certsDirs := []string(nil)
	if p.CertsDir != "" {
		certsDirs = []string{p.CertsDir}
	}
	if p.ContainerdConfig != "" {
		data, ok, err := c.read(p.ContainerdConfig)
		if err != nil {
			return err
		}
		if ok {
			dirs, err := c.containerdConfig(p.ContainerdConfig, data)
			if err != nil {
				return err
			}
			if certsDirs == nil {
				certsDirs = dirs
			}
		} else if p.CertsDir == "" {
			// No config.toml: containerd 1.x reads no certs.d at all.
			if st, err := fs.Stat(c.fsys, fsPath("/etc/containerd/certs.d")); err == nil && st.IsDir() {
				c.add(Error, ctrd, p.ContainerdConfig, 0,
					"the file is missing: containerd 1.6/1.7 then read no certs.d and pull every registry directly (2.x reads /etc/containerd/certs.d by default)",
					"create it with: version = 2 / [plugins.\"io.containerd.grpc.v1.cri\".registry] / config_path = \"/etc/containerd/certs.d\"")
				c.rep.Checked = append(c.rep.Checked, c.path("/etc/containerd/certs.d"))
			}
			return nil
		}
	}
	if len(certsDirs) == 0 {
		return nil
	}
	// containerd uses the first directory of config_path that has the host.
	return c.certsDir(certsDirs[0])
}

func (c *checker) containerdConfig(file string, data []byte) ([]string, error) {
	reg, prob := ParseContainerdConfig(data)
	if prob != nil {
		c.add(Error, ctrd, file, prob.Line, "containerd does not start with this file: "+prob.Msg, "fix the TOML syntax at this line")
		return nil, nil
	}
	v2plugin := `[plugins."io.containerd.grpc.v1.cri".registry]`
	if reg.Version >= 3 {
		v2plugin = `[plugins."io.containerd.cri.v1.images".registry]`
	}
	if len(reg.Mirrors) > 0 {
		line := lineOf(data, ".registry.mirrors")
		if reg.ConfigPath != "" {
			c.add(Error, ctrd, file, line,
				fmt.Sprintf("legacy registry.mirrors (%s) together with config_path: containerd 1.6+ refuses the combination and disables its CRI plugin on restart (the node runs no pods)", strings.Join(reg.Mirrors, ", ")),
				"delete every [plugins.\"…\".registry.mirrors.\"…\"] table; route registries with certs.d/<registry>/hosts.toml")
		} else {
			c.add(Error, ctrd, file, line,
				fmt.Sprintf("legacy registry.mirrors (%s): containerd appends the registry itself after the mirror endpoints, so a refused or failed pull is fetched directly; every other registry is pulled directly", strings.Join(reg.Mirrors, ", ")),
				"delete the registry.mirrors tables and set "+v2plugin+" config_path = \"/etc/containerd/certs.d\"")
		}
	}
	if reg.ConfigPath == "" {
		if reg.Version >= 3 {
			// containerd 2.x default.
			return []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"}, nil
		}
		if len(reg.Mirrors) == 0 {
			c.add(Error, ctrd, file, 0,
				"no registry config_path: containerd 1.6/1.7 read no certs.d and pull every registry directly",
				v2plugin+" config_path = \"/etc/containerd/certs.d\"")
		}
		return nil, nil
	}
	return strings.Split(reg.ConfigPath, ":"), nil
}

// hostsRoute is the effective host list of one hosts.toml, in containerd's
// order: [host] entries as written, then server (default the registry).
type hostsRoute struct {
	file     string
	data     []byte
	hf       *HostsFile
	problems []TOMLProblem
}

func (c *checker) certsDir(dir string) error {
	c.rep.Checked = append(c.rep.Checked, c.path(dir))
	ents, err := fs.ReadDir(c.fsys, fsPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		ents = nil
	} else if err != nil {
		return err
	}
	routes := map[string]*hostsRoute{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		f := path.Join(dir, e.Name(), "hosts.toml")
		data, ok, err := c.read(f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		hf, probs := ParseHosts(data)
		routes[e.Name()] = &hostsRoute{file: f, data: data, hf: hf, problems: probs}
	}
	closed := map[string]bool{}
	for _, n := range slices.Sorted(maps.Keys(routes)) {
		closed[n] = c.hostsFile(n, routes[n])
	}
	def := path.Join(dir, "_default", "hosts.toml")
	for _, r := range c.opts.Registries {
		if _, ok := routes[r]; ok {
			continue
		}
		if closed["_default"] {
			continue // _default sends it to pullgate with ns=<registry>
		}
		c.add(Error, ctrd, path.Join(dir, r, "hosts.toml"), 0,
			fmt.Sprintf("no hosts.toml for %s: %s/... pulls go straight to %s", r, r, r),
			fmt.Sprintf("create it with: server = \"http://%s\" / [host.\"http://%s\"] capabilities = [\"pull\", \"resolve\"] (or route every registry with %s)", c.pg, c.pg, def))
	}
	if _, ok := routes["_default"]; !ok {
		c.add(Error, ctrd, def, 0,
			"no _default/hosts.toml: every registry without a directory here (quay.io, …) is pulled directly",
			fmt.Sprintf("create it with: server = \"http://%s\" / [host.\"http://%s\"] capabilities = [\"pull\", \"resolve\"] (pullgate refuses registries it does not front)", c.pg, c.pg))
	}
	return nil
}

// hostsFile reports the routes of one hosts.toml and whether every pull of
// the registry it configures reaches pullgate.
func (c *checker) hostsFile(reg string, r *hostsRoute) bool {
	who := reg + "/..."
	if reg == "_default" {
		who = "every registry without its own directory"
	}
	for _, p := range r.problems {
		if p.Key != "" {
			c.add(Error, ctrd, r.file, p.Line,
				fmt.Sprintf("unknown key %q: containerd ignores it without a word, so the entry it belongs to does not do what it says", p.Key),
				"fix the key name (hosts.toml keys: server, capabilities, ca, client, skip_verify, header, override_path, dial_timeout, [host.\"URL\"])")
		} else {
			c.add(Error, ctrd, r.file, p.Line,
				fmt.Sprintf("TOML syntax error (%s): containerd 1.6 ignores the whole file and pulls %s directly", p.Msg, who),
				"fix the TOML syntax at this line")
			return false
		}
	}
	secs := index(r.data)
	hostLine := func(u string) int {
		for _, s := range secs {
			if strings.HasPrefix(s.header, "host.") && strings.Contains(s.header, u) {
				return s.line
			}
		}
		return 0
	}
	serverLine := secs[0].keys["server"]
	closed := len(r.problems) == 0
	pgHits := 0
	hosts := slices.SortedFunc(maps.Keys(r.hf.Host), func(a, b string) int { return hostLine(a) - hostLine(b) })
	for _, u := range hosts {
		e := r.hf.Host[u]
		if len(e.Capabilities) > 0 && !slices.Contains(e.Capabilities, "pull") && !slices.Contains(e.Capabilities, "resolve") {
			continue
		}
		h := urlHost(u)
		if c.isPullgate(h) {
			pgHits++
			continue
		}
		closed = false
		c.add(Error, ctrd, r.file, hostLine(u),
			fmt.Sprintf("[host] %s is not pullgate: %s is pulled from it", u, who),
			fmt.Sprintf("[host.\"http://%s\"]", c.pg))
	}
	server := r.hf.Server
	if server == "" {
		if reg == "_default" {
			server = "(the image's own registry)"
		} else if reg == "docker.io" {
			server = "https://registry-1.docker.io"
		} else {
			server = "https://" + reg
		}
	}
	if len(r.hf.Host) == 0 {
		c.add(Error, ctrd, r.file, serverLine,
			fmt.Sprintf("no [host.\"…\"] table: containerd 1.6 refuses such a file (\"invalid `host` tree\" in its log) and pulls %s directly", who),
			fmt.Sprintf("add [host.\"http://%s\"] with capabilities = [\"push\"] (never used for pulls: server stays the only pull route)", c.pg))
		closed = false
	}
	if c.isPullgate(urlHost(server)) {
		pgHits++
	} else {
		closed = false
		line := serverLine
		route := fmt.Sprintf("server %s is not pullgate: containerd tries it after the [host] entries, so a pull pullgate refuses or cannot serve is fetched from it", server)
		if len(hosts) == 0 {
			route = fmt.Sprintf("no [host] entry points at pullgate: %s goes straight to %s", who, server)
		}
		if r.hf.Server == "" {
			route += " (server is not set: it defaults to the registry)"
		}
		c.add(Error, ctrd, r.file, line, route, fmt.Sprintf("server = \"http://%s\"", c.pg))
	}
	if pgHits > 1 {
		c.add(Warning, ctrd, r.file, serverLine,
			"pullgate is both a pulling [host] and server: containerd tries the next host on a 4xx, so every refused pull is decided twice (two audit lines, two pullgate_decisions_total)",
			fmt.Sprintf("keep server = \"http://%s\" as the only pull route: set capabilities = [\"push\"] on the [host] entry (containerd sends ns= to a server that is not the registry)", c.pg))
	}
	return closed
}

// urlHost is the HOST[:PORT] of a hosts.toml URL (scheme optional).
func urlHost(s string) string {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}
