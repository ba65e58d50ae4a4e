package content

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// protoWalker walks a protobuf message as it streams, for the validators of
// protobuf formats (ONNX, TensorFlow). A schema says which length-delimited
// fields are messages to descend into and which are strings to read; every
// other field (tensor data, doc strings, ...) is skipped byte-counted
// without being held. Each open message is a frame on a bounded stack; the
// format's hooks see every string read, every varint and every message as
// it ends.
//
// Memory: at most pbMaxDepth frames, plus the one string being read (at
// most the limit the schema gives for that field).
type protoWalker struct {
	schema *protoSchema
	hooks  protoHooks
	size   int64
	off    int64
	at     int64 // offset of the tag of the field being read
	stack  []protoFrame
	st     int
	vbuf   [binaryVarintMax]byte
	vn     int
	num    protowire.Number
	skip   int64
	coll   []byte
	cmax   int
	clen   int64 // length of the string field being read
	cnum   protowire.Number
	err    error
}

// protoKind is a message type of a schema (an index into kindName).
type protoKind uint8

// protoSchema describes the messages of one format a walker descends into.
type protoSchema struct {
	format   string // Finding.Format
	name     string // the format as a person names it ("ONNX")
	kindName []string
	children map[protoKind]map[protowire.Number]protoKind
	// collect gives, per message kind and field, how many bytes of a
	// string field are read: 0 skips it; n > 0 reads it whole and refuses
	// a longer one; n < 0 reads its first -n bytes and skips the rest.
	collect func(k protoKind, n protowire.Number) int
}

// protoFrame is one open message. key, value, aux and pending are the
// format's own per-message state (names, op types, a deferred reason).
type protoFrame struct {
	kind       protoKind
	at         int64 // absolute offset of the field (its tag) holding the message
	start, end int64 // absolute offsets of the message's bytes
	key, value string
	aux, aux2  string
	hasKey     bool
	pending    string
	pendingAt  int64
	count      int
}

// protoHooks are a format's callbacks.
type protoHooks interface {
	// varint sees a varint field of the innermost message.
	varint(top *protoFrame, num protowire.Number, v uint64) error
	// collected sees a string field the schema reads (s is at most its
	// limit; truncated when a prefix was read).
	collected(top *protoFrame, num protowire.Number, s string, truncated bool) error
	// ended sees a message once all its bytes were read; parent is the
	// message that contains it.
	ended(f, parent *protoFrame) error
}

// pbMaxDepth bounds message nesting.
const pbMaxDepth = 64

const binaryVarintMax = 10

const (
	pbStTag = iota
	pbStLen
	pbStVarint
	pbStSkip
	pbStCollect
)

func newProtoWalker(schema *protoSchema, hooks protoHooks, root protoKind, size int64) protoWalker {
	end := size
	if end < 0 {
		end = math.MaxInt64
	}
	return protoWalker{schema: schema, hooks: hooks, size: size, stack: []protoFrame{{kind: root, end: end}}}
}

func (w *protoWalker) fail(off int64, reason string, args ...any) error {
	w.err = newFinding(w.schema.format, off, reason, args...)
	return w.err
}

func (w *protoWalker) kindName(k protoKind) string { return w.schema.kindName[k] }

func (w *protoWalker) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	for len(p) > 0 {
		top := &w.stack[len(w.stack)-1]
		if w.off >= top.end {
			return 0, w.fail(w.off, "more bytes than the declared size %d", w.size)
		}
		switch w.st {
		case pbStTag, pbStLen, pbStVarint:
			if w.st == pbStTag && w.vn == 0 {
				w.at = w.off
			}
			if w.vn == 0 {
				// fast path: a whole varint inside this chunk and message
				if v, m := protowire.ConsumeVarint(p); m > 0 && int64(m) <= top.end-w.off {
					w.off += int64(m)
					p = p[m:]
					if err := w.varint(v); err != nil {
						return 0, err
					}
					continue
				}
			}
			w.vbuf[w.vn] = p[0]
			w.vn++
			w.off++
			p = p[1:]
			if w.vbuf[w.vn-1]&0x80 != 0 {
				if w.vn == binaryVarintMax {
					return 0, w.fail(w.off-int64(w.vn), "malformed varint (longer than 10 bytes)")
				}
				if w.off >= top.end {
					return 0, w.fail(w.off-int64(w.vn), "varint crosses the end of its %s message", w.kindName(top.kind))
				}
				continue
			}
			v, m := protowire.ConsumeVarint(w.vbuf[:w.vn])
			if m < 0 {
				return 0, w.fail(w.off-int64(w.vn), "malformed varint")
			}
			w.vn = 0
			if err := w.varint(v); err != nil {
				return 0, err
			}
		case pbStSkip:
			k := min(int64(len(p)), w.skip)
			w.skip -= k
			w.off += k
			p = p[k:]
			if w.skip == 0 {
				w.st = pbStTag
				if err := w.pop(); err != nil {
					return 0, err
				}
			}
		case pbStCollect:
			k := min(int64(len(p)), w.skip)
			if room := w.cmax - len(w.coll); room > 0 {
				w.coll = append(w.coll, p[:min(k, int64(room))]...)
			}
			w.skip -= k
			w.off += k
			p = p[k:]
			if w.skip == 0 {
				w.st = pbStTag
				if err := w.collected(); err != nil {
					return 0, err
				}
				if err := w.pop(); err != nil {
					return 0, err
				}
			}
		}
	}
	return n, nil
}

// varint handles a complete varint in the current state.
func (w *protoWalker) varint(v uint64) error {
	top := &w.stack[len(w.stack)-1]
	vstart := w.off
	switch w.st {
	case pbStTag:
		num, typ := protowire.DecodeTag(v)
		if num < protowire.MinValidNumber || num > protowire.MaxValidNumber || v>>3 > uint64(protowire.MaxValidNumber) {
			return w.fail(vstart, "invalid field number in %s message", w.kindName(top.kind))
		}
		w.num = num
		switch typ {
		case protowire.VarintType:
			w.st = pbStVarint
		case protowire.Fixed64Type:
			return w.skipN(8)
		case protowire.Fixed32Type:
			return w.skipN(4)
		case protowire.BytesType:
			w.st = pbStLen
		default:
			return w.fail(vstart, "field %d of a %s message has wire type %d (groups are not used by %s)", num, w.kindName(top.kind), typ, w.schema.name)
		}
	case pbStVarint:
		w.st = pbStTag
		if err := w.hooks.varint(top, w.num, v); err != nil {
			return err
		}
		return w.pop()
	case pbStLen:
		if v > uint64(top.end-w.off) {
			if top.end == w.size || top.end == math.MaxInt64 {
				return w.fail(vstart, "field %d of a %s message is %d bytes long but only %d remain (truncated or malformed)", w.num, w.kindName(top.kind), v, top.end-w.off)
			}
			return w.fail(vstart, "field %d of a %s message is %d bytes long, past the end of its enclosing message", w.num, w.kindName(top.kind), v)
		}
		l := int64(v)
		if child, ok := w.schema.children[top.kind][w.num]; ok {
			if len(w.stack) >= pbMaxDepth {
				return w.fail(vstart, "messages nested deeper than %d levels", pbMaxDepth)
			}
			w.stack = append(w.stack, protoFrame{kind: child, at: w.at, start: w.off, end: w.off + l})
			w.st = pbStTag
			return w.pop() // an empty message ends at once
		}
		if max := w.schema.collect(top.kind, w.num); max != 0 {
			if max > 0 && l > int64(max) {
				return w.fail(vstart, "%s string field %d is %d bytes long (limit %d)", w.kindName(top.kind), w.num, l, max)
			}
			if max < 0 {
				max = -max
			}
			w.cnum = w.num
			w.cmax = max
			w.clen = l
			w.coll = w.coll[:0]
			w.skip = l
			w.st = pbStCollect
			if l == 0 {
				w.st = pbStTag
				if err := w.collected(); err != nil {
					return err
				}
				return w.pop()
			}
			return nil
		}
		return w.skipN(l)
	}
	return nil
}

func (w *protoWalker) skipN(l int64) error {
	top := &w.stack[len(w.stack)-1]
	if l > top.end-w.off {
		return w.fail(w.off, "fixed-size field %d crosses the end of its %s message (truncated or malformed)", w.num, w.kindName(top.kind))
	}
	w.skip = l
	w.st = pbStSkip
	if l == 0 {
		w.st = pbStTag
		return w.pop()
	}
	return nil
}

// collected hands a complete string field to the hooks. The field ended
// at w.off; it was truncated when its length exceeded what was kept.
func (w *protoWalker) collected() error {
	top := &w.stack[len(w.stack)-1]
	return w.hooks.collected(top, w.cnum, string(w.coll), w.clen > int64(len(w.coll)))
}

// pop closes every message that ends at the current offset.
func (w *protoWalker) pop() error {
	for len(w.stack) > 1 {
		top := &w.stack[len(w.stack)-1]
		if w.off < top.end {
			return nil
		}
		if err := w.hooks.ended(top, &w.stack[len(w.stack)-2]); err != nil {
			return err
		}
		w.stack = w.stack[:len(w.stack)-1]
	}
	return nil
}

// walked is how many bytes were walked, short of a field whose tag,
// length or varint value is still being read: that field may yet open a
// message or be malformed.
func (w *protoWalker) walked() int64 {
	if w.st == pbStTag && w.vn == 0 || w.st == pbStSkip || w.st == pbStCollect {
		return w.off
	}
	return w.at
}

// closeCheck is the end-of-stream check every format shares: the declared
// size was delivered and the stream ended between two fields of the root.
func (w *protoWalker) closeCheck() error {
	if w.err != nil {
		return w.err
	}
	if w.size >= 0 && w.off != w.size {
		return w.fail(w.off, "truncated: %d of %d bytes", w.off, w.size)
	}
	if w.st != pbStTag || w.vn != 0 || len(w.stack) != 1 {
		top := w.stack[len(w.stack)-1]
		return w.fail(w.off, "truncated inside a %s message (field %d incomplete)", w.kindName(top.kind), w.num)
	}
	return nil
}
