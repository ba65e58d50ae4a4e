// Package modelcorpus generates model files for tests: valid safetensors,
// GGUF, pickle, PyTorch zip and legacy torch files, and the known attacks
// against them (see ../shared/reference/model-artifacts.md). Everything is
// built from Go code at test time, never checked in as opaque blobs.
//
// Pickles are written opcode by opcode the way CPython's pickler (protocols
// 2 and 4) and torch.save produce them, including memo usage (BINPUT/MEMOIZE
// for every memoizable object, BINGET when a global or string repeats).
package modelcorpus
