// Stored copies, for the engine's inspection and the proxy's sending alike:
// the hashing itself is cache/stored's, on cache/verified's reader; here
// its outcome is recorded (a copy verified, a corrupt one removed).
package engine

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
	"github.com/pullgate/pullgate/cache/stored"
	"github.com/pullgate/pullgate/cache/verified"
)

var errStoredCorrupt = errors.New("stored blob does not match its digest")

// MarkVerified records a copy that hashed to its digest.
func (s *Engine) MarkVerified(c *stored.Copy) {
	s.metrics.storeVerify.WithLabelValues("ok").Inc()
	c.Record()
}

// VerifyStored hashes a whole stored copy and returns what to serve: the
// bytes hashed themselves for a small blob, the copy (unchanged since, see
// stored.Copy.Unchanged) otherwise. A corrupt copy is removed; errors mean
// nothing may be served from the store.
func (s *Engine) VerifyStored(ctx context.Context, c *stored.Copy) (io.ReadSeeker, error) {
	rs, err := c.Verify(Holdback)
	if err != nil {
		return nil, s.StoredError(ctx, c.Digest(), err)
	}
	s.MarkVerified(c)
	return rs, nil
}

// StoredError reports a failed read of a stored copy (a *stored.ReadError)
// or removes a corrupt one (a *verified.MismatchError).
func (s *Engine) StoredError(ctx context.Context, dgst digest.Digest, err error) error {
	var mm *verified.MismatchError
	if errors.As(err, &mm) {
		s.StoreCorrupt(ctx, dgst, "hashes to "+mm.Got.String())
		return errStoredCorrupt
	}
	s.StoreReadError(ctx, dgst, err)
	return err
}

// storeCorrupt removes a stored copy that does not match its digest: it is
// never served, and the next request fetches the blob again.
func (s *Engine) StoreCorrupt(ctx context.Context, dgst digest.Digest, detail string) {
	s.metrics.storeVerify.WithLabelValues("corrupt").Inc()
	s.log.Error("store: content does not match its digest; removing it", "digest", dgst, "detail", detail)
	if err := s.store.Delete(context.WithoutCancel(ctx), dgst); err != nil {
		s.log.Warn("store: removing corrupt content failed", "digest", dgst, "err", err)
	}
}

func (s *Engine) StoreReadError(ctx context.Context, dgst digest.Digest, err error) {
	if ctx.Err() != nil {
		return
	}
	s.metrics.storeVerify.WithLabelValues("error").Inc()
	s.log.Warn("store: reading blob failed", "digest", dgst, "err", err)
}
