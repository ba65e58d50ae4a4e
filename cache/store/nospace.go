package store

import (
	"errors"
	"syscall"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// IsNoSpace reports whether err says the disk (or the quota) is full:
// ENOSPC or EDQUOT, also inside the storage driver's error type, which
// does not unwrap.
func IsNoSpace(err error) bool {
	for err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return true
		}
		var de storagedriver.Error
		var dp *storagedriver.Error
		switch {
		case errors.As(err, &de):
			err = de.Detail
		case errors.As(err, &dp) && dp != nil:
			err = dp.Detail
		default:
			return false
		}
	}
	return false
}
