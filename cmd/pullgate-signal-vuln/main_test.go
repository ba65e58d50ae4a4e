package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify/signals"
)

// The two digests of testdata/ (see testdata/README.md).
const (
	digestCritical = "sha256:7835515593e99c4218a6df09e889a46358f977778e16300846e5bfce6ff204ed"
	digestLow      = "sha256:ce145e077d854116bd7b307c8a6bd360281fbaad15a681c452ce348f7321cd19"
	digestUnknown  = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
)

// The program, built on first use (not in TestMain: fuzz workers run
// TestMain too) and removed when the tests end.
var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// programPath builds the program once with go build and returns its path.
func programPath(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "pullgate-signal-vuln-test"); buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "pullgate-signal-vuln")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func request(digest string) []byte {
	b, err := json.Marshal(signals.Request{APIVersion: signals.APIVersion, Subject: signals.Subject{
		Digest: digest, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Upstream: "hub", Repository: "hub/team/app", Tag: "1.4.2",
	}})
	if err != nil {
		panic(err)
	}
	return b
}

// runExec runs the program in exec mode with stdin and returns its exit
// code, stdout and stderr.
func runBinary(t *testing.T, stdin []byte, args ...string) (int, []byte, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, programPath(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.Bytes(), stderr.String()
}

// decodeAnswer parses an answer with the contract's types, rejecting any
// field they do not name.
func decodeAnswer(t *testing.T, data []byte) *signals.Answer {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a signals.Answer
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("answer does not parse as signals.Answer: %v\n%s", err, data)
	}
	if a.APIVersion != signals.APIVersion || a.Provider.Name != providerName || a.Provider.Version == "" {
		t.Fatalf("answer header: %+v", a)
	}
	return &a
}

// want is what an answer must say.
type want struct {
	status, verdict, dbVersion, scanner, report string
	counts                                      map[string]float64
	fixable                                     float64
	firstID, firstSeverity, firstMessage        string
	findings                                    int
}

func checkAnswer(t *testing.T, a *signals.Answer, digest string, w want) {
	t.Helper()
	if a.Subject.Digest != digest {
		t.Errorf("subject.digest = %q, want %q", a.Subject.Digest, digest)
	}
	if a.Status != w.status || a.Verdict != w.verdict || a.Provider.DBVersion != w.dbVersion {
		t.Errorf("status/verdict/dbVersion = %q/%q/%q, want %q/%q/%q",
			a.Status, a.Verdict, a.Provider.DBVersion, w.status, w.verdict, w.dbVersion)
	}
	if w.status == signals.StatusPending {
		if len(a.Findings) != 0 || len(a.Facts) != 0 {
			t.Errorf("pending answer with facts: %+v", a)
		}
		return
	}
	if len(a.Findings) != w.findings {
		t.Errorf("%d findings, want %d: %+v", len(a.Findings), w.findings, a.Findings)
	} else if f := a.Findings[0]; f.ID != w.firstID || f.Severity != w.firstSeverity || f.Message != w.firstMessage {
		t.Errorf("first finding = %+v, want %s %s %q", f, w.firstID, w.firstSeverity, w.firstMessage)
	}
	if a.Facts["scanner"] != w.scanner || a.Facts["report"] != w.report || a.Facts["fixable"] != w.fixable {
		t.Errorf("facts scanner/report/fixable = %v/%v/%v, want %s/%s/%v",
			a.Facts["scanner"], a.Facts["report"], a.Facts["fixable"], w.scanner, w.report, w.fixable)
	}
	counts, _ := a.Facts["counts"].(map[string]any)
	for _, s := range signals.Severities {
		if counts[s] != w.counts[s] {
			t.Errorf("facts.counts.%s = %v, want %v (counts %v)", s, counts[s], w.counts[s], counts)
		}
	}
}

var (
	wantCritical = want{
		status: "done", verdict: "vulnerable", dbVersion: "trivy-db v2 2026-12-02T06:14:51Z",
		scanner: "trivy", report: "trivy-critical.json", fixable: 3, findings: 4,
		counts:  map[string]float64{"critical": 1, "high": 1, "medium": 1, "low": 1},
		firstID: "CVE-2023-38545", firstSeverity: "critical",
		firstMessage: "curl 7.88.1-10+deb12u5 (fixed in 7.88.1-10+deb12u7): curl: heap based buffer overflow in the SOCKS5 proxy handshake",
	}
	wantLow = want{
		status: "done", verdict: "clean", dbVersion: "grype-db v6.0.2 2026-12-01T04:08:24Z",
		scanner: "grype", report: "grype-low.json", fixable: 1, findings: 2,
		counts:  map[string]float64{"low": 1, "info": 1},
		firstID: "CVE-2023-5678", firstSeverity: "low",
		firstMessage: "libssl3 3.0.11-1~deb12u2 (fixed in 3.0.13-1~deb12u1)",
	}
	wantPending = want{status: "pending"}
)

// The program run for real on the test data answers on stdout.
func TestExecAnswers(t *testing.T) {
	low := wantLow
	low.verdict = "vulnerable"
	highOnCritical := wantCritical
	for _, tc := range []struct {
		name   string
		digest string
		args   []string
		want   want
	}{
		{"trivy critical", digestCritical, nil, wantCritical},
		{"trivy critical --fail-on high", digestCritical, []string{"--fail-on", "high"}, highOnCritical},
		{"grype low only", digestLow, nil, wantLow},
		{"grype low only --fail-on low", digestLow, []string{"--fail-on", "low"}, low},
		{"not scanned", digestUnknown, nil, wantPending},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runBinary(t, request(tc.digest), append([]string{"--reports", "testdata"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			checkAnswer(t, decodeAnswer(t, out), tc.digest, tc.want)
		})
	}
}

// A malformed request exits 2 with a message and no answer.
func TestExecMalformedRequest(t *testing.T) {
	big := append(request(digestLow)[:0:0], request(digestLow)...)
	big = append(big[:len(big)-1], []byte(`,"pad":"`+strings.Repeat("x", maxRequestBytes)+`"}`)...)
	for _, tc := range []struct{ name, stdin, msg string }{
		{"empty", "", "malformed request"},
		{"not JSON", "hello", "malformed request"},
		{"wrong apiVersion", strings.Replace(string(request(digestLow)), signals.APIVersion, "pullgate.dev/signals/v0", 1), "apiVersion"},
		{"tag, not digest", strings.Replace(string(request(digestLow)), digestLow, "latest", 1), "subject.digest"},
		{"upper-case digest", strings.Replace(string(request(digestLow)), digestLow, strings.ToUpper(digestLow), 1), "subject.digest"},
		{"short digest", strings.Replace(string(request(digestLow)), digestLow, digestLow[:40], 1), "subject.digest"},
		{"trailing data", string(request(digestLow)) + `{"apiVersion":"x"}`, "data after the JSON value"},
		{"repeated key", strings.Replace(string(request(digestLow)), `"digest":`, `"digest":"sha256:`+strings.Repeat("0", 64)+`","digest":`, 1), "malformed request"},
		{"key in another case", strings.Replace(string(request(digestLow)), `"digest":`, `"Digest":`, 1), "malformed request"},
		{"wrong type", `{"apiVersion":"pullgate.dev/signals/v1","subject":"sha256:00"}`, "malformed request"},
		{"over 1 MiB", string(big), "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runBinary(t, []byte(tc.stdin), "--reports", "testdata")
			if code != 2 || len(out) != 0 || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2, no answer, a message with %q", code, out, stderr, tc.msg)
			}
		})
	}
	// Bad flags are usage errors (2); an unreadable directory is an error (1).
	if code, _, _ := runBinary(t, request(digestLow), "--reports", "testdata", "--fail-on", "info"); code != 2 {
		t.Errorf("--fail-on info: exit %d, want 2", code)
	}
	if code, _, stderr := runBinary(t, request(digestLow), "--reports", filepath.Join(t.TempDir(), "absent")); code != 1 {
		t.Errorf("absent reports directory: exit %d (%s), want 1", code, stderr)
	}
}

// Of several reports naming a digest the most recent scan is used; a file
// that is not a report is skipped and the digest only it names stays
// pending; a report without database information is versioned by its
// own digest.
func TestExecReportSelection(t *testing.T) {
	dir := t.TempDir()
	trivyData, err := os.ReadFile("testdata/trivy-critical.json")
	if err != nil {
		t.Fatal(err)
	}
	grypeData, err := os.ReadFile("testdata/grype-low.json")
	if err != nil {
		t.Fatal(err)
	}
	// A standalone Trivy scan (no Trivy.Server) of the grype image, older
	// than the Grype report, with the critical finding.
	var standalone map[string]any
	if err := json.Unmarshal(trivyData, &standalone); err != nil {
		t.Fatal(err)
	}
	delete(standalone["Trivy"].(map[string]any), "Server")
	standalone["CreatedAt"] = "2026-11-30T10:00:00Z"
	standalone["Metadata"].(map[string]any)["RepoDigests"] = []string{"registry.example/team/worker@" + digestLow}
	old, err := json.Marshal(standalone)
	if err != nil {
		t.Fatal(err)
	}
	// The same standalone scan, for the critical image only.
	standalone["Metadata"].(map[string]any)["RepoDigests"] = []string{"registry.example/team/app@" + digestCritical}
	alone, err := json.Marshal(standalone)
	if err != nil {
		t.Fatal(err)
	}
	// A report that fails to parse (unknown severity) naming a third digest.
	third := "sha256:" + strings.Repeat("ab", 32)
	broken := strings.Replace(strings.Replace(string(trivyData), digestCritical, third, 1), `"Severity": "LOW"`, `"Severity": "SEVERE"`, 1)
	for name, data := range map[string][]byte{
		"a-old-trivy.json":    old,
		"b-grype.json":        grypeData,
		"c-alone.json":        alone,
		"d-broken.json":       []byte(broken),
		"e-not-a-report.json": []byte(`{"hello": "` + third + `"}`),
		"notes.txt":           []byte("not read"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Newest wins: the Grype report (2026-12-02) over the Trivy one (11-30).
	code, out, stderr := runBinary(t, request(digestLow), "--reports", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	w := wantLow
	w.report = "b-grype.json"
	checkAnswer(t, decodeAnswer(t, out), digestLow, w)
	// No database named: dbVersion is the report's digest.
	code, out, stderr = runBinary(t, request(digestCritical), "--reports", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	w = wantCritical
	w.report = "c-alone.json"
	w.dbVersion = "report sha256:" + sum(alone)
	checkAnswer(t, decodeAnswer(t, out), digestCritical, w)
	// Named only by a broken report and a file that is not one: pending,
	// not clean, and both files are named in the log.
	code, out, stderr = runBinary(t, request(third), "--reports", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkAnswer(t, decodeAnswer(t, out), third, wantPending)
	if !strings.Contains(stderr, "d-broken.json") || !strings.Contains(stderr, `severity \"SEVERE\"`) || !strings.Contains(stderr, "e-not-a-report.json") {
		t.Errorf("skipped reports not logged: %s", stderr)
	}
}

// The HTTPS server answers POSTs from clients with a certificate of the
// configured CA only, and re-reads the reports when the directory changes.
func TestHTTPSClientAuth(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t)
	reports := filepath.Join(dir, "reports")
	if err := os.Mkdir(reports, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "testdata/trivy-critical.json", filepath.Join(reports, "trivy-critical.json"))

	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, programPath(t), "--reports", reports, "--listen", "127.0.0.1:0",
		"--tls-cert", pki.serverCert, "--tls-key", pki.serverKey, "--client-ca", pki.caFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	addr := waitListening(t, stderr)
	url := "https://" + addr + "/v1/signals"

	trusted := pki.client(t, pki.clientCert)
	post := func(c *http.Client, body []byte) (*http.Response, []byte, error) {
		resp, err := c.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		return resp, data, err
	}

	// Answers.
	for _, tc := range []struct {
		digest string
		want   want
	}{{digestCritical, wantCritical}, {digestLow, wantPending}, {digestUnknown, wantPending}} {
		resp, body, err := post(trusted, request(tc.digest))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %s %q: %s", tc.digest, resp.Status, resp.Header.Get("Content-Type"), body)
		}
		checkAnswer(t, decodeAnswer(t, body), tc.digest, tc.want)
	}

	// A new report is read on the next request.
	copyFile(t, "testdata/grype-low.json", filepath.Join(reports, "grype-low.json"))
	resp, body, err := post(trusted, request(digestLow))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after adding a report: %v %v", err, resp)
	}
	checkAnswer(t, decodeAnswer(t, body), digestLow, wantLow)

	// Methods and malformed requests.
	for _, tc := range []struct {
		method string
		body   string
		code   int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPut, string(request(digestLow)), http.StatusMethodNotAllowed},
		{http.MethodPost, "{", http.StatusBadRequest},
		{http.MethodPost, strings.Replace(string(request(digestLow)), digestLow, "latest", 1), http.StatusBadRequest},
		{http.MethodPost, `{"apiVersion":"pullgate.dev/signals/v1","subject":{"digest":"` + digestLow + `"},"x":"` + strings.Repeat("y", maxRequestBytes) + `"}`, http.StatusBadRequest},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, url, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := trusted.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %.40q: %s (%s), want %d", tc.method, tc.body, resp.Status, data, tc.code)
		}
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s %.40q answered: %s", tc.method, tc.body, data)
		}
	}

	// No client certificate, or one from another CA: no answer.
	other := newTestPKI(t)
	for name, c := range map[string]*http.Client{
		"no client certificate":       pki.client(t, ""),
		"certificate from another CA": pki.client(t, other.clientCert),
	} {
		if resp, body, err := post(c, request(digestCritical)); err == nil {
			t.Errorf("%s: answered %s: %s", name, resp.Status, body)
		}
	}
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// waitListening reads the server's log until it names its address, within
// the test's deadline; the rest of the log is drained in the background.
func waitListening(t *testing.T, r io.Reader) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sent := false
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	select {
	case addr, ok := <-found:
		if !ok {
			t.Fatal("server exited before listening")
		}
		return addr
	case <-time.After(time.Until(deadline)):
		t.Fatal("server did not start listening before the test's deadline")
	}
	return ""
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testPKI is a CA generated for one test (harness.CA), with a server
// certificate for 127.0.0.1 and a client certificate, as PEM files.
type testPKI struct {
	ca                            *harness.CA
	caFile, serverCert, serverKey string
	clientCert                    string // its key in clientCert+".key"
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca := harness.NewCA(t)
	p := &testPKI{ca: ca, caFile: ca.CertFile}
	p.serverCert, p.serverKey = ca.ServerCertFiles(t)
	cert, key := ca.ClientCert(t, "pullgate")
	p.clientCert = cert
	copyFile(t, key, cert+".key")
	return p
}

// client trusts p's CA and presents the client certificate in certFile
// (with its key in certFile+".key"), or none when certFile is "".
func (p *testPKI) client(t *testing.T, certFile string) *http.Client {
	t.Helper()
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.ca.Pool}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, certFile+".key")
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Without --client-ca any TLS client is answered; SIGHUP re-reads a report
// rewritten in place even when its size and modification time did not
// change (which the per-request check cannot see).
func TestHTTPSReloadOnSIGHUP(t *testing.T) {
	pki := newTestPKI(t)
	reports := t.TempDir()
	file := filepath.Join(reports, "grype-low.json")
	copyFile(t, "testdata/grype-low.json", file)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, programPath(t), "--reports", reports, "--listen", "127.0.0.1:0",
		"--tls-cert", pki.serverCert, "--tls-key", pki.serverKey)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	url := "https://" + waitListening(t, stderr) + "/"
	c := pki.client(t, "")
	ask := func(digest string) *signals.Answer {
		t.Helper()
		resp, err := c.Post(url, "application/json", bytes.NewReader(request(digest)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %s", resp.Status, err, body)
		}
		return decodeAnswer(t, body)
	}
	checkAnswer(t, ask(digestLow), digestLow, wantLow)

	// The same report, now about another digest: same size, same mtime.
	moved := "sha256:" + strings.Repeat("5e", 32)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, bytes.ReplaceAll(data, []byte(digestLow), []byte(moved)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if a := ask(moved); a.Status != signals.StatusPending {
		t.Fatalf("before SIGHUP the rewritten report was read: %+v", a)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload runs in the server's signal loop: ask until it shows,
	// within the test's deadline (less a margin to report the failure) and
	// at most a minute.
	deadline := time.Now().Add(time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-5*time.Second).Before(deadline) {
		deadline = d.Add(-5 * time.Second)
	}
	for {
		if a := ask(moved); a.Status == signals.StatusDone {
			checkAnswer(t, a, moved, wantLow)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not re-read the reports before the test's deadline")
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
	checkAnswer(t, ask(digestLow), digestLow, wantPending)
}
