package config

import (
	"fmt"
	"io"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/policy/bytesize"
)

var ioEOF = io.EOF

// Duration is a time.Duration written as "30s", "10m", "24h".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 30s, 10m, 24h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ByteSize is a size written as 1048576, "512KiB", "16MiB", "10GiB" (or KB/MB/GB, powers of 1000).
type ByteSize int64

// UnmarshalYAML parses a size with an optional unit (the same syntax as
// sizes in the policy file); 0 means unset.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if strings.TrimSpace(n.Value) == "0" {
		*b = 0
		return nil
	}
	v, err := bytesize.Parse(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}
