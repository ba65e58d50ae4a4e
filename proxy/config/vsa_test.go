package config

import (
	"strings"
	"testing"
)

// TestVSAConfig: a vsa: section needs a key and an absolute verifierId;
// policyUri, when given, is an absolute URI.
func TestVSAConfig(t *testing.T) {
	base := "upstreams: [{name: up.local, url: https://up.example}]\npolicy: ./policy.yaml\n"
	for _, tc := range []struct{ vsa, want string }{
		{"vsa: {key: ./vsa.key, verifierId: https://pullgate.example/prod}\n", ""},
		{"vsa: {key: ./vsa.key, verifierId: https://pullgate.example/prod, policyUri: https://p.example/policy.yaml, keyPasswordFile: ./pw}\n", ""},
		{"vsa: {verifierId: https://pullgate.example/prod}\n", "vsa.key: required"},
		{"vsa: {key: ./vsa.key}\n", "vsa.verifierId: required"},
		{"vsa: {key: ./vsa.key, verifierId: pullgate-prod}\n", "not an absolute URI"},
		{"vsa: {key: ./vsa.key, verifierId: https://x.example, policyUri: policy.yaml}\n", "vsa.policyUri"},
		{"vsa: {key: ./vsa.key, verifierId: https://x.example, keyID: x}\n", "keyID"},
	} {
		c, err := Parse([]byte(base + tc.vsa))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.vsa, err)
		case tc.want == "" && (c.VSA == nil || c.VSA.Key != "./vsa.key"):
			t.Errorf("%s: parsed %+v", tc.vsa, c.VSA)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.vsa, err, tc.want)
		}
	}
}
