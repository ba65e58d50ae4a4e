package engine

import (
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify/vsa"
)

// VerifiedLevels names, for a VSA of an allowed decision, the kinds of
// checks that ran and passed: PULLGATE_POLICY, then one value per kind
// of passed check (signatures, attestations, chain, MBOM), and
// PULLGATE_CONTENT when contentInspected (every blob was let out through
// the rule's content inspection) followed by PULLGATE_CONTENT_<FORMAT> for
// each format the inspection recognised.
func (v Verdict) VerifiedLevels(contentInspected bool, formats []string) []string {
	levels := []string{vsa.LevelPolicy}
	add := func(l string) {
		if !slices.Contains(levels, l) {
			levels = append(levels, l)
		}
	}
	for _, c := range v.Checks {
		if !c.Passed {
			continue
		}
		switch c.Name {
		case "signature":
			add(vsa.LevelSignatures)
		case "attestation":
			add(vsa.LevelAttestations)
		case "chain":
			add(vsa.LevelChain)
		case "mbom":
			add(vsa.LevelMBOM)
		}
	}
	if contentInspected {
		add(vsa.LevelContent)
		for _, f := range formats {
			add(vsa.ContentLevel(f))
		}
	}
	return levels
}

// CountedEvidence is the evidence (signature and attestation digests) the
// decision's passed checks counted, in the order of its checks: what a
// VSA lists as its inputAttestations, and what promote may copy.
func (v Verdict) CountedEvidence() []digest.Digest {
	var out []digest.Digest
	for _, c := range v.Checks {
		if !c.Passed || c.Name != "signature" && c.Name != "attestation" {
			continue
		}
		for _, e := range c.Evidence {
			out = append(out, digest.Digest(e))
		}
	}
	return out
}
