package clientauth

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"
)

var errBadPassword = errors.New("wrong password")

// maxUserName bounds user names in Basic credentials and htpasswd files.
const maxUserName = 256

// verifiedTTL is how long a successful bcrypt check is remembered, so a
// client sending Basic credentials on every request of a pull costs one
// bcrypt comparison, not one per layer.
const verifiedTTL = 2 * time.Minute

// htpasswd is an htpasswd file of bcrypt entries, reloaded when it changes.
// A file that cannot be loaded refuses every login until it is fixed (fail
// closed: a broken edit never keeps a removed user working).
type htpasswd struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	stamp fileStamp
	users map[string][]byte
	err   error
	gen   uint64

	// verified remembers HMAC(secret, user, password) of recent successful
	// checks against the generation of the file they were checked with.
	verified *lru.Cache[string, verifiedEntry]
	secret   [32]byte

	// dummy is a hash at the file's highest cost, compared against for
	// unknown users so that timing does not reveal which users exist.
	dummy     []byte
	dummyCost int
	// pads holds a hash at every cost from the file's lowest to below
	// dummyCost: a wrong password for a user whose hash is cheaper (cost c)
	// is also compared at costs c..dummyCost-1, 2^c+...+2^(dummyCost-1) =
	// 2^dummyCost - 2^c more rounds, so the check costs as much as an
	// unknown user's and a cheap entry does not answer faster.
	pads map[int][]byte
}

type verifiedEntry struct {
	mac     [32]byte
	gen     uint64
	expires time.Time
}

func openHtpasswd(path string, log *slog.Logger) (*htpasswd, error) {
	h := &htpasswd{path: path, log: log}
	h.verified, _ = lru.New[string, verifiedEntry](4096)
	if _, err := rand.Read(h.secret[:]); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refreshLocked()
	if h.err != nil {
		return nil, h.err
	}
	return h, nil
}

// refreshLocked reloads the file when its stamp changed.
func (h *htpasswd) refreshLocked() {
	st, err := stampOf(h.path)
	if err == nil && h.users != nil && st.same(h.stamp) {
		return
	}
	if err != nil {
		if h.err == nil {
			h.log.Error("htpasswd unreadable: refusing Basic logins until it is fixed", "file", h.path, "error", err)
		}
		h.users, h.err, h.stamp = nil, fmt.Errorf("auth.htpasswd: %w", err), fileStamp{}
		return
	}
	b, err := os.ReadFile(h.path)
	if err == nil {
		var users map[string][]byte
		users, err = parseHtpasswd(b)
		if err == nil {
			h.setDummyLocked(users)
			h.users, h.err, h.stamp = users, nil, st
			h.gen++
			h.log.Info("htpasswd loaded", "file", h.path, "users", len(users))
			return
		}
	}
	h.log.Error("htpasswd invalid: refusing Basic logins until it is fixed", "file", h.path, "error", err)
	h.users, h.err, h.stamp = nil, fmt.Errorf("auth.htpasswd %s: %w", h.path, err), st
}

// parseHtpasswd reads "user:bcrypt-hash" lines; blank lines and lines
// starting with '#' are ignored. Errors name the line and the user, never
// the hash.
func parseHtpasswd(b []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: expected user:hash", n)
		}
		if err := validUser(user); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("line %d: user %q appears twice", n, user)
		}
		if !(strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")) {
			return nil, fmt.Errorf("line %d: user %q: only bcrypt hashes are accepted (htpasswd -B)", n, user)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: malformed bcrypt hash", n, user)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %v", n+1, err)
	}
	return users, nil
}

func validUser(u string) error {
	if u == "" {
		return errors.New("empty user name")
	}
	if len(u) > maxUserName {
		return fmt.Errorf("user name longer than %d bytes", maxUserName)
	}
	if !utf8.ValidString(u) {
		return errors.New("user name is not UTF-8")
	}
	for _, r := range u {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == ':' {
			return errors.New("user names contain no spaces, control characters or ':'")
		}
	}
	return nil
}

// known reports whether user is in the file (for log attribution only).
func (h *htpasswd) known(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refreshLocked()
	_, ok := h.users[user]
	return ok
}

// verify checks a password: nil, errNoUser, errBadPassword or the load error.
func (h *htpasswd) verify(user, pass string) error {
	h.mu.Lock()
	h.refreshLocked()
	hash, ok := h.users[user]
	gen, loadErr, dummy, dummyCost, pads := h.gen, h.err, h.dummy, h.dummyCost, h.pads
	h.mu.Unlock()
	if loadErr != nil {
		return errors.New("htpasswd file unusable")
	}
	if !ok {
		// Same cost as a real check: timing does not tell which users exist.
		_ = bcrypt.CompareHashAndPassword(dummy, []byte(pass))
		return errNoUser
	}
	mac := h.mac(user, pass)
	if e, ok := h.verified.Get(user); ok && e.gen == gen && time.Now().Before(e.expires) &&
		subtle.ConstantTimeCompare(e.mac[:], mac[:]) == 1 {
		return nil
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(pass)); err != nil {
		// As costly as the unknown user's check (see pads).
		if c, cerr := bcrypt.Cost(hash); cerr == nil {
			for k := c; k < dummyCost; k++ {
				if p := pads[k]; p != nil {
					_ = bcrypt.CompareHashAndPassword(p, []byte(pass))
				}
			}
		}
		return errBadPassword
	}
	h.verified.Add(user, verifiedEntry{mac: mac, gen: gen, expires: time.Now().Add(verifiedTTL)})
	return nil
}

func (h *htpasswd) mac(user, pass string) [32]byte {
	m := hmac.New(sha256.New, h.secret[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

func (h *htpasswd) setDummyLocked(users map[string][]byte) {
	cost, low := bcrypt.MinCost, bcrypt.MaxCost
	for _, hash := range users {
		if c, err := bcrypt.Cost(hash); err == nil {
			cost, low = max(cost, c), min(low, c)
		}
	}
	if h.dummy == nil || cost != h.dummyCost {
		d, err := randomHash(cost)
		if err != nil {
			return // keeps the previous ones
		}
		h.dummy, h.dummyCost = d, cost
	}
	pads := map[int][]byte{}
	for c := low; c < h.dummyCost; c++ {
		if p := h.pads[c]; p != nil {
			pads[c] = p
		} else if p, err := randomHash(c); err == nil {
			pads[c] = p
		}
	}
	h.pads = pads
}

// randomHash is a bcrypt hash of a random password at cost.
func randomHash(cost int) ([]byte, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(b[:])), cost)
}

// decodeBasic decodes Basic credentials. Errors never include them.
func decodeBasic(cred string) (user, pass string, err error) {
	if cred == "" {
		return "", "", errors.New("malformed Basic credentials: empty")
	}
	b, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "", "", errors.New("malformed Basic credentials: not base64")
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("malformed Basic credentials: no ':' between user name and password")
	}
	if err := checkCredentials(user, pass); err != nil {
		return "", "", errors.New("malformed Basic credentials: " + err.Error())
	}
	return user, pass, nil
}

// checkCredentials refuses user names and passwords no htpasswd entry can
// match. Errors never include them.
func checkCredentials(user, pass string) error {
	if err := validUser(user); err != nil {
		return errors.New("invalid user name")
	}
	if len(pass) > 72 {
		// bcrypt only reads 72 bytes; refuse rather than silently truncate.
		return errors.New("password longer than 72 bytes")
	}
	return nil
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	fi os.FileInfo
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi}, nil
}

func (s fileStamp) same(o fileStamp) bool {
	if s.fi == nil || o.fi == nil {
		return false
	}
	return os.SameFile(s.fi, o.fi) && s.fi.ModTime().Equal(o.fi.ModTime()) && s.fi.Size() == o.fi.Size()
}
