package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The relay is the least work any verifying proxy must do: it forwards a
// blob from the upstream to the client and (with -hash) hashes every byte
// on the way, with no store, no policy, no held-back tail and no second
// copy. Whatever ratio to direct it reaches on this machine, no caching,
// verifying proxy can beat; run side by side, it tells how much of a gap
// is pullgate's and how much is the machine's.

// relayMain runs the relay (pullbench relay -listen A -upstream U [-hash]).
func relayMain(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	upstream := fs.String("upstream", "", "upstream base URL")
	hashing := fs.Bool("hash", false, "hash every byte forwarded (SHA-256)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	return http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := client.Get(*upstream + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if cl := resp.ContentLength; cl >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(cl, 10))
		}
		w.WriteHeader(resp.StatusCode)
		h := sha256.New()
		buf := make([]byte, 1<<20)
		for {
			n, rerr := io.ReadFull(resp.Body, buf)
			if n > 0 {
				if *hashing {
					h.Write(buf[:n])
				}
				if _, err := w.Write(buf[:n]); err != nil {
					return
				}
			}
			if rerr != nil {
				return
			}
		}
	}))
}

// startRelay starts the relay as a process of its own (its CPU is booked
// like a proxy's).
func startRelay(upstreamURL string, hashing bool) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port := freePort()
	args := []string{"relay", "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-upstream", upstreamURL}
	if hashing {
		args = append(args, "-hash")
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	return p, waitHTTP(p.url + "/v2/")
}

// cpuSets splits this machine's CPUs in two halves: the first for the
// client and the upstream, the second for the proxy. ok is false on a
// single CPU.
func cpuSets() (shared, own unix.CPUSet, ok bool) {
	n := runtime.NumCPU()
	if n < 2 {
		return shared, own, false
	}
	for i := 0; i < n; i++ {
		if i < n/2 {
			shared.Set(i)
		} else {
			own.Set(i)
		}
	}
	return shared, own, true
}

// pin sets the CPU affinity of every thread of a process (threads it
// creates later inherit it from their creator).
func pin(pid int, set unix.CPUSet) error {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(filepath.Base(t))
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			// a thread that ended in the meantime is not an error
			if _, serr := os.Stat(t); serr == nil {
				return fmt.Errorf("pin %d/%d: %w", pid, tid, err)
			}
		}
	}
	return nil
}

// allCPUs is every CPU of this machine.
func allCPUs() unix.CPUSet {
	var s unix.CPUSet
	for i := 0; i < runtime.NumCPU(); i++ {
		s.Set(i)
	}
	return s
}

// floorSummary says what the relay and the pinned runs mean for pullgate's
// cold ratio.
func floorSummary(results map[string][]float64) string {
	m := func(k string) float64 { return median(append([]float64(nil), results[k]...)) }
	direct, cold := m("direct"), m("pullgate cold")
	var b strings.Builder
	if fwd, hashed := m("relay, forwards only"), m("relay, hashes and forwards"); !math.IsNaN(hashed) {
		fmt.Fprintf(&b, "\nThe floor on this machine: a relay that only forwards (no store, no hash) reaches %.2f× of direct, one that also hashes every byte %.2f×. "+
			"No verifying proxy can beat the second; pullgate cold reaches %.2f×, %.0f%% of it.\n", fwd/direct, hashed/direct, cold/direct, 100*cold/hashed)
	}
	if pd, pc := m("pinned: direct"), m("pinned: pullgate cold"); !math.IsNaN(pc) {
		shared, own, _ := cpuSets()
		fmt.Fprintf(&b, "\nWith CPUs of its own (client and upstream on CPUs %v, pullgate on %v, for both pulls): pullgate cold reaches %.2f× of the direct pull (%.0f vs %.0f MiB/s).\n",
			cpuList(shared), cpuList(own), pc/pd, pc, pd)
	}
	return b.String()
}

// cpuList names the CPUs of a set.
func cpuList(s unix.CPUSet) []int {
	var l []int
	for i := 0; i < runtime.NumCPU(); i++ {
		if s.IsSet(i) {
			l = append(l, i)
		}
	}
	return l
}
