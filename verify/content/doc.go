// Package content inspects model files (safetensors, GGUF, pickle, zip
// archives) as their bytes stream through the proxy. Every parser here reads
// hostile input: strict, bounded, streaming, and fuzzed.
//
// # Entry points
//
//   - NewInspector(opts, mediaType, title, size) returns the Inspector for one
//     layer blob. It refuses the layer up front (a *Finding error) when the
//     descriptor alone is enough (media type not allowed, code layer), then
//     decides the format from the first bytes (never from the media type or
//     file name) and dispatches to the format's validator. The declared media
//     type only restricts which sniffed formats are acceptable
//     ("declared application/vnd.ollama.image.model but bytes are safetensors");
//     the name decides how text is read (templates, YAML configs, joblib,
//     SentencePiece). Options.AllowFormats narrows the formats; bytes of no
//     known format are refused unless Options.AllowUnknown.
//   - NewDeclaredInspector(opts, classes, size) inspects one blob as every
//     (media type, name) it is declared as, over the same bytes: HeaderDone
//     only when every class's inspector is, the first finding of any refuses
//     it (declarations.go).
//   - CheckManifest(opts, manifest) applies the descriptor-level rules to a
//     whole manifest (config and layer media types, foreign layers, code
//     layers, ModelPack file paths).
//   - InspectReader runs the same validators on a local file (pullgate
//     inspect) and returns a Report.
//   - NewSafetensorsInspector, NewGGUFInspector, NewPickleInspector,
//     NewLegacyTorchInspector, NewZipInspector, NewNPYInspector,
//     NewJoblibInspector, NewTarInspector and NewGzipTarInspector are the
//     format validators themselves, for callers that already know the format.
//   - Load-time closure (references.go): JSON configs list the names a
//     loader fetches other weights or code by (peft
//     base_model_name_or_path, _name_or_path, auto_map and
//     custom_pipelines "repo--module.Class"), classified hub, local or
//     url (ReferenceLister; Report.References; configs in tar layers
//     too). CheckReferences judges them under a rule's
//     content.references; the caller supplies the verified MBOM's base
//     model names.
//     format validators themselves, for callers that already know the format
//     (also NewONNXInspector, NewTensorFlowInspector, NewTFLiteInspector).
//   - Protobuf formats (ONNX, TensorFlow graphs) share one streaming walker
//     (protowalk.go): a schema of the messages to descend into and the
//     strings to read, everything else skipped byte-counted.
//   - Chat templates (template files, template keys of JSON and YAML
//     configs, GGUF tokenizer.chat_template*) are parsed and checked by
//     verify/chattemplate (templates.go).
//
// Archives: zip is parsed strictly (PyTorch checkpoints included, with the
// data descriptors torch.save writes: a stored member ends at the first
// PK\x07\x08 record whose size matches the bytes seen, a deflated one where
// its deflate stream ends; every member is checked against the central
// directory). Every member gets the checks a layer of its name gets
// (NewInspector), pickle members per the pickle mode; only a checkpoint's
// data/<key> storages after data.pkl are just checksummed and checked
// against data.pkl. Encrypted members are refused: they cannot be inspected. Tar layers whose media type declares tar
// (ModelPack *.tar, KitOps, ORAS) are validated entry by entry and every
// file inside goes through the same sniffing validators; tar+gzip is
// decompressed inline. tar+zstd, 7z, rar, xz and bzip2 are not decompressed:
// zstd/xz/bzip2/7z/rar bytes are refused unless the media type declares that
// packaging (tar+zstd) or the rule sets AllowArchives, and then they pass
// uninspected. A tar or tar+gzip in a weight or undeclared layer is
// validated the same way and served only as a NeMo .nemo archive (a root
// model_config.yaml, whose Hydra targets are checked: nemo.go) or, in an
// undeclared layer, under AllowArchives. A zip's top-level schema.json is
// a skops schema: every type it makes skops.io.load import is checked
// against skops' default trusted set (skops.go).
//
// # Streaming contract (see Inspector)
//
// No validator buffers a whole blob: safetensors buffers its header (capped,
// default 16 MiB), GGUF one metadata item at a time (each capped), the pickle
// walker one opcode (bytes payloads are skipped as they stream, not held), the zip validator one record header (deflated members
// are inflated as they stream, verify/content/inflate: at most 88 KiB, a
// 32 KiB window, Huffman tables and held input, whatever the member's size). Tensor data is
// only counted; zip members are CRC-checked as they pass.
//
// HeaderDone differs per format, and the proxy must honour it: bytes are
// released to clients only once HeaderDone is true, or, for an inspector
// that is Releasable, the bytes before Releasable() (every one of them was
// judged) before that.
//
//   - safetensors: after 8+N bytes, when the header and the size rule
//     (8 + N + last_end == size) are validated.
//   - GGUF: after header, metadata, tensor infos and the padding up to the
//     tensor data, including the file size implied by the tensor table; a
//     vocabulary-only file (n_tensors = 0) after its metadata (the padding
//     after it is optional, as llama.cpp and gguf-py write none).
//   - NumPy .npy: after the header for plain arrays; an object array (a
//     pickle after the header) only after the pickle was walked.
//   - legacy torch: after the five pickles, before the raw storages.
//   - HDF5: once the root group's object header (every continuation
//     chunk) and the global heap strings its model_config and
//     training_config attributes use were read and checked: right after
//     the header for h5py's usual layout, at the end when a continuation
//     chunk lies there.
//   - TFLite: once every operator code and buffer table was read (tensor
//     data that follows streams).
//   - PyTorch zip checkpoints: once data.pkl, their first member and only
//     pickle, was walked and passed (the storages that follow are raw
//     tensor bytes; a later finding aborts the stream with the end records
//     in the held-back tail).
//   - ONNX: only after Close, but released as it is walked (Releasable),
//     once the walk is 4 MiB in with no custom operator pending (else
//     held whole, for a clean refusal): up to the first node, function, attribute or external_data entry
//     still open and the first node whose custom operator no function has
//     defined yet (a later function may). A prefix of an ONNX file ending
//     at a field boundary is a loadable model: every released byte lies
//     before anything not yet judged, so any loadable prefix holds only
//     judged content; the held-back tail and the digest still guard the
//     end.
//   - TensorFlow graphs (*.pb): only after Close.
//   - declared tar layers: only after Close, but released as entries are
//     judged (TarInspector.Releasable), once 4 MiB are: entries judged
//     whole and the part of the streaming member its own validator
//     releases; never past a member that declared load-time references.
//   - raw pickle, joblib, other zips (incl. .npz), tar+gzip layers, tars
//     probed for NeMo in weight or undeclared layers, JSON and YAML configs, SentencePiece models, chat
//     templates and any text up to MaxConfigBytes (it may carry a
//     template): only after Close. A zip's central directory is at its end,
//     and a partially delivered zip or pickle can already be dangerous
//     (streaming unzippers, pickles execute as they load), so these blobs
//     must be spooled and released only after Close succeeds.
//   - anything else (text larger than MaxConfigBytes, unrecognised binary in a layer that may carry it,
//     archives in declared tar layers): immediately. Text and binary are
//     still walked speculatively as pickles (protocol 0/1 pickles have no
//     magic); a finding aborts the stream and the tail is held back.
//
// A failure after HeaderDone (trailing bytes, CRC, truncated data) is
// returned by Write or Close; the proxy then aborts the transfer with the
// tail held back and does not commit the blob.
//
// Findings are reproducible: the same bytes give the same Format and Reason
// however the stream is chunked (tested and fuzzed), so reasons can be put
// in audit logs and OCI DENIED errors verbatim.
package content
