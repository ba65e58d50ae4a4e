// Command pullbench measures blob pull throughput side by side on loopback:
// directly from an upstream (distribution's registry binary), through
// pullgate cold and warm, and through distribution's registry in proxy mode
// cold and warm; then 50 concurrent clients on one cold blob (upstream
// fetches counted) and pullgate's peak RSS while streaming. It prints a
// markdown table of throughputs and ratios. Run it with `make bench`.
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	sizeFlag    = flag.String("size", "1GiB", "blob size")
	repsFlag    = flag.Int("reps", 3, "repetitions per variant (median reported)")
	clientsFlag = flag.Int("clients", 50, "concurrent clients on one cold blob")
	pullgateBin = flag.String("pullgate", "bin/pullgate", "pullgate binary")
	registryBin = flag.String("registry", ".tools/bin/registry", "distribution registry binary")
	outFlag     = flag.String("o", "", "also write the markdown report here")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pullbench:", err)
		os.Exit(1)
	}
}

func parseSize(s string) int64 {
	mult := int64(1)
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.s) {
			mult, s = u.m, strings.TrimSuffix(s, u.s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		panic(err)
	}
	return n * mult
}

type proc struct {
	cmd *exec.Cmd
	url string
	dir string
}

func (p *proc) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

func freePort() int {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHTTP(u string) error {
	for i := 0; i < 200; i++ {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up", u)
}

func startRegistry(dir, remoteURL string) (*proc, error) {
	port := freePort()
	cfg := fmt.Sprintf(`version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}
http: {addr: 127.0.0.1:%d, secret: bench}
`, filepath.Join(dir, "data"), port)
	if remoteURL != "" {
		cfg += fmt.Sprintf("proxy: {remoteurl: %s}\n", remoteURL)
	}
	os.MkdirAll(dir, 0o755)
	cf := filepath.Join(dir, "config.yml")
	os.WriteFile(cf, []byte(cfg), 0o644)
	cmd := exec.Command(*registryBin, "serve", cf)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir}
	return p, waitHTTP(p.url + "/v2/")
}

const openPolicy = "rules:\n  - name: open\n    match: [\"upstream.local/**\"]\n    action: allow\n"

// inspectPolicy runs content inspection (safetensors validation) on pulls.
const inspectPolicy = `rules:
  - name: models
    match: ["upstream.local/**"]
    action: allow
    content:
      formats: { safetensors: { maxHeaderBytes: 16MiB }, pickle: deny }
`

func startPullgate(dir, upstreamURL string, policy ...string) (*proc, error) {
	port := freePort()
	os.MkdirAll(dir, 0o755)
	pol := filepath.Join(dir, "policy.yaml")
	text := openPolicy
	if len(policy) > 0 {
		text = policy[0]
	}
	os.WriteFile(pol, []byte(text), 0o644)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
storage: {path: %s}
upstreams: [{name: upstream.local, url: %s}]
policy: %s
audit: {path: %s}
log: {level: error}
`, port, filepath.Join(dir, "data"), upstreamURL, pol, filepath.Join(dir, "audit.jsonl"))
	cf := filepath.Join(dir, "pullgate.yaml")
	os.WriteFile(cf, []byte(cfg), 0o644)
	cmd := exec.Command(*pullgateBin, "serve", "--config", cf)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir}
	return p, waitHTTP(p.url + "/v2/")
}

// pull GETs a blob, hashing it as a client does, and returns the throughput.
func pull(u string, want string, size int64) (float64, error) {
	start := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("%s: %d %s", u, resp.StatusCode, b)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, resp.Body, make([]byte, 1<<20))
	if err != nil {
		return 0, err
	}
	if n != size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != want {
		return 0, fmt.Errorf("%s: got %d bytes with another digest", u, n)
	}
	return float64(size) / (1 << 20) / time.Since(start).Seconds(), nil
}

func get(u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %d", u, resp.StatusCode)
	}
	return nil
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// cpuSeconds is a process's user+system CPU time so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	fs := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	ut, _ := strconv.ParseFloat(fs[11], 64)
	st, _ := strconv.ParseFloat(fs[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// peakRSS reads a process's VmHWM in MiB.
func peakRSS(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmHWM:") {
			fs := strings.Fields(sc.Text())
			kb, _ := strconv.ParseFloat(fs[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func run() error {
	size := parseSize(*sizeFlag)
	work, err := os.MkdirTemp("", "pullbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	up, err := startRegistry(filepath.Join(work, "upstream"), "")
	if err != nil {
		return err
	}
	defer up.stop()

	// Seed: one image with one random layer of the given size.
	fmt.Fprintf(os.Stderr, "seeding a %s layer...\n", *sizeFlag)
	seedBytes := func(repo string, buf []byte) (string, error) {
		layer := static.NewLayer(buf, types.OCIUncompressedLayer)
		img, err := mutate.AppendLayers(empty.Image, layer)
		if err != nil {
			return "", err
		}
		ref, _ := name.ParseReference(strings.TrimPrefix(up.url, "http://")+"/"+repo+":1", name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			return "", err
		}
		d, _ := layer.Digest()
		return d.String(), nil
	}
	seed := func(repo string) (string, error) {
		buf := make([]byte, size)
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		return seedBytes(repo, buf)
	}
	type variant struct {
		name string
		// prepare starts what the variant pulls through and returns the blob URL;
		// the manifest is fetched first where a proxy needs it.
		blobURL func(rep int) (string, func(), error)
	}
	var results = map[string][]float64{}
	cpuPerGiB := map[string][]float64{} // proxy process CPU seconds per GiB pulled cold
	var rss float64

	repos := make([]string, *repsFlag)
	digests := make([]string, *repsFlag)
	for i := range repos {
		repos[i] = fmt.Sprintf("bench/r%d", i)
		if digests[i], err = seed(repos[i]); err != nil {
			return err
		}
	}
	// Seeding leaves gigabytes of dirty pages; flush them so that no variant
	// pays for the seed's writeback.
	syscall.Sync()
	for i := 0; i < *repsFlag; i++ {
		d := digests[i]
		// direct
		mbps, err := pull(up.url+"/v2/"+repos[i]+"/blobs/"+d, d, size)
		if err != nil {
			return err
		}
		results["direct"] = append(results["direct"], mbps)

		// pullgate cold and warm, fresh store each repetition
		syscall.Sync()
		pg, err := startPullgate(filepath.Join(work, fmt.Sprintf("pullgate-%d", i)), up.url)
		if err != nil {
			return err
		}
		base := pg.url + "/v2/upstream.local/" + repos[i]
		if err := get(base + "/manifests/1"); err != nil {
			pg.stop()
			return err
		}
		cpu0 := cpuSeconds(pg.cmd.Process.Pid)
		if mbps, err = pull(base+"/blobs/"+d, d, size); err != nil {
			pg.stop()
			return err
		}
		results["pullgate cold"] = append(results["pullgate cold"], mbps)
		cpuPerGiB["pullgate cold"] = append(cpuPerGiB["pullgate cold"], (cpuSeconds(pg.cmd.Process.Pid)-cpu0)/(float64(size)/(1<<30)))
		rss = max(rss, peakRSS(pg.cmd.Process.Pid))
		if mbps, err = pull(base+"/blobs/"+d, d, size); err != nil {
			pg.stop()
			return err
		}
		results["pullgate warm"] = append(results["pullgate warm"], mbps)
		pg.stop()

		// distribution in proxy mode, cold and warm
		syscall.Sync()
		dp, err := startRegistry(filepath.Join(work, fmt.Sprintf("distproxy-%d", i)), up.url)
		if err != nil {
			return err
		}
		dbase := dp.url + "/v2/" + repos[i]
		if err := get(dbase + "/manifests/1"); err != nil {
			dp.stop()
			return err
		}
		cpu0 = cpuSeconds(dp.cmd.Process.Pid)
		if mbps, err = pull(dbase+"/blobs/"+d, d, size); err != nil {
			dp.stop()
			return err
		}
		results["distribution proxy cold"] = append(results["distribution proxy cold"], mbps)
		cpuPerGiB["distribution proxy cold"] = append(cpuPerGiB["distribution proxy cold"], (cpuSeconds(dp.cmd.Process.Pid)-cpu0)/(float64(size)/(1<<30)))
		// distribution's proxy stores in the background: give it a moment
		time.Sleep(2 * time.Second)
		if mbps, err = pull(dbase+"/blobs/"+d, d, size); err != nil {
			dp.stop()
			return err
		}
		results["distribution proxy warm"] = append(results["distribution proxy warm"], mbps)
		dp.stop()
	}

	// Inline inspection: the same safetensors blob pulled cold through
	// pullgate without and with content inspection, alternating.
	st := safetensorsBlob(size)
	sd, err := seedBytes("bench/model", st)
	if err != nil {
		return err
	}
	for i := 0; i < *repsFlag; i++ {
		for _, v := range []struct{ name, policy string }{{"safetensors, inspection off", openPolicy}, {"safetensors, inspection on", inspectPolicy}} {
			syscall.Sync()
			pg, err := startPullgate(filepath.Join(work, fmt.Sprintf("pullgate-st-%d-%d", i, len(v.policy))), up.url, v.policy)
			if err != nil {
				return err
			}
			base := pg.url + "/v2/upstream.local/bench/model"
			if err := get(base + "/manifests/1"); err != nil {
				pg.stop()
				return err
			}
			mbps, err := pull(base+"/blobs/"+sd, sd, int64(len(st)))
			pg.stop()
			if err != nil {
				return err
			}
			results[v.name] = append(results[v.name], mbps)
		}
	}

	// Coalescing: N clients on one cold blob through pullgate, upstream
	// requests counted by a reverse proxy in front of the upstream.
	cd, err := seed("bench/coalesce")
	if err != nil {
		return err
	}
	var blobGets atomic.Int64
	uu, _ := url.Parse(up.url)
	rp := httputil.NewSingleHostReverseProxy(uu)
	cl, _ := net.Listen("tcp", "127.0.0.1:0")
	csrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		rp.ServeHTTP(w, r)
	})}
	go csrv.Serve(cl)
	defer csrv.Close()
	pg, err := startPullgate(filepath.Join(work, "pullgate-coalesce"), "http://"+cl.Addr().String())
	if err != nil {
		return err
	}
	defer pg.stop()
	cbase := pg.url + "/v2/upstream.local/bench/coalesce"
	if err := get(cbase + "/manifests/1"); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, *clientsFlag)
	cstart := time.Now()
	for i := 0; i < *clientsFlag; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := pull(cbase+"/blobs/"+cd, cd, size); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	celapsed := time.Since(cstart)
	crss := peakRSS(pg.cmd.Process.Pid)

	var b strings.Builder
	fmt.Fprintf(&b, "Blob size %s, %d repetitions (median), loopback, client hashes every byte.\n\n", *sizeFlag, *repsFlag)
	fmt.Fprintf(&b, "| variant | MiB/s (median) | ratio to direct |\n|---|---:|---:|\n")
	direct := median(append([]float64(nil), results["direct"]...))
	for _, k := range []string{"direct", "pullgate cold", "pullgate warm", "distribution proxy cold", "distribution proxy warm"} {
		m := median(append([]float64(nil), results[k]...))
		fmt.Fprintf(&b, "| %s | %.0f | %.2f× |\n", k, m, m/direct)
	}
	fmt.Fprintf(&b, "\nProxy CPU per GiB pulled cold (user+system, median): pullgate %.2f s, distribution proxy %.2f s. "+
		"The machine has %d cores shared by the upstream, the proxy and the hashing client.\n",
		median(cpuPerGiB["pullgate cold"]), median(cpuPerGiB["distribution proxy cold"]), runtime.NumCPU())
	pc, pw := median(results["pullgate cold"]), median(results["pullgate warm"])
	dc, dw := median(results["distribution proxy cold"]), median(results["distribution proxy warm"])
	fmt.Fprintf(&b, "\n| check | target | measured | |\n|---|---|---|---|\n")
	row := func(name, target string, measured string, ok bool) {
		mark := "met"
		if !ok {
			mark = "**missed**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, target, measured, mark)
	}
	row("pullgate cold / direct", "≥ 0.80×", fmt.Sprintf("%.2f×", pc/direct), pc/direct >= 0.8)
	row("pullgate warm / direct", "≥ 1.00×", fmt.Sprintf("%.2f×", pw/direct), pw/direct >= 1.0)
	row("pullgate cold / distribution proxy cold", "≥ 1.00×", fmt.Sprintf("%.2f×", pc/dc), pc/dc >= 1.0)
	row("pullgate warm / distribution proxy warm", "≥ 1.00×", fmt.Sprintf("%.2f×", pw/dw), pw/dw >= 1.0)
	off, on := median(results["safetensors, inspection off"]), median(results["safetensors, inspection on"])
	row("cold safetensors pull, inspection on / off", "≥ 0.95×", fmt.Sprintf("%.2f× (%.0f vs %.0f MiB/s)", on/off, on, off), on/off >= 0.95)
	row(fmt.Sprintf("%d concurrent clients, one cold blob: upstream GETs", *clientsFlag), "1", fmt.Sprintf("%d (all clients done in %s)", blobGets.Load(), celapsed.Round(time.Millisecond)), blobGets.Load() == 1)
	row("pullgate peak RSS streaming the blob (1 client / 50 clients)", "< 150 MiB", fmt.Sprintf("%.0f / %.0f MiB", rss, crss), rss < 150 && crss < 150)
	fmt.Print(b.String())
	if *outFlag != "" {
		return os.WriteFile(*outFlag, []byte(b.String()), 0o644)
	}
	return nil
}

// safetensorsBlob is a valid safetensors file of about size bytes: one U8
// tensor holding random data.
func safetensorsBlob(size int64) []byte {
	n := size - 256
	header := fmt.Sprintf(`{"__metadata__":{"format":"pt"},"w":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}`, n, n)
	for len(header)%8 != 0 {
		header += " "
	}
	buf := make([]byte, 8+len(header)+int(n))
	binary.LittleEndian.PutUint64(buf, uint64(len(header)))
	copy(buf[8:], header)
	rand.Read(buf[8+len(header):])
	return buf
}
