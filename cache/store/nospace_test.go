package store

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

func TestIsNoSpace(t *testing.T) {
	enospc := &fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("no"), false},
		{enospc, true},
		{fmt.Errorf("spool: %w", enospc), true},
		{&fs.PathError{Op: "write", Path: "/x", Err: syscall.EDQUOT}, true},
		{storagedriver.Error{DriverName: "filesystem", Detail: enospc}, true},
		{fmt.Errorf("put: %w", &storagedriver.Error{DriverName: "filesystem", Detail: errors.Join(enospc, errors.New("cleanup"))}), true},
		{storagedriver.Error{DriverName: "filesystem", Detail: syscall.EACCES}, false},
	} {
		if got := IsNoSpace(c.err); got != c.want {
			t.Errorf("IsNoSpace(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
