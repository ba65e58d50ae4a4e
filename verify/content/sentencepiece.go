package content

import (
	"path"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// FormatSentencePiece is a SentencePiece tokenizer model (tokenizer.model,
// spiece.model): a protobuf ModelProto.
const FormatSentencePiece = "sentencepiece"

// isSentencePieceName reports whether a file name is a SentencePiece model's.
func isSentencePieceName(title string) bool {
	return strings.HasSuffix(strings.ToLower(path.Base(title)), ".model")
}

// newSentencePieceInspector buffers a SentencePiece model (bounded by
// MaxConfigBytes) and parses it at Close, after the speculative pickle walk
// and trailing-zip check of opaque bytes.
func newSentencePieceInspector(opts Options, size int64) *textInspector {
	return newHeldTextInspector(opts, size, FormatSentencePiece, "SentencePiece model larger than the %d-byte limit for parsed tokenizer files", CheckSentencePiece)
}

// CheckSentencePiece parses a SentencePiece ModelProto strictly: every field
// is well-formed protobuf, the top-level fields are the ones
// sentencepiece_model.proto defines (1 pieces, 2 trainer_spec,
// 3 normalizer_spec, 4 self_test_data, 5 denormalizer_spec), each piece has a UTF-8 piece string (1), a float score (2) and
// a type (3), and there is at least one piece. Anything else is not a
// SentencePiece model.
func CheckSentencePiece(b []byte) error {
	pieces := 0
	off := 0
	for off < len(b) {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return newFinding(FormatSentencePiece, int64(off), "not a SentencePiece model: malformed protobuf tag (%v)", protowire.ParseError(n))
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if vn < 0 {
			return newFinding(FormatSentencePiece, int64(off), "not a SentencePiece model: malformed protobuf field %d (%v)", num, protowire.ParseError(vn))
		}
		switch {
		case num >= 1 && num <= 5:
			if typ != protowire.BytesType {
				return newFinding(FormatSentencePiece, int64(off), "not a SentencePiece model: field %d has wire type %d, want a message", num, typ)
			}
			v, _ := protowire.ConsumeBytes(b[off+n:])
			if num == 1 {
				if err := checkPiece(v, off+n); err != nil {
					return err
				}
				pieces++
			} else if err := checkMessage(v, off+n); err != nil {
				return err
			}
		default:
			// Extension fields (>= 200) are allowed by the .proto but no
			// SentencePiece trainer writes them: bytes pullgate could not
			// vouch for.
			return newFinding(FormatSentencePiece, int64(off), "not a SentencePiece model: unknown top-level field %d", num)
		}
		off += n + vn
	}
	if pieces == 0 {
		return newFinding(FormatSentencePiece, 0, "not a SentencePiece model: no pieces")
	}
	return nil
}

func checkPiece(b []byte, base int) error {
	return eachField(b, base, "piece", func(num protowire.Number, typ protowire.Type, v []byte) bool {
		switch num {
		case 1:
			return typ == protowire.BytesType && utf8.Valid(v)
		case 2:
			return typ == protowire.Fixed32Type
		case 3:
			return typ == protowire.VarintType
		}
		return false
	})
}

// checkMessage checks that b is well-formed protobuf without groups (only
// the framing: strings and messages share a wire type).
func checkMessage(b []byte, base int) error {
	return eachField(b, base, "message", func(_ protowire.Number, typ protowire.Type, _ []byte) bool {
		return typ != protowire.StartGroupType && typ != protowire.EndGroupType
	})
}

// eachField walks the fields of a protobuf message, refusing malformed
// framing and every field ok rejects (v is the payload of a length-
// delimited field).
func eachField(b []byte, base int, what string, ok func(protowire.Number, protowire.Type, []byte) bool) error {
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return newFinding(FormatSentencePiece, int64(base+off), "not a SentencePiece model: malformed %s", what)
		}
		vn := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if vn < 0 {
			return newFinding(FormatSentencePiece, int64(base+off), "not a SentencePiece model: malformed %s field %d", what, num)
		}
		var v []byte
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(b[off+n:])
		}
		if !ok(num, typ, v) {
			return newFinding(FormatSentencePiece, int64(base+off), "not a SentencePiece model: %s field %d is malformed", what, num)
		}
		off += n + vn
	}
	return nil
}
