package nodecheck

import (
	"encoding/json"
	"fmt"
	"strings"
)

const dkr = "docker"

// DaemonJSON is the part of Docker's daemon.json that routes pulls.
type DaemonJSON struct {
	RegistryMirrors []string `json:"registry-mirrors"`
}

// ParseDaemonJSON decodes a daemon.json; a syntax error carries its line.
func ParseDaemonJSON(data []byte) (*DaemonJSON, int, error) {
	var d DaemonJSON
	if err := json.Unmarshal(data, &d); err != nil {
		line := 0
		if se, ok := err.(*json.SyntaxError); ok && se.Offset >= 0 && se.Offset <= int64(len(data)) {
			line = 1 + strings.Count(string(data[:se.Offset]), "\n")
		}
		return nil, line, err
	}
	return &d, 0, nil
}

func (c *checker) docker() error {
	f := c.opts.Paths.DaemonJSON
	if f == "" {
		return nil
	}
	data, ok, err := c.read(f)
	if err != nil || !ok {
		return err
	}
	firewall := fmt.Sprintf("egress firewall on this node: allow registry traffic (TCP 443/80) only to %s and drop it to registry-1.docker.io and every other registry; daemon.json has no setting that closes this", c.pg)
	d, line, err := ParseDaemonJSON(data)
	if err != nil {
		c.add(Error, dkr, f, line, "daemon.json does not parse ("+err.Error()+"): dockerd does not start", "fix the JSON at this line")
		return nil
	}
	mline := lineOf(data, `"registry-mirrors"`)
	pgMirror := false
	for _, m := range d.RegistryMirrors {
		if c.isPullgate(urlHost(m)) {
			pgMirror = true
			continue
		}
		c.add(Error, dkr, f, lineOf(data, m), fmt.Sprintf("registry mirror %s is not pullgate: Docker Hub pulls go to it", m),
			fmt.Sprintf(`"registry-mirrors": ["http://%s"]`, c.pg))
	}
	if pgMirror {
		c.add(Error, dkr, f, mline,
			"registry-mirrors applies to Docker Hub only and dockerd falls back to registry-1.docker.io whenever the mirror refuses (403) or is down; every other registry (ghcr.io, quay.io, …) is pulled directly",
			firewall+"; pull other registries as "+c.pg+"/<registry>/<repo>")
	} else {
		c.add(Error, dkr, f, mline, "no registry mirror is pullgate: dockerd pulls every registry directly",
			fmt.Sprintf(`"registry-mirrors": ["http://%s"], and an %s`, c.pg, firewall))
	}
	return nil
}
