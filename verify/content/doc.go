// Package content inspects model files (safetensors, GGUF, pickle, zip
// archives) as their bytes stream through the proxy. Every parser here reads
// hostile input: strict, bounded, streaming, and fuzzed.
package content
