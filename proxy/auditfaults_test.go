//go:build linux

package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
)

// auditEvents reads the audit file: the references of its events in
// order; every line must be whole JSON.
func auditEvents(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var ev struct{ Repository, Reference, Decision string }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line is not whole JSON: %v: %q", err, sc.Text())
		}
		refs = append(refs, ev.Repository+":"+ev.Reference+":"+ev.Decision)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("audit file ends mid-line: %q", b[max(0, len(b)-80):])
	}
	return refs
}

// The audit log's disk fills (a 64 KiB tmpfs filled up; where mounting is
// not possible, the path points at /dev/full, whose writes fail with
// ENOSPC): decisions are still enforced, the failures are counted, and
// once space is freed the events decided meanwhile are written, whole
// and in order, with the next one.
func TestAuditDiskFull(t *testing.T) {
	up, err := upstream.Start(upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	e := &env{up: up, dir: t.TempDir()}
	adir := filepath.Join(e.dir, "auditfs")
	if err := os.Mkdir(adir, 0o750); err != nil {
		t.Fatal(err)
	}
	e.auditPath = filepath.Join(adir, "audit.jsonl")
	var fill, free func()
	err = errors.New("PULLGATE_TEST_NO_MOUNT is set")
	if os.Getenv("PULLGATE_TEST_NO_MOUNT") == "" {
		err = syscall.Mount("tmpfs", adir, "tmpfs", 0, "size=64k")
	}
	if err == nil {
		t.Cleanup(func() { _ = syscall.Unmount(adir, syscall.MNT_DETACH) })
		filler := filepath.Join(adir, "filler")
		fill = func() {
			f, err := os.Create(filler)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for {
				if _, err := f.Write(make([]byte, 512)); err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Fatal(err)
					}
					return
				}
			}
		}
		free = func() {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		t.Logf("mount -t tmpfs: %v: the audit path points at /dev/full instead", err)
		fill = func() {
			if err := os.Remove(e.auditPath); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/full", e.auditPath); err != nil {
				t.Fatal(err)
			}
		}
		free = func() {
			if err := os.Remove(e.auditPath); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.open(t)
	base := e.proxy.URL + "/v2/upstream.local/"
	img, _ := oneLayerImage(t, 1024)
	push(t, up.Host, "app/ok:1", img)
	push(t, up.Host, "blocked/no:1", img)
	if resp, _ := get(t, base+"app/ok/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("allowed: %d", resp.StatusCode)
	}

	fill()
	// Decide until audit writes fail (the file's last page may still
	// take a few lines), then three more.
	var during []string
	for i := 1; len(during) < 200; i++ {
		tag := strconv.Itoa(i)
		if resp, _ := get(t, base+"blocked/no/manifests/"+tag); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("denied image with the audit disk full: %d", resp.StatusCode)
		}
		during = append(during, "upstream.local/blocked/no:"+tag+":deny")
		if counter(t, e.reg, "pullgate_audit_write_errors_total", nil) > 0 && i > 3 {
			break
		}
	}
	if resp, _ := get(t, base+"app/ok/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("allowed image with the audit disk full: %d", resp.StatusCode)
	}
	failed := counter(t, e.reg, "pullgate_audit_write_errors_total", nil)
	if failed < 2 {
		t.Fatalf("pullgate_audit_write_errors_total = %v with the disk full, want >= 2", failed)
	}

	free()
	if resp, _ := get(t, base+"blocked/no/manifests/final"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied image after: %d", resp.StatusCode)
	}
	if n := counter(t, e.reg, "pullgate_audit_write_errors_total", nil); n != failed {
		t.Errorf("audit writes still fail once space is freed: %v -> %v", failed, n)
	}
	refs := auditEvents(t, e.auditPath)
	t.Logf("%d audit events once space is freed, %d decided while the disk was full", len(refs), len(during))
	want := append(during, "upstream.local/app/ok:1:allow", "upstream.local/blocked/no:final:deny")
	if len(refs) < len(want) || !slices.Equal(refs[len(refs)-len(want):], want) {
		t.Fatalf("audit events after the disk was full:\n got %v\nwant ... %v", refs, want)
	}
}

// The audit file removed while serving (an operator's rm, a log shipper):
// the next decision creates it again and is written there.
func TestAuditFileRemoved(t *testing.T) {
	e := start(t, nil)
	path := filepath.Join(e.dir, "audit.jsonl")
	img, _ := oneLayerImage(t, 1024)
	push(t, e.up.Host, "blocked/no:1", img)
	base := e.proxy.URL + "/v2/upstream.local/blocked/no/manifests/"
	get(t, base+"1")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"2", "3"} {
		if resp, _ := get(t, base+tag); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("denied: %d", resp.StatusCode)
		}
	}
	refs := auditEvents(t, path)
	want := []string{"upstream.local/blocked/no:2:deny", "upstream.local/blocked/no:3:deny"}
	if !slices.Equal(refs, want) {
		t.Fatalf("audit file after its removal: %v, want %v", refs, want)
	}
}
