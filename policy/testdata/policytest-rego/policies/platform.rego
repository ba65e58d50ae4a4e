package pullgate

trusted_builder := "https://ci.example/builder"

# Violations: SLSA provenance from the trusted builder, signed by release.
deny contains msg if {
	not provenance_ok
	msg := sprintf("no SLSA provenance from %s", [trusted_builder])
}

# A model bill of materials, when the rule's checks ran one, must pass.
deny contains "the MBOM check failed" if input.checks.mbom.passed == false

provenance_ok if {
	some a in input.attestations
	a.predicateType == "https://slsa.dev/provenance/v0.2"
	a.signer == "release"
	a.predicate.builder.id == trusted_builder
}
