package nodecheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
)

const ctrs = "containers"

// RegistriesConf is containers-registries.conf(5) (v2), with the keys
// containers/image reads; any other key is a typo it would reject or ignore.
type RegistriesConf struct {
	UnqualifiedSearchRegistries []string          `toml:"unqualified-search-registries"`
	ShortNameMode               string            `toml:"short-name-mode"`
	CredentialHelpers           []string          `toml:"credential-helpers"`
	AdditionalLayerStoreAuth    bool              `toml:"additional-layer-store-auth-helper"`
	Registry                    []Registry        `toml:"registry"`
	Aliases                     map[string]string `toml:"aliases"`
	// Registries is the v1 format ([registries.search] ...), reported as such.
	Registries map[string]any `toml:"registries"`
}

// Registry is one [[registry]] entry.
type Registry struct {
	Prefix             string   `toml:"prefix"`
	Location           string   `toml:"location"`
	Insecure           bool     `toml:"insecure"`
	Blocked            bool     `toml:"blocked"`
	MirrorByDigestOnly bool     `toml:"mirror-by-digest-only"`
	Mirror             []Mirror `toml:"mirror"`
}

// Mirror is one [[registry.mirror]] entry.
type Mirror struct {
	Location       string `toml:"location"`
	Insecure       bool   `toml:"insecure"`
	PullFromMirror string `toml:"pull-from-mirror"`
}

// ParseRegistriesConf decodes a registries.conf or drop-in strictly.
func ParseRegistriesConf(data []byte) (*RegistriesConf, []TOMLProblem) {
	var r RegistriesConf
	return &r, decodeStrict(data, &r)
}

// regEntry is a [[registry]] entry with where it was written.
type regEntry struct {
	Registry
	file        string
	line        int // [[registry]] header
	locLine     int
	mirrorLines []int
}

// aliasEntry is one short-name alias with where it was written.
type aliasEntry struct {
	target, file string
	line         int
}

func (c *checker) containers() error {
	p := c.opts.Paths
	var files []string
	if p.RegistriesConf != "" {
		files = append(files, p.RegistriesConf)
	}
	if p.RegistriesConfDir != "" {
		ents, err := fs.ReadDir(c.fsys, fsPath(p.RegistriesConfDir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range ents { // sorted by name: the order containers/image applies them
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".conf") {
				files = append(files, path.Join(p.RegistriesConfDir, e.Name()))
			}
		}
	}
	entries := map[string]*regEntry{} // by prefix; a later file replaces an entry
	aliases := map[string]aliasEntry{}
	var search []string
	searchFile, searchLine := "", 0
	read := 0
	for _, f := range files {
		data, ok, err := c.read(f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		read++
		rc, probs := ParseRegistriesConf(data)
		bad := false
		for _, pr := range probs {
			if pr.Key == "" {
				c.add(Error, ctrs, f, pr.Line, "TOML syntax error ("+pr.Msg+"): podman, CRI-O and skopeo refuse to pull with this file; its routes do not apply", "fix the TOML syntax at this line")
				bad = true
			} else {
				c.add(Error, ctrs, f, pr.Line, fmt.Sprintf("unknown key %q: containers/image rejects the file or ignores the key, so the route it meant does not apply", pr.Key),
					"fix the key name (registries.conf v2 keys: unqualified-search-registries, short-name-mode, [[registry]] prefix/location/insecure/blocked/mirror-by-digest-only, [[registry.mirror]] location/insecure/pull-from-mirror, [aliases])")
			}
		}
		if bad {
			continue
		}
		if len(rc.Registries) > 0 {
			c.add(Error, ctrs, f, lineOf(data, "[registries."), "v1 format ([registries.search]/[registries.insecure]) has no mirrors: every registry is pulled directly",
				fmt.Sprintf("rewrite in v2 format: [[registry]] prefix = \"<registry>\" location = \"%s/<registry>\"", c.pg))
		}
		secs := index(data)
		var regSecs []*section
		for _, s := range secs {
			if s.array && s.header == "registry" {
				regSecs = append(regSecs, s)
			}
		}
		for i, r := range rc.Registry {
			e := &regEntry{Registry: r, file: f}
			if i < len(regSecs) {
				s := regSecs[i]
				e.line, e.locLine = s.line, s.keys["location"]
				// mirrors of this entry: [[registry.mirror]] sections until the next [[registry]]
				for _, m := range secs {
					if m.array && m.header == "registry.mirror" && m.line > s.line && (i+1 >= len(regSecs) || m.line < regSecs[i+1].line) {
						e.mirrorLines = append(e.mirrorLines, m.line)
					}
				}
			}
			if e.locLine == 0 {
				e.locLine = e.line
			}
			key := r.Prefix
			if key == "" {
				key = r.Location
			}
			entries[key] = e
		}
		if rc.UnqualifiedSearchRegistries != nil {
			search, searchFile = rc.UnqualifiedSearchRegistries, f
			searchLine = secs[0].keys["unqualified-search-registries"]
		}
		for k, v := range rc.Aliases {
			aliases[k] = aliasEntry{target: v, file: f, line: aliasLine(secs, k)}
		}
	}
	if p.ShortNameCache != "" {
		data, ok, err := c.read(p.ShortNameCache)
		if err != nil {
			return err
		}
		if ok {
			read++
			rc, probs := ParseRegistriesConf(data)
			if len(probs) == 0 {
				secs := index(data)
				for k, v := range rc.Aliases {
					// the cache takes precedence over the configured aliases
					aliases[k] = aliasEntry{target: v, file: p.ShortNameCache, line: aliasLine(secs, k)}
				}
			}
		}
	}
	if read == 0 {
		return nil
	}
	toPullgate := func(host string) bool {
		e := match(entries, host)
		return e != nil && !e.Blocked && c.isPullgate(locHost(e.Location))
	}
	rejects, err := c.policyRejectsOthers(toPullgate)
	if err != nil {
		return err
	}

	// routed reports whether a pull of host/... reaches only pullgate (or is
	// refused by the node), and the entry that decides it.
	routed := func(host string) bool {
		e := match(entries, host)
		if e == nil {
			return rejects
		}
		if e.Blocked {
			return true
		}
		if !c.isPullgate(locHost(e.Location)) {
			return false
		}
		for _, m := range e.Mirror {
			if !c.isPullgate(locHost(m.Location)) {
				return false
			}
		}
		return true
	}

	for _, k := range slices.Sorted(maps.Keys(entries)) {
		e := entries[k]
		if e.Blocked {
			continue
		}
		fixLoc := fmt.Sprintf("location = \"%s/%s\"", c.pg, k)
		pgMirrors := 0
		for i, m := range e.Mirror {
			ml := 0
			if i < len(e.mirrorLines) {
				ml = e.mirrorLines[i]
			}
			if c.isPullgate(locHost(m.Location)) {
				pgMirrors++
				continue
			}
			c.add(Error, ctrs, e.file, ml, fmt.Sprintf("mirror %s of %s is not pullgate: it is tried first", m.Location, k),
				"delete this [[registry.mirror]]")
		}
		if !c.isPullgate(locHost(e.Location)) {
			loc := e.Location
			if loc == "" {
				loc = k
			}
			route := fmt.Sprintf("location of %s is %s: %s/... is pulled from it", k, loc, k)
			if pgMirrors > 0 {
				route = fmt.Sprintf("location of %s is %s: containers/image tries the pullgate mirror first and then the location, so a pull pullgate refuses or cannot serve is fetched from %s (a mirror never fails closed)", k, loc, loc)
			}
			c.add(Error, ctrs, e.file, e.locLine, route, fixLoc+" (the location itself must be pullgate)")
		} else if pgMirrors > 0 {
			c.add(Warning, ctrs, e.file, e.mirrorLines0(), fmt.Sprintf("both a [[registry.mirror]] and the location of %s are pullgate: every refused pull is decided twice (two audit lines, two pullgate_decisions_total)", k),
				"delete the [[registry.mirror]] (keep "+fixLoc+")")
		}
	}
	for _, r := range c.opts.Registries {
		if e := match(entries, r); e == nil {
			c.add(Error, ctrs, c.opts.Paths.RegistriesConf, 0, fmt.Sprintf("no [[registry]] entry for %s: %s/... is pulled directly", r, r),
				fmt.Sprintf("[[registry]] prefix = \"%s\" location = \"%s/%s\"", r, c.pg, r))
		}
	}
	for _, s := range search {
		if !routed(strings.ToLower(s)) && match(entries, strings.ToLower(s)) == nil {
			c.add(Error, ctrs, searchFile, searchLine, fmt.Sprintf("unqualified-search registry %s has no [[registry]] entry routed to pullgate: short names are pulled from it", s),
				fmt.Sprintf("[[registry]] prefix = \"%s\" location = \"%s/%s\", or drop %q from unqualified-search-registries", s, c.pg, s, s))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(aliases)) {
		a := aliases[k]
		if a.target == "" {
			continue // an empty value erases the alias of an earlier file
		}
		host := locHost(a.target)
		if routed(host) {
			continue
		}
		c.add(Error, ctrs, a.file, a.line, fmt.Sprintf("short-name alias %q = %q resolves to %s, which is not routed through pullgate (short-name-mode does not stop aliases)", k, a.target, host),
			fmt.Sprintf("delete this alias, or add [[registry]] prefix = \"%s\" location = \"%s/%s\"", host, c.pg, host))
	}
	pf := c.opts.Paths.PolicyJSON
	if pf == "" {
		pf = NodePaths().PolicyJSON
	}
	firewall := "an egress firewall on the node that lets only pullgate reach registries"
	if !rejects {
		c.add(Error, ctrs, pf, 0,
			"registries without a [[registry]] entry (quay.io, …) are pulled directly: registries.conf has no catch-all entry",
			fmt.Sprintf(`policy.json: "default": [{"type": "reject"}] with a "transports": {"docker": {...}} scope only for registries routed to pullgate (%s), and %s`, quoteList(c.opts.Registries), firewall))
	} else {
		// containers/image opens the source (ping, and the manifest to
		// choose among mirrors) before it evaluates policy.json.
		c.add(Warning, ctrs, pf, 0,
			"policy.json refuses images of registries not routed to pullgate, but only after containers/image has contacted them (the /v2/ ping comes first): requests still leave the node, no image is stored",
			firewall)
	}
	return nil
}

// aliasLine is the line of alias k in an indexed file.
func aliasLine(secs []*section, k string) int {
	for _, s := range secs {
		if s.header == "aliases" {
			if l, ok := s.keys[k]; ok {
				return l
			}
		}
	}
	return 0
}

func (e *regEntry) mirrorLines0() int {
	if len(e.mirrorLines) > 0 {
		return e.mirrorLines[0]
	}
	return e.line
}

// match is the entry with the longest prefix matching host (exact or
// *.domain wildcard), as containers/image picks it.
func match(entries map[string]*regEntry, host string) *regEntry {
	var best *regEntry
	bestLen := -1
	for k, e := range entries {
		kh := strings.ToLower(k)
		ok := false
		switch {
		case strings.HasPrefix(kh, "*."):
			ok = strings.HasSuffix(host, kh[1:])
		default:
			h := kh
			if i := strings.Index(h, "/"); i >= 0 {
				h = h[:i]
			}
			ok = h == host
		}
		if ok && len(kh) > bestLen {
			best, bestLen = e, len(kh)
		}
	}
	return best
}

// locHost is the HOST[:PORT] of a registries.conf location.
func locHost(loc string) string {
	loc = strings.ToLower(loc)
	if i := strings.Index(loc, "/"); i >= 0 {
		return loc[:i]
	}
	return loc
}

// PolicyJSON is the part of containers-policy.json(5) that decides whether
// an unrouted registry is refused.
type PolicyJSON struct {
	Default    []struct{ Type string } `json:"default"`
	Transports map[string]map[string][]struct {
		Type string
	} `json:"transports"`
}

// ParsePolicyJSON decodes a policy.json.
func ParsePolicyJSON(data []byte) (*PolicyJSON, error) {
	var p PolicyJSON
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// policyRejectsOthers reports whether policy.json refuses every docker
// image outside the registries routed to pullgate (default reject, no
// accepting scope for another registry). The policy applies to the name
// the user pulled, before registries.conf rewrites it.
func (c *checker) policyRejectsOthers(toPullgate func(host string) bool) (bool, error) {
	f := c.opts.Paths.PolicyJSON
	if f == "" {
		return false, nil
	}
	data, ok, err := c.read(f)
	if err != nil || !ok {
		return false, err
	}
	p, err := ParsePolicyJSON(data)
	if err != nil {
		c.add(Error, ctrs, f, 0, "policy.json does not parse ("+err.Error()+"): every pull is refused", "fix the JSON")
		return true, nil
	}
	if len(p.Default) == 0 || p.Default[0].Type != "reject" {
		return false, nil
	}
	for scope, reqs := range p.Transports["docker"] {
		host := locHost(scope)
		if len(reqs) == 0 || reqs[0].Type == "reject" {
			continue
		}
		if c.isPullgate(host) {
			continue
		}
		if !toPullgate(host) {
			c.add(Error, ctrs, f, lineOf(data, fmt.Sprintf("%q", scope)), fmt.Sprintf("policy.json accepts %s, which registries.conf does not route to pullgate: its pulls go there directly", scope),
				fmt.Sprintf("delete this scope, or add [[registry]] prefix = \"%s\" location = \"%s/%s\"", host, c.pg, host))
			return false, nil
		}
	}
	return true, nil
}
