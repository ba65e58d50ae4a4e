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
	"math"
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
	"github.com/pullgate/pullgate/test/modelcorpus"
)

var (
	sizeFlag    = flag.String("size", "1GiB", "blob size")
	repsFlag    = flag.Int("reps", 3, "repetitions per variant (median reported)")
	clientsFlag = flag.Int("clients", 50, "concurrent clients on one cold blob")
	pullgateBin = flag.String("pullgate", "bin/pullgate", "pullgate binary")
	registryBin = flag.String("registry", ".tools/bin/registry", "distribution registry binary")
	outFlag     = flag.String("o", "", "also write the markdown report here")
	quickFlag   = flag.Bool("quick", false, "only direct and pullgate cold/warm (for profiling); no checks")
	inspectFlag = flag.Bool("inspection", false, "only the cold pulls of each inspectionKinds model file with content inspection off and on (for profiling); no checks")
	kindsFlag   = flag.String("kinds", "", "comma-separated model file kinds whose inspection on/off pulls are measured (default: every inspectionKinds entry)")
	keepMemFlag = flag.Bool("keep-guest-memory", false, "on a VM whose hypervisor reclaims freed guest pages (free page reporting), delay the reclaim and pre-touch memory before each pull, so that no variant pays the host's first-touch faults (needs root; restored on exit)")
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "relay" {
		if err := relayMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pullbench relay:", err)
			os.Exit(1)
		}
		return
	}
	flag.Parse()
	if err := selectKinds(*kindsFlag); err != nil {
		fmt.Fprintln(os.Stderr, "pullbench:", err)
		os.Exit(2)
	}
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
	if p != nil && p.cmd != nil && p.cmd.Process != nil {
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

// inspectPolicy runs content inspection on pulls (safetensors validation,
// and the ONNX walk for the ONNX kind).
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

// median of xs (sorted in place); NaN when there are none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
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
	guest := newGuestMemory(*keepMemFlag, 2*size+(512<<20))
	defer guest.restore()

	up, err := startRegistry(filepath.Join(work, "upstream"), "")
	if err != nil {
		return err
	}
	defer up.stop()

	// Seed: one image with one random layer of the given size.
	fmt.Fprintf(os.Stderr, "seeding a %s layer...\n", *sizeFlag)
	// seedLayer pushes buf as the one layer of repo:1, with a media type
	// and a title annotation when given.
	seedLayer := func(repo string, buf []byte, mediaType, title string) (string, error) {
		mt := types.MediaType(mediaType)
		if mt == "" {
			mt = types.OCIUncompressedLayer
		}
		layer := static.NewLayer(buf, mt)
		add := mutate.Addendum{Layer: layer}
		if title != "" {
			add.Annotations = map[string]string{"org.opencontainers.image.title": title}
		}
		img, err := mutate.Append(empty.Image, add)
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
	seedBytes := func(repo string, buf []byte) (string, error) { return seedLayer(repo, buf, "", "") }
	seed := func(repo string) (string, error) {
		buf := make([]byte, size)
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		return seedBytes(repo, buf)
	}
	results := map[string][]float64{}
	// CPU seconds per GiB pulled, per variant and process (client, upstream,
	// proxy): what bounds throughput when they all share this machine's cores.
	cpu := map[string]map[string][]float64{}
	var rss float64

	// measure pulls one blob and books its throughput and the CPU each
	// process spent on it.
	measure := func(variant, u, d string, n int64, proxy *proc) error {
		guest.prepare()
		pids := map[string]int{"client": os.Getpid(), "upstream": up.cmd.Process.Pid}
		if proxy != nil {
			pids["proxy"] = proxy.cmd.Process.Pid
		}
		before := map[string]float64{}
		for k, pid := range pids {
			before[k] = cpuSeconds(pid)
		}
		mbps, err := pull(u, d, n)
		if err != nil {
			return err
		}
		results[variant] = append(results[variant], mbps)
		if cpu[variant] == nil {
			cpu[variant] = map[string][]float64{}
		}
		line := fmt.Sprintf("%s: %.0f MiB/s, CPU s/GiB", variant, mbps)
		for _, k := range []string{"client", "upstream", "proxy"} {
			if pid, ok := pids[k]; ok {
				c := (cpuSeconds(pid) - before[k]) / (float64(n) / (1 << 30))
				cpu[variant][k] = append(cpu[variant][k], c)
				line += fmt.Sprintf(" %s %.2f", k, c)
			}
		}
		fmt.Fprintln(os.Stderr, line)
		return nil
	}

	repos := make([]string, *repsFlag)
	digests := make([]string, *repsFlag)
	for i := range repos {
		if *inspectFlag {
			break
		}
		repos[i] = fmt.Sprintf("bench/r%d", i)
		if digests[i], err = seed(repos[i]); err != nil {
			return err
		}
	}
	// Seeding leaves gigabytes of dirty pages; flush them so that no variant
	// pays for the seed's writeback.
	syscall.Sync()
	for i := 0; i < *repsFlag && !*inspectFlag; i++ {
		d := digests[i]
		if err := measure("direct", up.url+"/v2/"+repos[i]+"/blobs/"+d, d, size, nil); err != nil {
			return err
		}
		// The floor: a relay that forwards (and hashes) and does nothing else.
		for _, v := range []struct {
			name string
			hash bool
		}{{"relay, forwards only", false}, {"relay, hashes and forwards", true}} {
			rl, err := startRelay(up.url, v.hash)
			if err == nil {
				err = measure(v.name, rl.url+"/v2/"+repos[i]+"/blobs/"+d, d, size, rl)
			}
			rl.stop()
			if err != nil {
				return err
			}
		}

		// pullgate cold and warm, fresh store each repetition
		syscall.Sync()
		pg, err := startPullgate(filepath.Join(work, fmt.Sprintf("pullgate-%d", i)), up.url)
		if err != nil {
			return err
		}
		base := pg.url + "/v2/upstream.local/" + repos[i]
		err = get(base + "/manifests/1")
		if err == nil {
			err = measure("pullgate cold", base+"/blobs/"+d, d, size, pg)
		}
		rss = max(rss, peakRSS(pg.cmd.Process.Pid))
		if err == nil {
			err = measure("pullgate warm", base+"/blobs/"+d, d, size, pg)
		}
		pg.stop()
		if err != nil {
			return err
		}
		if *quickFlag {
			continue
		}

		// distribution in proxy mode, cold and warm
		syscall.Sync()
		dp, err := startRegistry(filepath.Join(work, fmt.Sprintf("distproxy-%d", i)), up.url)
		if err != nil {
			return err
		}
		dbase := dp.url + "/v2/" + repos[i]
		err = get(dbase + "/manifests/1")
		if err == nil {
			err = measure("distribution proxy cold", dbase+"/blobs/"+d, d, size, dp)
		}
		if err == nil {
			// distribution's proxy stores in the background: give it a moment
			time.Sleep(2 * time.Second)
			err = measure("distribution proxy warm", dbase+"/blobs/"+d, d, size, dp)
		}
		dp.stop()
		if err != nil {
			return err
		}
	}
	// pullgate with a core of its own: the client and the upstream share
	// one half of the CPUs, pullgate gets the other, for the direct pull
	// and the cold pull alike.
	if shared, own, ok := cpuSets(); ok && !*inspectFlag {
		for i := 0; i < *repsFlag; i++ {
			d := digests[i]
			if err := pin(os.Getpid(), shared); err != nil {
				return err
			}
			if err := pin(up.cmd.Process.Pid, shared); err != nil {
				return err
			}
			err := measure("pinned: direct", up.url+"/v2/"+repos[i]+"/blobs/"+d, d, size, nil)
			var pg *proc
			if err == nil {
				syscall.Sync()
				pg, err = startPullgate(filepath.Join(work, fmt.Sprintf("pullgate-pinned-%d", i)), up.url)
			}
			if err == nil {
				err = pin(pg.cmd.Process.Pid, own)
			}
			if err == nil {
				base := pg.url + "/v2/upstream.local/" + repos[i]
				if err = get(base + "/manifests/1"); err == nil {
					err = measure("pinned: pullgate cold", base+"/blobs/"+d, d, size, pg)
				}
			}
			pg.stop()
			all := allCPUs()
			pin(os.Getpid(), all)
			pin(up.cmd.Process.Pid, all)
			if err != nil {
				return err
			}
		}
	}
	if *quickFlag {
		fmt.Print(throughputTable(results, cpu, guest))
		fmt.Print(floorSummary(results))
		return nil
	}

	// Inline inspection: the same blob pulled cold through pullgate
	// without and with content inspection, alternating, for every kind of
	// model file in inspectionKinds (one blob in memory at a time).
	for _, m := range inspectionKinds {
		blob, err := m.blob(size)
		if err != nil {
			return fmt.Errorf("%s sample: %w", m.kind, err)
		}
		sd, err := seedLayer(m.repo, blob, m.mediaType, m.title)
		if err != nil {
			return err
		}
		// At least 5 pairs, alternating which goes first: on this machine
		// throughput drifts from pull to pull far more than inspection costs.
		for i := 0; i < inspectReps(); i++ {
			pair := []struct{ name, policy string }{{m.kind + ", inspection off", openPolicy}, {m.kind + ", inspection on", m.policy}}
			if i%2 == 1 {
				pair[0], pair[1] = pair[1], pair[0]
			}
			for j, v := range pair {
				syscall.Sync()
				pg, err := startPullgate(filepath.Join(work, fmt.Sprintf("pullgate-%s-%d-%d", strings.ReplaceAll(m.repo, "/", "-"), i, j)), up.url, v.policy)
				if err != nil {
					return err
				}
				base := pg.url + "/v2/upstream.local/" + m.repo
				if err := get(base + "/manifests/1"); err != nil {
					pg.stop()
					return err
				}
				err = measure(v.name, base+"/blobs/"+sd, sd, int64(len(blob)), pg)
				pg.stop()
				// Each cold pull stores the blob: drop the store (every
				// kind's 10 pulls of 1 GiB would fill the disk).
				os.RemoveAll(pg.dir)
				if err != nil {
					return err
				}
			}
		}
	}
	if *inspectFlag {
		fmt.Print(throughputTable(results, cpu, guest))
		fmt.Println()
		for _, m := range inspectionKinds {
			fmt.Printf("%s, inspection on / off: %s\n", m.kind, inspectionRatio(results, m.kind))
		}
		return nil
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
	b.WriteString(throughputTable(results, cpu, guest))
	direct := median(append([]float64(nil), results["direct"]...))
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
	row("pullgate cold / direct", "≥ 0.80×", fmt.Sprintf("%.3f×", pc/direct), pc/direct >= 0.8)
	row("pullgate warm / direct", "≥ 1.00×", fmt.Sprintf("%.3f×", pw/direct), pw/direct >= 1.0)
	row("pullgate cold / distribution proxy cold", "≥ 1.00×", fmt.Sprintf("%.3f×", pc/dc), pc/dc >= 1.0)
	row("pullgate warm / distribution proxy warm", "≥ 1.00×", fmt.Sprintf("%.3f×", pw/dw), pw/dw >= 1.0)
	for _, m := range inspectionKinds {
		r, _ := inspectionRatios(results, m.kind)
		row("cold "+m.label+" pull, inspection on / off", fmt.Sprintf("≥ %.2f×", m.target), inspectionRatio(results, m.kind), r >= m.target)
	}
	row(fmt.Sprintf("%d concurrent clients, one cold blob: upstream GETs", *clientsFlag), "1", fmt.Sprintf("%d (all clients done in %s)", blobGets.Load(), celapsed.Round(time.Millisecond)), blobGets.Load() == 1)
	row("pullgate peak RSS streaming the blob (1 client / 50 clients)", "< 150 MiB", fmt.Sprintf("%.0f / %.0f MiB", rss, crss), rss < 150 && crss < 150)
	b.WriteString(floorSummary(results))
	fmt.Print(b.String())
	if *outFlag != "" {
		return os.WriteFile(*outFlag, []byte(b.String()), 0o644)
	}
	return nil
}

// inspectReps is how many pairs of inspection pulls are measured.
func inspectReps() int { return max(*repsFlag, 5) }

// inspectionRatios are the median inspection-on throughput over the median
// inspection-off throughput of one kind of model file, and the median of
// the ratios within pairs.
func inspectionRatios(results map[string][]float64, kind string) (medians, paired float64) {
	on, off := results[kind+", inspection on"], results[kind+", inspection off"]
	var r []float64
	for i := range min(len(on), len(off)) {
		r = append(r, on[i]/off[i])
	}
	return median(append([]float64(nil), on...)) / median(append([]float64(nil), off...)), median(r)
}

func inspectionRatio(results map[string][]float64, kind string) string {
	m, p := inspectionRatios(results, kind)
	return fmt.Sprintf("%.2f× (medians of %d pulls each, %.0f vs %.0f MiB/s; median within alternating pairs %.2f×)", m,
		len(results[kind+", inspection on"]), median(append([]float64(nil), results[kind+", inspection on"]...)),
		median(append([]float64(nil), results[kind+", inspection off"]...)), p)
}

// torchInspectPolicy inspects torch.save checkpoints as a model rule that
// admits them does: the zip validated, data.pkl walked against the import
// allowlist.
const torchInspectPolicy = `rules:
  - name: models
    match: ["upstream.local/**"]
    action: allow
    content:
      formats: { pickle: scan }
      denyCodeLayers: true
`

// torchSaveBlob is a torch.save checkpoint of about size bytes in torch
// 2.x's layout, as in the real corpus file (modelscan's
// unsafe_zip_pytorch.pt: data.pkl, byteorder, data/<key>, version,
// .data/serialization_id; data descriptors, 64-byte aligned records): a
// state dict of float32 tensors of 16 MiB of random data each.
func torchSaveBlob(size int64) ([]byte, error) {
	const per = 16 << 20
	n := max(int(size/per), 1)
	tensors := make([]modelcorpus.TorchTensor, n)
	for i := range tensors {
		tensors[i] = modelcorpus.TorchTensor{Name: fmt.Sprintf("model.layers.%d.mlp.weight", i), StorageType: "FloatStorage",
			Key: fmt.Sprint(i), Shape: []int64{per / 4 / 1024, 1024}}
	}
	return modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("checkpoint", tensors, nil, func(modelcorpus.TorchTensor) []byte {
		b := make([]byte, per)
		rand.Read(b)
		return b
	})), nil
}

// safetensorsBlob is a valid safetensors file of about size bytes: one U8
// tensor holding random data.
func safetensorsBlob(size int64) ([]byte, error) {
	n := size - 256
	header := fmt.Sprintf(`{"__metadata__":{"format":"pt"},"w":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}`, n, n)
	for len(header)%8 != 0 {
		header += " "
	}
	buf := make([]byte, 8+len(header)+int(n))
	binary.LittleEndian.PutUint64(buf, uint64(len(header)))
	copy(buf[8:], header)
	rand.Read(buf[8+len(header):])
	return buf, nil
}

// throughputTable is the markdown table of throughput and ratio to direct per
// variant, with the CPU each process spent per GiB, and what that CPU means
// on this machine: with every process sharing its cores, a variant cannot
// beat cores / (total CPU seconds per GiB).
func throughputTable(results map[string][]float64, cpu map[string]map[string][]float64, guest *guestMemory) string {
	var b strings.Builder
	cores := float64(runtime.NumCPU())
	direct := median(append([]float64(nil), results["direct"]...))
	fmt.Fprintf(&b, "| variant | MiB/s (median) | ratio to direct | CPU s/GiB: client | upstream | proxy | CPU-bound ceiling on %d cores |\n|---|---:|---:|---:|---:|---:|---:|\n", int(cores))
	variants := []string{"direct", "relay, forwards only", "relay, hashes and forwards", "pullgate cold", "pullgate warm", "distribution proxy cold", "distribution proxy warm"}
	for _, m := range inspectionKinds {
		variants = append(variants, m.kind+", inspection off", m.kind+", inspection on")
	}
	for _, k := range append(variants, "pinned: direct", "pinned: pullgate cold") {
		if len(results[k]) == 0 {
			continue
		}
		m := median(append([]float64(nil), results[k]...))
		c := func(p string) float64 {
			if len(cpu[k][p]) == 0 {
				return 0
			}
			return median(append([]float64(nil), cpu[k][p]...))
		}
		proxy := "–"
		if len(cpu[k]["proxy"]) > 0 {
			proxy = fmt.Sprintf("%.2f", c("proxy"))
		}
		total := c("client") + c("upstream") + c("proxy")
		fmt.Fprintf(&b, "| %s | %.0f | %.2f× | %.2f | %.2f | %s | %.0f MiB/s (%.2f×) |\n", k, m, m/direct, c("client"), c("upstream"), proxy, cores*1024/total, cores*1024/total/direct)
	}
	fmt.Fprintf(&b, "\nSHA-256 on one core of this machine: %.0f MiB/s (%.2f s/GiB), paid by the client and by pullgate. %s\n", shaSpeed(), 1024/shaSpeed(), guest.describe())
	return b.String()
}

// shaSpeed measures this machine's single-core SHA-256 throughput in MiB/s.
func shaSpeed() float64 {
	buf := make([]byte, 1<<20)
	h := sha256.New()
	start := time.Now()
	for i := 0; i < 256; i++ {
		h.Write(buf)
	}
	return 256 / time.Since(start).Seconds()
}

// guestMemory deals with one property of virtual machines that changes
// cold-pull figures: with free page reporting (virtio-balloon), the guest
// hands every page it frees back to the host, and the first write to such a
// page costs a host fault. A cold pull writes its cache into fresh page-cache
// pages and pays that; a direct pull serves a file already in memory and
// does not. With keep, the harness delays the reporting (the kernel's
// page_reporting min_free_ms) and touches memory before each pull, so every
// variant runs on memory the host has already backed.
type guestMemory struct {
	keep     bool
	touch    int64
	param    string
	orig     string
	firstMBs float64 // first-write speed of 1 GiB of fresh memory at the start, MiB/s
}

const minFreeParam = "/sys/module/page_reporting/parameters/min_free_ms"

func newGuestMemory(keep bool, touch int64) *guestMemory {
	g := &guestMemory{keep: keep, touch: touch}
	if b, err := os.ReadFile(minFreeParam); err == nil {
		g.param, g.orig = minFreeParam, strings.TrimSpace(string(b))
	}
	g.firstMBs = touchSpeed(1 << 30)
	if keep && g.param != "" {
		if err := os.WriteFile(g.param, []byte("60000"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "pullbench: cannot delay free page reporting:", err)
			g.keep = false
		}
	}
	return g
}

// prepare touches memory and frees it, so that the next pull's allocations
// find pages the host has backed (only with keep).
func (g *guestMemory) prepare() {
	if g.keep {
		touchSpeed(g.touch)
	}
}

func (g *guestMemory) restore() {
	if g.keep && g.param != "" {
		os.WriteFile(g.param, []byte(g.orig), 0o644)
	}
}

func (g *guestMemory) describe() string {
	switch {
	case g.param == "":
		return fmt.Sprintf("No free page reporting on this machine; 1 GiB of fresh memory was first written at %.0f MiB/s.", g.firstMBs)
	case g.keep:
		return fmt.Sprintf("This VM reports freed pages to its hypervisor (page_reporting min_free_ms=%s; 1 GiB of fresh memory first written at %.0f MiB/s at the start). "+
			"This run used --keep-guest-memory: reporting delayed and memory pre-touched before every pull, for every variant.", g.orig, g.firstMBs)
	default:
		return fmt.Sprintf("This VM reports freed pages to its hypervisor (page_reporting min_free_ms=%s; 1 GiB of fresh memory first written at %.0f MiB/s at the start): "+
			"the first write to a page the host reclaimed costs a host fault, which a cold pull pays for every page of cache it writes "+
			"(the direct pull serves a file already in memory). --keep-guest-memory removes that cost for all variants.", g.orig, g.firstMBs)
	}
}

// touchSpeed maps n bytes of fresh anonymous memory, writes one byte per
// page, unmaps it, and returns the write speed in MiB/s.
func touchSpeed(n int64) float64 {
	m, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return 0
	}
	start := time.Now()
	for i := 0; i < len(m); i += 4096 {
		m[i] = 1
	}
	el := time.Since(start)
	syscall.Munmap(m)
	return float64(n) / (1 << 20) / el.Seconds()
}
