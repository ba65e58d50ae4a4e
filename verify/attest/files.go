package attest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// fileSet hashes files under a root directory. Every recorded path is
// relative to the root and must stay inside it.
type fileSet struct {
	root  string
	cache map[string]File
}

func newFileSet(root string) *fileSet { return &fileSet{root: root, cache: map[string]File{}} }

// cleanEntry turns a configured path into a recorded one.
func cleanEntry(field, p string, dirOK bool) (string, error) {
	if strings.TrimSpace(p) == "" {
		return "", fmt.Errorf("%s: empty path", field)
	}
	if filepath.IsAbs(p) || strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%s: path %q must be relative to the config's root", field, p)
	}
	c := path.Clean(filepath.ToSlash(p))
	if c == "." && dirOK {
		return c, nil
	}
	if err := CheckPath(c); err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	return c, nil
}

// expand hashes the files named by entries; a directory entry contributes
// every regular file under it (following symlinks to files, skipping .git).
// The result is sorted by path and free of duplicates.
func (s *fileSet) expand(field string, entries []string) ([]File, error) {
	seen := map[string]bool{}
	var out []File
	for _, e := range entries {
		rel, err := cleanEntry(field, e, true)
		if err != nil {
			return nil, err
		}
		paths, err := s.list(field, rel)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			if seen[p] {
				return nil, fmt.Errorf("%s: %s is listed more than once", field, p)
			}
			seen[p] = true
			f, err := s.hash(field, p)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
	}
	sortFiles(out)
	return out, nil
}

func (s *fileSet) one(field, entry string) (*File, error) {
	if entry == "" {
		return nil, nil
	}
	rel, err := cleanEntry(field, entry, false)
	if err != nil {
		return nil, err
	}
	f, err := s.hash(field, rel)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

func (s *fileSet) list(field, rel string) ([]string, error) {
	full := filepath.Join(s.root, filepath.FromSlash(rel))
	st, err := os.Stat(full)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if st.Mode().IsRegular() {
		return []string{rel}, nil
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: %s is not a regular file or directory", field, rel)
	}
	var out []string
	err = filepath.WalkDir(full, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return nil // sockets, devices, symlinks to directories
		}
		r, err := filepath.Rel(s.root, p)
		if err == nil && !filepath.IsLocal(r) {
			err = fmt.Errorf("%s escapes the root", p)
		}
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(r))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: directory %s holds no files", field, rel)
	}
	sort.Strings(out)
	return out, nil
}

func (s *fileSet) hash(field, rel string) (File, error) {
	if f, ok := s.cache[rel]; ok {
		return f, nil
	}
	full := filepath.Join(s.root, filepath.FromSlash(rel))
	fh, err := os.Open(full)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", field, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", field, err)
	}
	if !st.Mode().IsRegular() {
		return File{}, fmt.Errorf("%s: %s is not a regular file", field, rel)
	}
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return File{}, fmt.Errorf("%s: reading %s: %w", field, rel, err)
	}
	f := File{Path: rel, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	s.cache[rel] = f
	return f, nil
}

func (s *fileSet) readSmall(field, rel string, limit int64) ([]byte, error) {
	full := filepath.Join(s.root, filepath.FromSlash(rel))
	return readLimited(field, full, limit)
}

func readLimited(field, full string, limit int64) ([]byte, error) {
	fh, err := os.Open(full)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", field, full, limit)
	}
	return b, nil
}

// maxSafetensorsHeader bounds the JSON header read from a .safetensors file.
const maxSafetensorsHeader = 64 << 20

// SafetensorsTensors reads the tensor names, dtypes and shapes from the header
// of a safetensors file (8-byte little-endian header length, then a JSON
// object). The result is sorted by name; "__metadata__" is skipped.
func SafetensorsTensors(r io.Reader) ([]Tensor, error) {
	var lenb [8]byte
	if _, err := io.ReadFull(r, lenb[:]); err != nil {
		return nil, fmt.Errorf("safetensors: reading header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenb[:])
	if n < 2 || n > maxSafetensorsHeader {
		return nil, fmt.Errorf("safetensors: header length %d out of range", n)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("safetensors: reading header: %w", err)
	}
	if err := strictjson.Check(hdr); err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &m); err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	var out []Tensor
	for name, raw := range m {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			DType       string  `json:"dtype"`
			Shape       []int64 `json:"shape"`
			DataOffsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		if t.DType == "" || t.Shape == nil {
			return nil, fmt.Errorf("safetensors: tensor %q lacks dtype or shape", name)
		}
		out = append(out, Tensor{Name: name, DType: t.DType, Shape: t.Shape})
	}
	if len(out) == 0 {
		return nil, errors.New("safetensors: header declares no tensors")
	}
	sortTensors(out)
	if err := validateTensors("safetensors", out); err != nil {
		return nil, err
	}
	return out, nil
}
