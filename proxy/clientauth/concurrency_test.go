package clientauth_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// concurrentLogins sends the requests at once (all goroutines released
// together) and returns the status of each.
func (e *env) concurrentLogins(reqs []loginReq) []int {
	codes := make([]int, len(reqs))
	var wg, ready sync.WaitGroup
	start := make(chan struct{})
	for i, r := range reqs {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-start
			codes[i] = e.serve("GET", r.path, r.ip, basicHeader(r.user, r.pass)).Code
		}()
	}
	ready.Wait()
	close(start)
	wg.Wait()
	return codes
}

// loginTestCost is the bcrypt cost of TestConcurrentLogins' users.
const loginTestCost = 8

type loginReq struct{ path, ip, user, pass string }

const (
	tokenPath    = "/token?service=pullgate&scope=repository:upstream.local/app/img:pull"
	manifestPath = "/v2/upstream.local/app/img/manifests/v1"
)

// withCost rewrites the environment's htpasswd at a bcrypt cost high
// enough that concurrent logins really overlap (a few milliseconds a
// check; operators' files, at cost 10 and more, take tens).
func (e *env) withCost(t *testing.T, cost int) {
	t.Helper()
	var b strings.Builder
	for u, p := range passwords {
		h, err := bcrypt.GenerateFromPassword([]byte(p), cost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	tmp := filepath.Join(e.dir, "htpasswd.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, "htpasswd")); err != nil {
		t.Fatal(err)
	}
}

func countCodes(codes []int) map[int]int {
	m := map[int]int{}
	for _, c := range codes {
		m[c]++
	}
	return m
}

// Valid logins are never refused for rate reasons, however many arrive at
// once from one address (pods of a node, clients behind NAT); failed
// logins are still limited to the burst, from one address and against one
// user, also when they arrive at once and mixed with valid ones.
func TestConcurrentLogins(t *testing.T) {
	// A fresh environment per case: nothing in the limiter, and no login
	// remembered as verified.
	fresh := func(t *testing.T) (*env, *fakeClock) {
		clock := &fakeClock{t: time.Now()}
		e := newEnv(t, envOptions{now: clock.now})
		e.withCost(t, loginTestCost)
		t.Cleanup(func() {
			if strings.Contains(e.logs.String(), "login wait timed out") {
				t.Error("a login waited for room longer than the limit")
			}
		})
		return e, clock
	}

	t.Run("valid logins from one address", func(t *testing.T) {
		e, _ := fresh(t)
		var reqs []loginReq
		for i := range 40 {
			user := []string{"alice", "bob"}[i%2]
			path := []string{tokenPath, manifestPath}[i/2%2]
			reqs = append(reqs, loginReq{path, "10.7.0.1", user, passwords[user]})
		}
		codes := e.concurrentLogins(reqs)
		if n := countCodes(codes); n[200] != len(reqs) {
			t.Fatalf("statuses %v, want %d×200", n, len(reqs))
		}
		// They cost the address nothing: five failures still fit.
		for i := range 5 {
			if rr := e.serve("GET", manifestPath, "10.7.0.1", basicHeader("alice", wrongPassword)); rr.Code != 401 {
				t.Fatalf("failure %d: %d", i, rr.Code)
			}
		}
		if rr := e.serve("GET", manifestPath, "10.7.0.1", basicHeader("alice", passwords["alice"])); rr.Code != 429 {
			t.Fatalf("after 5 failures: %d, want 429", rr.Code)
		}
	})

	t.Run("wrong passwords from one address", func(t *testing.T) {
		e, clock := fresh(t)
		var reqs []loginReq
		for i := range 40 {
			user := fmt.Sprintf("guess%d", i)
			if i%4 == 0 {
				user = "dave" // known user, wrong password
			}
			reqs = append(reqs, loginReq{[]string{tokenPath, manifestPath}[i%2], "10.7.1.1", user, wrongPassword})
		}
		if n := countCodes(e.concurrentLogins(reqs)); n[401] != 5 || n[429] != 35 {
			t.Fatalf("statuses %v, want 5×401 (the burst) and 35×429", n)
		}
		clock.advance(6 * time.Second) // one token at 10 a minute
		if rr := e.serve("GET", manifestPath, "10.7.1.1", basicHeader("guess-late", wrongPassword)); rr.Code != 401 {
			t.Fatalf("after refill: %d", rr.Code)
		}
		if rr := e.serve("GET", manifestPath, "10.7.1.1", basicHeader("guess-late", wrongPassword)); rr.Code != 429 {
			t.Fatalf("refilled token spent: %d", rr.Code)
		}
	})

	t.Run("wrong passwords against one user from many addresses", func(t *testing.T) {
		e, _ := fresh(t)
		var reqs []loginReq
		for i := range 40 {
			reqs = append(reqs, loginReq{[]string{tokenPath, manifestPath}[i%2], fmt.Sprintf("10.7.2.%d", i+1), "carol", wrongPassword})
		}
		if n := countCodes(e.concurrentLogins(reqs)); n[401] != 5 || n[429] != 35 {
			t.Fatalf("statuses %v, want 5×401 (the burst) and 35×429", n)
		}
		if rr := e.serve("GET", manifestPath, "10.7.2.100", basicHeader("carol", passwords["carol"])); rr.Code != 429 {
			t.Fatalf("carol after 5 failures: %d, want 429", rr.Code)
		}
	})

	t.Run("valid logins with fewer failures than the burst", func(t *testing.T) {
		e, _ := fresh(t)
		var reqs []loginReq
		for i := range 33 {
			if i%11 == 5 {
				reqs = append(reqs, loginReq{manifestPath, "10.7.3.1", fmt.Sprintf("guess%d", i), wrongPassword})
				continue
			}
			reqs = append(reqs, loginReq{[]string{tokenPath, manifestPath}[i%2], "10.7.3.1", "alice", passwords["alice"]})
		}
		codes := e.concurrentLogins(reqs)
		for i, c := range codes {
			if want := map[bool]int{true: 200, false: 401}[reqs[i].user == "alice"]; c != want {
				t.Fatalf("request %d (%s): %d, want %d (all: %v)", i, reqs[i].user, c, want, countCodes(codes))
			}
		}
	})

	t.Run("valid logins among more failures than the burst", func(t *testing.T) {
		e, _ := fresh(t)
		var reqs []loginReq
		for i := range 40 {
			if i%2 == 0 {
				reqs = append(reqs, loginReq{manifestPath, "10.7.4.1", fmt.Sprintf("guess%d", i), wrongPassword})
			} else {
				reqs = append(reqs, loginReq{tokenPath, "10.7.4.1", "bob", passwords["bob"]})
			}
		}
		codes := e.concurrentLogins(reqs)
		n := countCodes(codes)
		// Exactly the burst of guesses was checked; the address is
		// throttled after that, for valid logins too (as documented).
		if n[401] != 5 || n[200]+n[401]+n[429] != len(reqs) {
			t.Fatalf("statuses %v, want 5×401 and the rest 200 or 429", n)
		}
		for i, c := range codes {
			if reqs[i].user == "bob" && c == 401 {
				t.Fatalf("valid login %d answered 401", i)
			}
		}
	})
}
