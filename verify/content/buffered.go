package content

// BufferedInspector holds a small file whole (bounded) and judges it at
// Close: JSON configs, chat templates, and, in the proxy, signature and
// attestation blobs. Nothing is released before Close (HeaderDone stays
// false until the check passed).
type BufferedInspector struct {
	format   string
	size     int64 // declared size, -1 when unknown
	max      int64
	tooLarge string // message with one %d for max
	check    func([]byte) error
	buf      []byte
	seen     int64
	done     bool
	err      error
}

// NewBufferedInspector buffers at most max bytes of a blob declared as size
// bytes (-1: unknown) and runs check on them at Close. tooLarge is the
// reason given past max, with one %d for the limit.
func NewBufferedInspector(format string, size, max int64, tooLarge string, check func([]byte) error) *BufferedInspector {
	return &BufferedInspector{format: format, size: size, max: max, tooLarge: tooLarge, check: check}
}

// HeaderDone is true once the whole file passed its check.
func (b *BufferedInspector) HeaderDone() bool { return b.done }

// Write buffers p, refusing more than the declared size or the limit.
func (b *BufferedInspector) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	b.seen += int64(len(p))
	if b.size >= 0 && b.seen > b.size {
		b.err = newFinding(b.format, b.size, "more bytes than the declared size %d", b.size)
		return 0, b.err
	}
	if b.seen > b.max || b.size > b.max {
		// A declared size past the limit is refused at the first
		// write, before anything is allocated for it.
		b.err = newFinding(b.format, b.max, b.tooLarge, b.max)
		return 0, b.err
	}
	if b.buf == nil && b.size >= 0 {
		// The declared size (at most max, checked above): the bytes
		// are held once, not through append's doublings (a 64 MiB file
		// would otherwise peak at about twice that while its buffer
		// grows).
		b.buf = make([]byte, 0, b.size)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Close checks the declared size and runs the check.
func (b *BufferedInspector) Close() error {
	if b.err != nil {
		return b.err
	}
	if b.size >= 0 && b.seen != b.size {
		b.err = newFinding(b.format, b.seen, "truncated: %d of %d bytes", b.seen, b.size)
		return b.err
	}
	b.err = b.check(b.buf)
	b.buf = nil
	b.done = b.err == nil
	return b.err
}
