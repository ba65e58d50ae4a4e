package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// maxReportFiles bounds how many reports one directory may hold.
const maxReportFiles = 10_000

// indexed is one report file of the directory.
type indexed struct {
	file    string // base name
	modTime time.Time
	rep     *report
}

// index maps a manifest digest to the reports that name it.
type index struct {
	dir      string
	byDigest map[string][]*indexed
	stamp    string // names, sizes and modification times of the files read
	files    int    // reports read
	bad      int    // files skipped (not a report, too large, unreadable)
}

// loadIndex reads every *.json file of dir. A file that is not a Trivy or
// Grype report is skipped with a warning (the digests it names stay
// unanswered: pending, never clean); a directory that cannot be read is an
// error.
//
// With only set (exec mode: one digest per run), a file whose bytes do not
// contain only's hex is not parsed: it cannot name that digest.
func loadIndex(dir string, log *slog.Logger, only string) (*index, error) {
	entries, stamp, err := listReports(dir)
	if err != nil {
		return nil, err
	}
	ix := &index{dir: dir, byDigest: map[string][]*indexed{}, stamp: stamp}
	_, hex, _ := strings.Cut(only, ":")
	for _, e := range entries {
		rep, mod, err := readReport(filepath.Join(dir, e), hex)
		if errors.Is(err, errNotNamed) {
			continue
		}
		if err != nil {
			ix.bad++
			log.Warn("skipping report", "file", e, "err", err)
			continue
		}
		ix.files++
		it := &indexed{file: e, modTime: mod, rep: rep}
		for _, d := range rep.Digests {
			ix.byDigest[d] = append(ix.byDigest[d], it)
		}
	}
	return ix, nil
}

// listReports returns the *.json files of dir in name order and a stamp
// that changes when any of them is added, removed, resized or rewritten.
func listReports(dir string) ([]string, string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", fmt.Errorf("reading the reports directory: %w", err)
	}
	var names []string
	var stamp strings.Builder
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".json") || de.IsDir() {
			continue
		}
		if len(names) >= maxReportFiles {
			return nil, "", fmt.Errorf("reports directory %s holds more than %d .json files", dir, maxReportFiles)
		}
		names = append(names, de.Name())
		if fi, err := de.Info(); err == nil {
			fmt.Fprintf(&stamp, "%s\x00%d\x00%d\n", de.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return names, stamp.String(), nil
}

// errNotNamed: the report does not contain the digest looked for.
var errNotNamed = errors.New("digest not named")

// readReport reads and parses one report; with hex set, a file that does
// not contain it is not parsed (errNotNamed).
func readReport(path, hex string) (*report, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxReportBytes+1))
	if err != nil {
		return nil, time.Time{}, err
	}
	if hex != "" && len(data) <= maxReportBytes && !bytes.Contains(data, []byte(hex)) {
		return nil, time.Time{}, errNotNamed
	}
	rep, err := parseReport(data)
	return rep, fi.ModTime(), err
}

// lookup returns the report used for digest d: of several reports naming
// it, the most recent scan (the report's own time, else the file's
// modification time; ties broken by file name, last wins). nil when no
// report names d.
func (ix *index) lookup(d string) *indexed {
	its := ix.byDigest[d]
	if len(its) == 0 {
		return nil
	}
	best := its[0]
	for _, it := range its[1:] {
		if bt, t := best.when(), it.when(); t.After(bt) || (t.Equal(bt) && it.file > best.file) {
			best = it
		}
	}
	return best
}

func (it *indexed) when() time.Time {
	if !it.rep.ScannedAt.IsZero() {
		return it.rep.ScannedAt
	}
	return it.modTime
}

// liveIndex is the server's index: re-read when the directory's stamp
// changes (checked on each request: one ReadDir and a stat per file) or on
// SIGHUP.
type liveIndex struct {
	dir string
	log *slog.Logger
	mu  sync.Mutex
	cur *index
}

func (l *liveIndex) get(force bool) (*index, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil && !force {
		if _, stamp, err := listReports(l.dir); err == nil && stamp == l.cur.stamp {
			return l.cur, nil
		}
	}
	ix, err := loadIndex(l.dir, l.log, "")
	if err != nil {
		return nil, err
	}
	if l.cur == nil || ix.stamp != l.cur.stamp {
		l.log.Info("reports loaded", "dir", l.dir, "reports", ix.files, "skipped", ix.bad, "digests", len(ix.byDigest))
	}
	l.cur = ix
	return ix, nil
}
