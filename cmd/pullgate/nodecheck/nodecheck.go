// Package nodecheck reads a node's container-runtime registry configuration
// (containerd's config.toml and certs.d, containers-registries.conf with its
// drop-ins, short-name aliases and policy.json, Docker's daemon.json) and
// reports every route by which a pull reaches a registry without going
// through pullgate, each with the file, the line and the line to change.
package nodecheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Severity of a finding.
const (
	// Error is a route around pullgate (or a configuration that stops the
	// runtime from using pullgate).
	Error = "error"
	// Warning is a configuration that reaches pullgate more than once per
	// pull or otherwise misroutes, without going around it.
	Warning = "warning"
)

// Finding is one route around pullgate (or a warning) in one file.
type Finding struct {
	Severity string `json:"severity"`
	// Client is containerd, containers (CRI-O, podman, buildah, skopeo) or docker.
	Client string `json:"client"`
	File   string `json:"file"`
	// Line is 1-based; 0 when the finding is about the file as a whole
	// (missing file, missing entry).
	Line int `json:"line,omitempty"`
	// Route says which pulls escape and where they go.
	Route string `json:"route"`
	// Fix is the concrete line (or lines) to write instead.
	Fix string `json:"fix"`
}

// Paths are the files and directories to read, as paths on the node. An
// empty path is not checked. A path that does not exist means the client is
// not configured there (nothing to report for it); a path that exists but
// cannot be read is an error of Check.
type Paths struct {
	ContainerdConfig  string // /etc/containerd/config.toml
	CertsDir          string // certs.d override; "" uses config_path from ContainerdConfig
	RegistriesConf    string // /etc/containers/registries.conf
	RegistriesConfDir string // /etc/containers/registries.conf.d
	ShortNameCache    string // /var/cache/containers/short-name-aliases.conf
	PolicyJSON        string // /etc/containers/policy.json
	DaemonJSON        string // /etc/docker/daemon.json
}

// NodePaths are the standard locations on a Linux node.
func NodePaths() Paths {
	return Paths{
		ContainerdConfig:  "/etc/containerd/config.toml",
		RegistriesConf:    "/etc/containers/registries.conf",
		RegistriesConfDir: "/etc/containers/registries.conf.d",
		ShortNameCache:    "/var/cache/containers/short-name-aliases.conf",
		PolicyJSON:        "/etc/containers/policy.json",
		DaemonJSON:        "/etc/docker/daemon.json",
	}
}

// Options select what must go through pullgate.
type Options struct {
	// Root prefixes every path read (a copy of a node's files); "" or "/"
	// reads the node itself.
	Root string
	// Pullgate is pullgate's address as nodes use it: HOST[:PORT].
	Pullgate string
	// Registries are the upstream names pullgate fronts (docker.io,
	// ghcr.io, ...): every pull of them must reach pullgate.
	Registries []string
	Paths      Paths
	// FS is where the paths are read (tests); nil reads the files under Root.
	FS fs.FS
}

// Report is the result of Check.
type Report struct {
	Pullgate   string    `json:"pullgate"`
	Registries []string  `json:"registries"`
	Checked    []string  `json:"checked"`
	Findings   []Finding `json:"findings"`
}

// Errors counts the findings of severity Error.
func (r *Report) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == Error {
			n++
		}
	}
	return n
}

// ErrNothingToCheck is returned when none of the paths exists.
var ErrNothingToCheck = errors.New("no containerd, containers-registries.conf or Docker configuration found")

type checker struct {
	opts Options
	fsys fs.FS
	pg   string
	rep  *Report
}

// Check reads the files of opts.Paths under opts.Root and reports the routes
// around pullgate. Its error means an input could not be read (as opposed to
// a configuration that was read and found wanting, which is a Finding).
func Check(opts Options) (*Report, error) {
	pg := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(opts.Pullgate, "https://"), "http://"), "/"))
	if pg == "" || strings.Contains(pg, "/") {
		return nil, fmt.Errorf("pullgate address %q: want HOST[:PORT]", opts.Pullgate)
	}
	if len(opts.Registries) == 0 {
		return nil, errors.New("no registries to check: give the upstream names pullgate fronts")
	}
	regs := append([]string(nil), opts.Registries...)
	for i := range regs {
		regs[i] = strings.ToLower(regs[i])
	}
	sort.Strings(regs)
	c := &checker{opts: opts, pg: pg, rep: &Report{Pullgate: pg, Registries: regs, Findings: []Finding{}}}
	c.opts.Registries = regs
	c.fsys = opts.FS
	if c.fsys == nil {
		root := opts.Root
		if root == "" {
			root = "/"
		}
		c.fsys = os.DirFS(root)
	}
	steps := []func() error{c.containerd, c.containers, c.docker}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if len(c.rep.Checked) == 0 {
		return nil, ErrNothingToCheck
	}
	return c.rep, nil
}

// path maps a node path to the file read.
func (c *checker) path(p string) string {
	if c.opts.Root == "" || c.opts.Root == "/" {
		return p
	}
	return filepath.Join(c.opts.Root, p)
}

// fsPath is a node path as a path of the checker's fs.FS.
func fsPath(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(p)), "/")
	if p == "" {
		return "."
	}
	return p
}

// read returns the bytes of a node path; ok is false when it does not exist.
func (c *checker) read(p string) (data []byte, ok bool, err error) {
	b, err := fs.ReadFile(c.fsys, fsPath(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	c.rep.Checked = append(c.rep.Checked, c.path(p))
	return b, true, nil
}

func (c *checker) add(sev, client, file string, line int, route, fix string) {
	c.rep.Findings = append(c.rep.Findings, Finding{Severity: sev, Client: client, File: c.path(file), Line: line, Route: route, Fix: fix})
}

// isPullgate reports whether host (HOST[:PORT]) is pullgate, exactly as
// given by --pullgate (a different port is a different server).
func (c *checker) isPullgate(host string) bool {
	return strings.ToLower(host) == c.pg
}

// lines indexes a TOML file's table headers and keys by line, for the
// findings of decoded values (go-toml gives positions only for errors).
type section struct {
	header string         // "" for the top level, else the text inside [] or [[]]
	array  bool           // [[...]]
	line   int            // 1-based line of the header
	keys   map[string]int // key → first line
}

func index(data []byte) []*section {
	secs := []*section{{keys: map[string]int{}}}
	for i, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		if t[0] == '[' {
			arr := strings.HasPrefix(t, "[[")
			h := strings.TrimLeft(t, "[")
			if j := strings.Index(h, "]"); j >= 0 {
				h = h[:j]
			}
			secs = append(secs, &section{header: strings.TrimSpace(h), array: arr, line: i + 1, keys: map[string]int{}})
			continue
		}
		k, _, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"'`)
		cur := secs[len(secs)-1]
		if _, seen := cur.keys[k]; !seen {
			cur.keys[k] = i + 1
		}
	}
	return secs
}

// lineOf is the first line (1-based) containing s, or 0.
func lineOf(data []byte, s string) int {
	for i, l := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(l); t != "" && t[0] != '#' && strings.Contains(l, s) {
			return i + 1
		}
	}
	return 0
}

func quoteList(regs []string) string {
	q := make([]string, len(regs))
	for i, r := range regs {
		q[i] = fmt.Sprintf("%q", r)
	}
	return strings.Join(q, ", ")
}
