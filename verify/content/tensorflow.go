package content

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// FormatTensorFlow is a TensorFlow graph file: a SavedModel's
// saved_model.pb (tensorflow.SavedModel), a frozen graph or other *.pb
// GraphDef (tensorflow.GraphDef), and the files around them in a
// SavedModel directory (fingerprint.pb, keras_metadata.pb, the variables/
// checkpoint).
const FormatTensorFlow = "tensorflow"

// TensorFlowOptions configure the TensorFlow graph validator (policy key
// content.formats.tensorflow).
type TensorFlowOptions struct {
	// AllowOps removes ops from the denylist (TensorFlowDeniedOps and
	// DenyOps): a rule that serves models whose vocabulary tables are read
	// from their assets lists InitializeTableFromTextFileV2 here.
	AllowOps []string
	// DenyOps adds ops to the denylist.
	DenyOps []string
}

// TensorFlowDeniedOps are the ops a TensorFlow graph may not run by default,
// each with why: they read or write files named by a tensor of the graph,
// start or reach processes and network services, or run Python. A model
// that carries one can read /etc/passwd into its output, overwrite a file,
// or run code when it is loaded or served.
//
// Deliberately NOT denied: the checkpoint ops every SavedModel carries and
// its loader runs with a path it supplies itself (SaveV2, RestoreV2,
// MergeV2Checkpoints, Save, Restore, RestoreSlice, SaveSlices,
// ShardedFilename, ShardedFilespec) and the string ops that build that path
// (StringJoin, StaticRegexFullMatch): denying them would refuse every real
// model. A graph can still call them with a path of its own; that residual
// risk is documented in docs/model-gate.md (denyOps adds them for a rule
// that serves frozen graphs only). Three ops are refused only with the
// attribute that makes them touch a file: PrintV2 whose output_stream is
// not stdout, stderr or a log, DecodeProtoV2 and EncodeProto whose
// descriptor_source is neither local:// nor bytes://.
var TensorFlowDeniedOps = map[string]string{
	// Files.
	"ReadFile":                      "reads a file named by a tensor",
	"WriteFile":                     "writes a file named by a tensor",
	"MatchingFiles":                 "lists the file system",
	"ImmutableConst":                "maps a file named in its attributes into memory",
	"InitializeTableFromTextFile":   "reads a text file into a lookup table",
	"InitializeTableFromTextFileV2": "reads a text file into a lookup table",
	"GenerateVocabRemapping":        "reads vocabulary files",
	"LoadAndRemapMatrix":            "reads a checkpoint named by a tensor",
	"RecordInput":                   "reads the files matching a pattern",
	"FileSystemSetConfiguration":    "reconfigures a file system",
	// Readers.
	"WholeFileReader":           "creates a reader of whole files",
	"WholeFileReaderV2":         "creates a reader of whole files",
	"TextLineReader":            "creates a reader of text files",
	"TextLineReaderV2":          "creates a reader of text files",
	"FixedLengthRecordReader":   "creates a reader of record files",
	"FixedLengthRecordReaderV2": "creates a reader of record files",
	"TFRecordReader":            "creates a reader of TFRecord files",
	"TFRecordReaderV2":          "creates a reader of TFRecord files",
	"LMDBReader":                "creates a reader of LMDB files",
	// Datasets that read, write or reach files, databases and services.
	"TFRecordDataset":                  "reads TFRecord files",
	"TFRecordDatasetV2":                "reads TFRecord files",
	"TextLineDataset":                  "reads text files",
	"FixedLengthRecordDataset":         "reads record files",
	"FixedLengthRecordDatasetV2":       "reads record files",
	"CSVDataset":                       "reads CSV files",
	"CSVDatasetV2":                     "reads CSV files",
	"ExperimentalCSVDataset":           "reads CSV files",
	"SqlDataset":                       "queries a database",
	"ExperimentalSqlDataset":           "queries a database",
	"LMDBDataset":                      "reads LMDB files",
	"ExperimentalLMDBDataset":          "reads LMDB files",
	"MatchingFilesDataset":             "lists the file system",
	"ExperimentalMatchingFilesDataset": "lists the file system",
	"DatasetToTFRecord":                "writes a TFRecord file",
	"ExperimentalDatasetToTFRecord":    "writes a TFRecord file",
	"SaveDataset":                      "writes a dataset to files",
	"SaveDatasetV2":                    "writes a dataset to files",
	"LoadDataset":                      "reads a dataset from files",
	"SnapshotDataset":                  "writes and reads snapshot files",
	"SnapshotDatasetV2":                "writes and reads snapshot files",
	"SnapshotDatasetReader":            "reads snapshot files",
	"SnapshotNestedDatasetReader":      "reads snapshot files",
	"SnapshotChunkDataset":             "reads snapshot files",
	"DistributedSave":                  "writes a dataset to files",
	"CacheDataset":                     "may cache to a file named by a tensor",
	"CacheDatasetV2":                   "may cache to a file named by a tensor",
	"DatasetFromGraph":                 "runs a graph serialized in a tensor, which the gate cannot inspect",
	"DataServiceDataset":               "connects to a tf.data service",
	"DataServiceDatasetV2":             "connects to a tf.data service",
	"DataServiceDatasetV3":             "connects to a tf.data service",
	"DataServiceDatasetV4":             "connects to a tf.data service",
	"RegisterDataset":                  "connects to a tf.data service",
	"RegisterDatasetV2":                "connects to a tf.data service",
	"CreateSummaryFileWriter":          "writes event files to a directory",
	"CreateSummaryDbWriter":            "writes a database file",
	"DebugIdentity":                    "sends tensors to debug URLs (file://, grpc://)",
	"DebugIdentityV2":                  "writes tensors to a dump directory",
	"DebugIdentityV3":                  "sends tensors to debug URLs (file://, grpc://)",
	"DebugNanCount":                    "sends tensors to debug URLs (file://, grpc://)",
	"DebugNumericSummary":              "sends tensors to debug URLs (file://, grpc://)",
	"DebugNumericSummaryV2":            "writes tensors to a dump directory",
	"RpcServer":                        "starts a network server",
	"RpcServerStart":                   "starts a network server",
	"RpcServerRegister":                "serves a function over the network",
	"RpcClient":                        "connects to a network server",
	"RpcCall":                          "calls a network server",
	"PyFunc":                           "runs a Python function",
	"PyFuncStateless":                  "runs a Python function",
	"EagerPyFunc":                      "runs a Python function",
	"Abort":                            "terminates the process",
}

const tfPrintV2 = "PrintV2"

// tfStdStreams are PrintV2's output_stream values that are not files.
var tfStdStreams = []string{"stdout", "stderr", "log(info)", "log(warning)", "log(error)"}

// Message kinds of the TensorFlow schema.
const (
	tfSavedModel protoKind = iota
	tfGraphRoot            // a GraphDef file (frozen graph)
	tfMetaGraph
	tfGraph
	tfNode
	tfLibrary
	tfFunction
	tfOpDef
	tfGradient
	tfRegGradient
	tfAttrEntry
	tfAttr
	tfAttrList
	tfNameAttrList
	tfOpaqueRoot // fingerprint.pb: checked as protobuf only
	tfKerasMeta  // keras_metadata.pb (SavedMetadata)
	tfKerasObj
	tfObjectGraph // MetaGraphDef.object_graph_def (SavedObjectGraph)
	tfSavedObject
	tfUserObject
)

// Bounds of the TensorFlow walker: names are at most tfMaxName bytes
// (longer op, node, function or attribute names are refused), attribute
// strings are read up to tfMaxName bytes (the rest skipped), a Keras
// metadata JSON up to tfMaxKerasMeta (parsed and checked, then dropped:
// about 10x its size while parsed). With pbMaxDepth frames holding a few
// names each, memory stays below 48 MiB whatever the file size; tensor
// constants (Const nodes' tensor_content, frozen weights) are skipped,
// never held.
const (
	tfMaxName      = 4096
	tfMaxKerasMeta = 4 << 20
)

var tfSchema = &protoSchema{
	format: FormatTensorFlow,
	name:   "TensorFlow",
	kindName: []string{"SavedModel", "GraphDef", "MetaGraphDef", "GraphDef", "NodeDef", "FunctionDefLibrary", "FunctionDef", "OpDef",
		"GradientDef", "RegisteredGradient", "attr entry", "AttrValue", "AttrValue.ListValue", "NameAttrList", "protobuf", "SavedMetadata", "SavedObject",
		"SavedObjectGraph", "SavedObject", "SavedUserObject"},
	children: map[protoKind]map[protowire.Number]protoKind{
		tfSavedModel:   {2: tfMetaGraph},
		tfMetaGraph:    {2: tfGraph, 7: tfObjectGraph},
		tfObjectGraph:  {1: tfSavedObject}, // nodes
		tfSavedObject:  {4: tfUserObject},  // user_object
		tfGraphRoot:    {1: tfNode, 2: tfLibrary},
		tfGraph:        {1: tfNode, 2: tfLibrary},
		tfLibrary:      {1: tfFunction, 2: tfGradient, 3: tfRegGradient},
		tfFunction:     {1: tfOpDef, 3: tfNode, 5: tfAttrEntry},
		tfNode:         {5: tfAttrEntry},
		tfAttrEntry:    {2: tfAttr},
		tfAttr:         {1: tfAttrList, 10: tfNameAttrList},
		tfAttrList:     {9: tfNameAttrList},
		tfNameAttrList: {2: tfAttrEntry},
		tfKerasMeta:    {1: tfKerasObj},
	},
	collect: func(k protoKind, n protowire.Number) int {
		switch {
		case k == tfNode && (n == 1 || n == 2), // name, op
			k == tfOpDef && n == 1,                // name
			k == tfGradient && (n == 1 || n == 2), // function_name, gradient_func
			k == tfRegGradient && n == 1,          // gradient_func
			k == tfAttrEntry && n == 1,            // key
			k == tfNameAttrList && n == 1:         // name
			return tfMaxName
		case k == tfAttr && n == 2: // s: a prefix is enough
			return -tfMaxName
		case k == tfKerasObj && n == 5, // keras_metadata.pb SavedObject.metadata (JSON)
			k == tfUserObject && n == 3: // SavedUserObject.metadata (JSON)
			return tfMaxKerasMeta
		}
		return 0
	},
}

// TensorFlowInspector walks a TensorFlow protobuf as it streams: every node
// of every graph (a SavedModel's meta graphs, a frozen GraphDef), of every
// function of their libraries, every function named by an attribute (the f
// of PartitionedCall, StatefulPartitionedCall, While, If, ... at any depth)
// and every gradient function, and refuses ops of the denylist. Constants
// are skipped, never held. The whole file decides: HeaderDone is true only
// after a successful Close.
type TensorFlowInspector struct {
	opts Options
	w    protoWalker
	root protoKind
	done bool
}

// NewTensorFlowInspector returns the validator for a TensorFlow protobuf
// file of size bytes (-1 if unknown). Its name decides the message type, as
// for TensorFlow's loaders: saved_model.pb is a SavedModel,
// keras_metadata.pb Keras's SavedMetadata (each layer's config is checked
// like a Keras config, as is the copy a SavedModel of TF < 2.5 keeps in its
// object graph, SavedUserObject.metadata), fingerprint.pb a FingerprintDef (numbers only), any
// other *.pb a GraphDef.
func NewTensorFlowInspector(opts Options, name string, size int64) *TensorFlowInspector {
	t := &TensorFlowInspector{opts: opts}
	// Names are compared ignoring case: on a case-insensitive file system
	// (macOS, Windows) SAVED_MODEL.PB is the loader's saved_model.pb.
	switch strings.ToLower(path.Base(name)) {
	case "saved_model.pb":
		t.root = tfSavedModel
	case "keras_metadata.pb":
		t.root = tfKerasMeta
	case "fingerprint.pb":
		t.root = tfOpaqueRoot
	default:
		t.root = tfGraphRoot
	}
	t.w = newProtoWalker(tfSchema, t, t.root, size)
	return t
}

func (t *TensorFlowInspector) Format() string { return FormatTensorFlow }

func (t *TensorFlowInspector) HeaderDone() bool { return t.done }

func (t *TensorFlowInspector) Write(p []byte) (int, error) { return t.w.Write(p) }

func (t *TensorFlowInspector) varint(*protoFrame, protowire.Number, uint64) error { return nil }

func (t *TensorFlowInspector) collected(top *protoFrame, num protowire.Number, s string, _ bool) error {
	switch top.kind {
	case tfNode:
		if num == 1 {
			top.key = s
		} else {
			top.value, top.hasKey = s, true
		}
	case tfOpDef, tfNameAttrList, tfAttrEntry:
		top.key, top.hasKey = s, true
	case tfAttr:
		// a prefix: enough to tell a file from a stream
		top.value, top.hasKey = s, true
	case tfGradient:
		if why, denied := t.denied(s); denied {
			return t.w.fail(top.start, "a gradient function of the graph's library names op %s (%s); content.formats.tensorflow.allowOps admits it", s, why)
		}
	case tfRegGradient:
		if why, denied := t.denied(s); denied {
			return t.w.fail(top.start, "a registered gradient of the graph's library names op %s (%s); content.formats.tensorflow.allowOps admits it", s, why)
		}
	case tfKerasObj:
		if err := checkKerasConfig(t.opts, FormatTensorFlow, fmt.Sprintf("keras_metadata.pb object at offset %d", top.start), []byte(s)); err != nil {
			return err
		}
	case tfUserObject:
		// tf.keras's load_model reads a layer's config here when
		// keras_metadata.pb is absent (SavedModels of TF < 2.5,
		// _read_legacy_metadata) and revives Lambda layers from it. Other
		// user objects leave it empty; a non-empty one is checked.
		if s != "" {
			if err := checkKerasConfig(t.opts, FormatTensorFlow, fmt.Sprintf("saved_model.pb object metadata at offset %d", top.start), []byte(s)); err != nil {
				return err
			}
		}
	}
	return nil
}

// denied says whether an op is refused, and why.
func (t *TensorFlowInspector) denied(op string) (string, bool) {
	if slices.Contains(t.opts.TensorFlow.AllowOps, op) {
		return "", false
	}
	if why, ok := TensorFlowDeniedOps[op]; ok {
		return why, true
	}
	if slices.Contains(t.opts.TensorFlow.DenyOps, op) {
		return "listed in content.formats.tensorflow.denyOps", true
	}
	return "", false
}

// nodeReason checks a node's op (and for PrintV2, DecodeProtoV2 and
// EncodeProto the attribute that makes them touch a file).
func (t *TensorFlowInspector) nodeReason(f *protoFrame) string {
	op := f.value
	switch op {
	case tfPrintV2:
		if f.aux != "" && !slices.Contains(tfStdStreams, f.aux) && !slices.Contains(t.opts.TensorFlow.AllowOps, op) {
			return fmt.Sprintf("runs op PrintV2 with output_stream %q (appends to a file); content.formats.tensorflow.allowOps: [PrintV2] admits it", tfShort(f.aux))
		}
	case "DecodeProtoV2", "EncodeProto":
		if f.aux2 != "" && f.aux2 != "local://" && !strings.HasPrefix(f.aux2, "bytes://") && !slices.Contains(t.opts.TensorFlow.AllowOps, op) {
			return fmt.Sprintf("runs op %s with descriptor_source %q (reads a descriptor file); content.formats.tensorflow.allowOps: [%s] admits it", op, tfShort(f.aux2), op)
		}
	}
	if why, denied := t.denied(op); denied {
		return fmt.Sprintf("runs op %s (%s); content.formats.tensorflow.allowOps admits it", op, why)
	}
	return ""
}

// tfNodeDefReason judges one serialized NodeDef (a TFLite Flex op's) as a
// node of a graph: its op, the attributes that make PrintV2,
// DecodeProtoV2 and EncodeProto touch files, the ops its function
// attributes name. "" if it passes; an error if it is not a NodeDef.
func tfNodeDefReason(opts Options, b []byte) (string, error) {
	t := &TensorFlowInspector{opts: opts, root: tfNode}
	t.w = newProtoWalker(tfSchema, t, tfNode, int64(len(b)))
	if _, err := t.w.Write(b); err != nil {
		return "", err
	}
	if err := t.w.closeCheck(); err != nil {
		return "", err
	}
	root := &t.w.stack[0]
	if !root.hasKey || root.value == "" {
		return "", fmt.Errorf("node %q has no op", tfShort(root.key))
	}
	if r := t.nodeReason(root); r != "" {
		return r, nil
	}
	return root.pending, nil
}

func tfShort(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// ended checks a message once it is whole (fields come in any order, so a
// node's op, name and attributes are judged together). A reason found
// inside a function is reported when the function ends, with its name.
func (t *TensorFlowInspector) ended(f, parent *protoFrame) error {
	switch f.kind {
	case tfAttr:
		// Protobuf merges repeated occurrences of a message field: an
		// entry's second AttrValue without s keeps the first's s, so
		// only an AttrValue that carried s replaces it (last set wins).
		if f.hasKey {
			parent.value = f.value
		}
	case tfAttrEntry:
		if parent.kind == tfNode {
			switch f.key {
			case "output_stream":
				parent.aux = f.value
			case "descriptor_source":
				parent.aux2 = f.value
			}
		}
	case tfNameAttrList:
		if why, denied := t.denied(f.key); denied {
			t.defer_(fmt.Sprintf("names op %s in a function attribute (%s); content.formats.tensorflow.allowOps admits it", f.key, why), f.start)
		}
	case tfOpDef:
		if f.hasKey { // merged like AttrValue: an OpDef without a name keeps the last one
			parent.key = f.key
		}
	case tfNode:
		if !f.hasKey || f.value == "" {
			return t.w.fail(f.start, "node %q has no op (not a TensorFlow graph)", f.key)
		}
		reason := f.pending
		at := f.pendingAt
		if r := t.nodeReason(f); r != "" {
			reason, at = r, f.start
		}
		parent.count++
		if reason == "" {
			return nil
		}
		msg := fmt.Sprintf("node %q %s", tfShort(f.key), reason)
		if parent.kind == tfFunction {
			if parent.pending == "" {
				parent.pending, parent.pendingAt = msg, at
			}
			return nil
		}
		return t.w.fail(at, "%s, in the main graph", msg)
	case tfFunction:
		parent.count++
		if f.pending != "" {
			return t.w.fail(f.pendingAt, "%s, in function %q", f.pending, tfShort(f.key))
		}
	case tfLibrary, tfMetaGraph:
		parent.count++
	}
	return nil
}

// defer_ records a reason on the innermost node or function being walked.
func (t *TensorFlowInspector) defer_(reason string, at int64) {
	for i := len(t.w.stack) - 1; i >= 0; i-- {
		fr := &t.w.stack[i]
		if fr.kind == tfNode || fr.kind == tfFunction {
			if fr.pending == "" {
				fr.pending, fr.pendingAt = reason, at
			}
			return
		}
	}
}

func (t *TensorFlowInspector) Close() error {
	if err := t.w.closeCheck(); err != nil {
		return err
	}
	root := t.w.stack[0]
	switch {
	case t.root == tfSavedModel && root.count == 0:
		return t.w.fail(0, "saved_model.pb holds no meta graph (not a SavedModel)")
	case t.root == tfGraphRoot && root.count == 0:
		return t.w.fail(0, "no node and no function library (not a TensorFlow GraphDef)")
	}
	t.done = true
	return nil
}

// tfVariablesRE names the files of a SavedModel's variables checkpoint
// (a table of contents and raw tensor data the loader reads as data).
var tfVariablesRE = regexp.MustCompile(`^variables\.(index|data-[0-9]{5}-of-[0-9]{5})$`)

// isTFVariablesName reports a SavedModel's variables/ checkpoint file.
func isTFVariablesName(title string) bool {
	return tfVariablesRE.MatchString(path.Base(title)) && path.Base(path.Dir(title)) == "variables"
}

// isTFGraphName reports a file TensorFlow loads as a protobuf (*.pb).
func isTFGraphName(title string) bool {
	return strings.EqualFold(path.Ext(title), ".pb")
}

// tfUnparsedReason refuses the SavedModel files the loader reads that the
// gate does not parse (any case, as for a case-insensitive file system):
// saved_model.pbtxt, read when saved_model.pb is absent, and
// saved_model.cpb, the chunked SavedModel of TF 2.15+ (the loaders read it
// as the SavedModel; one next to a benign saved_model.pb may be the one
// loaded). "" for any other name.
func tfUnparsedReason(title string) string {
	switch base := path.Base(title); {
	case strings.EqualFold(base, "saved_model.pbtxt"):
		return base + " is a SavedModel in protobuf text format, which TensorFlow loads when saved_model.pb is absent; " +
			"the gate walks only binary SavedModels (publish saved_model.pb); no policy key admits it"
	case strings.EqualFold(base, "saved_model.cpb"):
		return base + " is a chunked SavedModel (TF 2.15+, written for graphs over 2 GB), which TensorFlow's loaders read as the SavedModel; " +
			"the gate does not parse chunked SavedModels (publish saved_model.pb); no policy key admits it"
	}
	return ""
}
