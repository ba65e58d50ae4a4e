// Command restartbench measures how soon pullgate serves after a restart on
// a large store: for each store size it generates that many small blobs
// directly in the filesystem store layout (see generate), next to one
// image pulled through pullgate beforehand, then starts bin/pullgate on the
// store and measures, from the process start, the first GET of the image's
// stored layer that returns the whole blob with its digest (a real pull
// through the running binary), the time until the store index is complete
// (pullgate_store_index_complete on /metrics; a binary without that metric
// builds its index before it listens), and the process's RSS (VmRSS at the
// first pull, VmHWM and VmRSS once the index is complete). With --old, an
// older binary is measured the same way on the same store. Run it with
// `make bench`; it writes a markdown table.
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var (
	blobsFlag    = flag.String("blobs", "10000,100000,1000000", "store sizes (generated blobs), comma-separated")
	blobSize     = flag.Int("blob-size", 512, "size of each generated blob")
	repsFlag     = flag.Int("reps", 3, "restarts per binary and size (median reported)")
	pullgateBin  = flag.String("pullgate", "bin/pullgate", "pullgate binary")
	oldBin       = flag.String("old", "", "an older pullgate binary to measure side by side")
	oldLabel     = flag.String("old-label", "old", "how the table names --old")
	registryBin  = flag.String("registry", ".tools/bin/registry", "distribution registry binary (the upstream)")
	dirFlag      = flag.String("dir", "", "work directory (default: a temporary one, removed at the end)")
	outFlag      = flag.String("o", "", "also write the markdown report here")
	startTimeout = flag.Duration("timeout", 20*time.Minute, "longest wait for one restart to serve and index")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "restartbench:", err)
		os.Exit(1)
	}
}

type proc struct {
	cmd    *exec.Cmd
	url    string
	admin  string
	exited chan struct{}
}

func newProc(cmd *exec.Cmd, url, admin string) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, url: url, admin: admin, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// alive fails once the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v", p.cmd.Path, p.cmd.ProcessState)
	default:
		return nil
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitUp polls u until it answers or the deadline passes.
func waitUp(p *proc, u string, deadline time.Time) error {
	for time.Now().Before(deadline) {
		if err := p.alive(); err != nil {
			return err
		}
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer", u)
}

func startRegistry(dir string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cf := filepath.Join(dir, "registry.yml")
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"+
		"storage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%d, secret: bench}\n",
		filepath.Join(dir, "registry"), port)
	if err := os.WriteFile(cf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(*registryBin, "serve", cf)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	p, err := newProc(cmd, fmt.Sprintf("http://127.0.0.1:%d", port), "")
	if err != nil {
		return nil, err
	}
	if err := waitUp(p, p.url+"/v2/", time.Now().Add(time.Minute)); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// startPullgate starts bin on the store in dir; it does not wait.
func startPullgate(bin, dir, upstreamURL string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("rules:\n  - name: open\n    match: [\"upstream.local/**\"]\n    action: allow\n"), 0o644); err != nil {
		return nil, err
	}
	cf := filepath.Join(dir, "pullgate.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nadmin: 127.0.0.1:%d\nstorage: {path: %s}\n"+
		"upstreams: [{name: upstream.local, url: %s}]\npolicy: %s\nlog: {level: warn}\n",
		port, admin, filepath.Join(dir, "data"), upstreamURL, pol)
	if err := os.WriteFile(cf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cf)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	return newProc(cmd, fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", admin))
}

// pushImage pushes bench/app:v1 (one random layer of 1 MiB) to the
// upstream and returns the layer's digest.
func pushImage(upstreamURL string) (string, error) {
	b := make([]byte, 1<<20)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	layer := static.NewLayer(b, types.OCILayer)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	ref, err := name.ParseReference(strings.TrimPrefix(upstreamURL, "http://")+"/bench/app:v1", name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img); err != nil {
		return "", err
	}
	d, err := layer.Digest()
	return d.String(), err
}

// pullBlob GETs a blob (or a manifest) and checks that the whole of it
// came (want "": any digest).
func pullBlob(u, want string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	_, err = io.Copy(h, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
		return fmt.Errorf("%s: got %s", u, got)
	}
	return nil
}

// procStatus reads a field of /proc/<pid>/status in MiB.
func procStatus(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return kb / 1024
		}
	}
	return -1
}

// indexComplete reads pullgate_store_index_complete from /metrics; a
// binary without it indexes before it listens, so it is complete.
func indexComplete(admin string) (bool, error) {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pullgate_store_index_complete "); ok {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	return true, sc.Err()
}

type result struct {
	firstPull, indexed     time.Duration
	rssFirst, hwm, rssDone float64
}

// restart starts bin on the store in dir and measures one restart.
func restart(bin, dir, upstreamURL, layer string) (result, error) {
	var r result
	deadline := time.Now().Add(*startTimeout)
	start := time.Now()
	p, err := startPullgate(bin, dir, upstreamURL)
	if err != nil {
		return r, err
	}
	defer p.stop()
	blobURL := p.url + "/v2/upstream.local/bench/app/blobs/" + layer
	for {
		err := pullBlob(blobURL, layer)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return r, err
		}
		if aerr := p.alive(); aerr != nil {
			return r, aerr
		}
		if !strings.Contains(err.Error(), "connection refused") {
			return r, fmt.Errorf("first pull: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.firstPull = time.Since(start)
	r.rssFirst = procStatus(p.cmd.Process.Pid, "VmRSS")
	for {
		done, err := indexComplete(p.admin)
		if err == nil && done {
			break
		}
		if aerr := p.alive(); aerr != nil {
			return r, aerr
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("index not complete after %s (%v)", *startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.indexed = time.Since(start)
	r.hwm = procStatus(p.cmd.Process.Pid, "VmHWM")
	r.rssDone = procStatus(p.cmd.Process.Pid, "VmRSS")
	return r, nil
}

func median(rs []result) result {
	pick := func(get func(result) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = get(r)
		}
		sort.Float64s(xs)
		return xs[len(xs)/2]
	}
	return result{
		firstPull: time.Duration(pick(func(r result) float64 { return float64(r.firstPull) })),
		indexed:   time.Duration(pick(func(r result) float64 { return float64(r.indexed) })),
		rssFirst:  pick(func(r result) float64 { return r.rssFirst }),
		hwm:       pick(func(r result) float64 { return r.hwm }),
		rssDone:   pick(func(r result) float64 { return r.rssDone }),
	}
}

func run() error {
	var sizes []int
	for _, f := range strings.Split(*blobsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("--blobs: %w", err)
		}
		sizes = append(sizes, n)
	}
	work := *dirFlag
	if work == "" {
		d, err := os.MkdirTemp("", "restartbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	work, err := filepath.Abs(work)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	reg, err := startRegistry(work)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer reg.stop()
	layer, err := pushImage(reg.url)
	if err != nil {
		return fmt.Errorf("pushing the image: %w", err)
	}
	bins := []struct{ label, path string }{{"pullgate", *pullgateBin}}
	if *oldBin != "" {
		bins = append([]struct{ label, path string }{{*oldLabel, *oldBin}}, bins...)
	}

	var report strings.Builder
	fmt.Fprintf(&report, "| stored blobs | generated in | binary | first pull after start | index complete | RSS at first pull | peak RSS (VmHWM) | RSS, index complete |\n")
	fmt.Fprintf(&report, "|---:|---:|---|---:|---:|---:|---:|---:|\n")
	perMillion := map[string][]result{}
	for si, n := range sizes {
		dir := filepath.Join(work, fmt.Sprintf("store-%d", n))
		_ = os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// The image, pulled through pullgate once: its blobs and the
		// records linking them to bench/app are in the store.
		p, err := startPullgate(*pullgateBin, dir, reg.url)
		if err != nil {
			return err
		}
		err = waitUp(p, p.url+"/v2/", time.Now().Add(time.Minute))
		if err == nil {
			err = pullBlob(p.url+"/v2/upstream.local/bench/app/manifests/v1", "")
		}
		if err == nil {
			err = pullBlob(p.url+"/v2/upstream.local/bench/app/blobs/"+layer, layer)
		}
		p.stop()
		if err != nil {
			return fmt.Errorf("warm-up pull: %w", err)
		}
		took, err := generate(filepath.Join(dir, "data"), n, *blobSize, uint64(si+1))
		if err != nil {
			return fmt.Errorf("generating %d blobs: %w", n, err)
		}
		fmt.Fprintf(os.Stderr, "%d blobs generated in %s\n", n, took.Round(time.Millisecond))
		for _, b := range bins {
			var rs []result
			for i := 0; i < *repsFlag; i++ {
				r, err := restart(b.path, dir, reg.url, layer)
				if err != nil {
					return fmt.Errorf("%s, %d blobs: %w", b.label, n, err)
				}
				fmt.Fprintf(os.Stderr, "  %s: first pull %s, index %s, RSS %.0f/%.0f/%.0f MiB\n", b.label,
					r.firstPull.Round(time.Millisecond), r.indexed.Round(time.Millisecond), r.rssFirst, r.hwm, r.rssDone)
				rs = append(rs, r)
			}
			m := median(rs)
			perMillion[b.label] = append(perMillion[b.label], m)
			fmt.Fprintf(&report, "| %d | %s | %s | %s | %s | %.0f MiB | %.0f MiB | %.0f MiB |\n", n, took.Round(100*time.Millisecond),
				b.label, m.firstPull.Round(time.Millisecond), m.indexed.Round(time.Millisecond), m.rssFirst, m.hwm, m.rssDone)
		}
		_ = os.RemoveAll(dir)
	}
	if len(sizes) > 1 {
		lo, hi := sizes[0], sizes[len(sizes)-1]
		fmt.Fprintln(&report)
		for _, b := range bins {
			ms := perMillion[b.label]
			a, z := ms[0], ms[len(ms)-1]
			fmt.Fprintf(&report, "%s: %.0f MiB more peak RSS and %.0f MiB more RSS once indexed per million stored blobs (from %d to %d).\n",
				b.label, (z.hwm-a.hwm)/float64(hi-lo)*1e6, (z.rssDone-a.rssDone)/float64(hi-lo)*1e6, lo, hi)
		}
	}
	fmt.Print(report.String())
	if *outFlag != "" {
		return os.WriteFile(*outFlag, []byte(report.String()), 0o644)
	}
	return nil
}
