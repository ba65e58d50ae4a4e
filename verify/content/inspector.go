package content

import "math"

// Inspector validates one blob's bytes as they stream, in order, without
// buffering the whole blob. The proxy feeds it the same bytes it hashes.
//
// Contract:
//   - Write is called with consecutive chunks of the blob. It returns a
//     *Finding (as error) as soon as the bytes seen so far violate the rules;
//     after an error, no further calls are made.
//   - HeaderDone reports whether the format's header (everything that decides
//     whether the file is acceptable before its bulk data) has been fully
//     validated. The proxy withholds bytes from clients until HeaderDone is
//     true, so that a bad header is answered with 403 before any byte is sent.
//   - Close is called at the end of the stream (after exactly the declared size
//     was written) and runs the final checks (size consistency, trailing data).
type Inspector interface {
	Write(p []byte) (int, error)
	HeaderDone() bool
	Close() error
}

// Releasable is an Inspector that can release a blob's first bytes before
// HeaderDone: every byte before offset Releasable() was inspected and lies
// before anything not yet judged, so it may be served (the proxy releases
// it, the held-back tail and the digest still guard the end). It never
// decreases and never exceeds the bytes written. Wrappers pass it through
// (ReleasableOf); one that does not releases nothing before HeaderDone.
type Releasable interface {
	Releasable() int64
}

// ReleasableOf is how many of in's first bytes may be released: its
// Releasable when it has one, everything once HeaderDone, else 0.
func ReleasableOf(in Inspector) int64 {
	if in.HeaderDone() {
		return math.MaxInt64
	}
	if r, ok := in.(Releasable); ok {
		return r.Releasable()
	}
	return 0
}

// Finding is a precise reason why content was refused.
type Finding struct {
	Format string // "safetensors", "gguf", "pickle", "zip", "mediatype", ...
	Offset int64  // byte offset where the problem was detected, -1 if none
	Reason string // what a person can act on
}

func (f *Finding) Error() string { return f.Format + ": " + f.Reason }
