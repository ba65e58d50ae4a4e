package content

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

// Finding is a precise reason why content was refused.
type Finding struct {
	Format string // "safetensors", "gguf", "pickle", "zip", "mediatype", ...
	Offset int64  // byte offset where the problem was detected, -1 if none
	Reason string // what a person can act on
}

func (f *Finding) Error() string { return f.Format + ": " + f.Reason }
