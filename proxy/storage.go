package proxy

import (
	"context"
	"log/slog"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/proxy/config"

	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"      // storage.driver: inmemory (tests)
	s3driver "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws" // storage.driver: s3
)

// openDriverStore opens the content store on a distribution storage driver
// named in the configuration (s3, inmemory), for replicas sharing one store.
func openDriverStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*store.Store, error) {
	d, err := factory.Create(ctx, cfg.Storage.Driver, cfg.Storage.Parameters)
	if err != nil {
		return nil, err
	}
	opts := store.Options{MaxBytes: int64(cfg.Storage.MaxSize), Log: log}
	if sd, ok := d.(*s3driver.Driver); ok {
		// Blob copies are recorded as verified by the SHA-256 checksum
		// (and version, and ETag) their write returned, and read only
		// under it: a replica never takes another writer's bytes for the
		// ones it verified.
		if opts.Objects, err = store.S3Objects(sd); err != nil {
			return nil, err
		}
		logBinding(ctx, opts.Objects, log)
	}
	return store.Open(ctx, d, opts)
}

// logBinding says at start what binds reads of verified copies in an S3
// store: a write and removal of a small object shows what writes return.
func logBinding(ctx context.Context, objs store.Objects, log *slog.Logger) {
	id, err := objs.Probe(ctx)
	switch {
	case err != nil:
		log.Warn("store: cannot probe the S3 store for what binds reads of verified copies", "err", err)
	case id.Binds():
		log.Info("store: reads of verified copies are bound to what was written", "binding", id.Binding())
	default:
		log.Warn("store: the S3 store returns neither SHA-256 checksums nor versions: an ETag alone (an MD5) "+
			"does not bind a copy, so every copy is hashed when it is read; enable bucket versioning or use "+
			"an S3 server with flexible checksums to serve verified copies without hashing", "binding", id.Binding())
	}
}

// rescanInterval is how often a store on a driver, which other replicas
// may share, is brought up to date with it (see store.Rescan).
const rescanInterval = 5 * time.Minute

// rescanEvery rescans the store every interval until the returned stop.
func rescanEvery(st *store.Store, log *slog.Logger, interval time.Duration) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := st.Rescan(ctx); err != nil && ctx.Err() == nil {
					log.Warn("store: rescan failed", "err", err)
				}
			}
		}
	}()
	return func() error {
		cancel()
		<-done
		return nil
	}
}
