package proxy

import (
	"context"
	"log/slog"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/proxy/config"

	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // storage.driver: inmemory (tests)
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"   // storage.driver: s3
)

// openDriverStore opens the content store on a distribution storage driver
// named in the configuration (s3, inmemory), for replicas sharing one store.
func openDriverStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*store.Store, error) {
	d, err := factory.Create(ctx, cfg.Storage.Driver, cfg.Storage.Parameters)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, d, store.Options{MaxBytes: int64(cfg.Storage.MaxSize), Log: log})
}
