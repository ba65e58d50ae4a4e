// Command pullgate-signal-vuln is pullgate's reference signal provider: it
// answers "what does the vulnerability scan say about this digest" from
// Trivy (`trivy image --format json`) and Grype (`grype -o json`) reports
// an operator keeps in a directory, so a policy can block critical CVEs
// with the scanner's current database rather than the one frozen in a
// signed attestation. See docs/signals-vuln.md.
//
// It speaks the contract of verify/signals (APIVersion) in two ways:
//
//	pullgate-signal-vuln --reports DIR [--fail-on critical]
//	    reads one Request on stdin, prints the Answer on stdout (exit 0);
//	    a malformed request exits 2 with a message on stderr.
//	pullgate-signal-vuln --reports DIR --listen ADDR --tls-cert C --tls-key K [--client-ca CA]
//	    answers HTTPS POSTs of a Request with the Answer, requiring a
//	    client certificate issued by CA when --client-ca is set.
//
// A digest no report names is answered with status "pending" (not
// scanned yet), never "clean".
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pullgate/pullgate/proxy/tlsreload"
)

// version is the provider's version (provider.version of each answer):
// set at build time with -ldflags "-X main.version=...". Answers cached
// by pullgate go stale when it changes.
var version = "0.1.0"

const usage = `usage:
  pullgate-signal-vuln --reports DIR [--fail-on SEVERITY] < request.json
  pullgate-signal-vuln --reports DIR --listen ADDR --tls-cert FILE --tls-key FILE [--client-ca FILE]
  pullgate-signal-vuln --version
`

type config struct {
	reports, failOn                   string
	listen, tlsCert, tlsKey, clientCA string
	maxFindings                       int
	showVersion                       bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var c config
	fs := flag.NewFlagSet("pullgate-signal-vuln", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&c.reports, "reports", "", "directory of Trivy/Grype JSON reports (*.json)")
	fs.StringVar(&c.failOn, "fail-on", "critical", "lowest severity that makes the verdict \"vulnerable\": critical, high, medium or low")
	fs.IntVar(&c.maxFindings, "max-findings", 256, "findings listed in one answer, most severe first (facts.counts cover all)")
	fs.StringVar(&c.listen, "listen", "", "serve HTTPS on this address instead of answering one request on stdin")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "server certificate (PEM), with --listen")
	fs.StringVar(&c.tlsKey, "tls-key", "", "server key (PEM), with --listen")
	fs.StringVar(&c.clientCA, "client-ca", "", "require client certificates issued by this CA (PEM), with --listen")
	fs.BoolVar(&c.showVersion, "version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.showVersion {
		fmt.Fprintln(stdout, providerName, version)
		return 0
	}
	if err := c.check(fs.NArg()); err != nil {
		fmt.Fprintf(stderr, "pullgate-signal-vuln: %v\n%s", err, usage)
		return 2
	}
	opt := options{failOn: c.failOn, maxFindings: c.maxFindings}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if c.listen == "" {
		return runExec(c.reports, opt, stdin, stdout, stderr, log)
	}
	if err := serve(c, opt, log); err != nil {
		fmt.Fprintf(stderr, "pullgate-signal-vuln: %v\n", err)
		return 1
	}
	return 0
}

func (c *config) check(nargs int) error {
	if nargs > 0 {
		return errors.New("unexpected arguments")
	}
	if c.reports == "" {
		return errors.New("--reports is required")
	}
	if r, ok := severityRank[c.failOn]; !ok || r < 1 {
		return fmt.Errorf("--fail-on %q: want critical, high, medium or low", c.failOn)
	}
	if c.maxFindings < 0 {
		return errors.New("--max-findings must not be negative")
	}
	if c.listen == "" {
		if c.tlsCert != "" || c.tlsKey != "" || c.clientCA != "" {
			return errors.New("--tls-cert, --tls-key and --client-ca need --listen")
		}
		return nil
	}
	if c.tlsCert == "" || c.tlsKey == "" {
		return errors.New("--listen needs --tls-cert and --tls-key (the provider serves HTTPS only)")
	}
	return nil
}

// runExec answers the one request on stdin. Exit codes: 0 answered
// (done or pending), 2 malformed request, 1 the reports cannot be read.
func runExec(dir string, opt options, stdin io.Reader, stdout, stderr io.Writer, log *slog.Logger) int {
	req, err := readRequest(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "pullgate-signal-vuln: %v\n", err)
		return 2
	}
	ix, err := loadIndex(dir, log, req.Subject.Digest)
	if err != nil {
		fmt.Fprintf(stderr, "pullgate-signal-vuln: %v\n", err)
		return 1
	}
	if err := writeAnswer(stdout, answer(ix, req, opt)); err != nil {
		fmt.Fprintf(stderr, "pullgate-signal-vuln: writing the answer: %v\n", err)
		return 1
	}
	return 0
}

// serve answers HTTPS POSTs until SIGINT or SIGTERM; SIGHUP re-reads the
// reports (they are also re-read when the directory changes).
func serve(c config, opt options, log *slog.Logger) error {
	// Certificates, key and client CA are re-read when their files change
	// (proxy/tlsreload, as pullgate's own listeners), so they can be
	// rotated without a restart.
	rl, err := tlsreload.New(c.tlsCert, c.tlsKey, c.clientCA, log)
	if err != nil {
		return fmt.Errorf("loading --tls-cert/--tls-key/--client-ca: %w", err)
	}
	tc := rl.TLSConfig()
	if c.clientCA != "" {
		// tlsreload verifies a client certificate when one is given; a
		// provider requires one.
		tc.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := rl.GetConfigForClient(h)
			if cc != nil {
				cc.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return cc, err
		}
	}
	live := &liveIndex{dir: c.reports, log: log}
	if _, err := live.get(true); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler(live, opt, log),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	log.Info("listening", "addr", ln.Addr().String(), "reports", c.reports, "clientAuth", c.clientCA != "")
	for {
		select {
		case err := <-done:
			return err
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if _, err := live.get(true); err != nil {
					log.Error("re-reading reports", "err", err)
				}
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := srv.Shutdown(ctx)
			cancel()
			return err
		}
	}
}

// handler answers POST with a Request body; 405 for other methods, 400 for
// a malformed request, 503 when the reports cannot be read.
func handler(live *liveIndex, opt options, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a "+providerName+" request (verify/signals.Request JSON)", http.StatusMethodNotAllowed)
			return
		}
		req, err := readRequest(http.MaxBytesReader(w, r.Body, maxRequestBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ix, err := live.get(false)
		if err != nil {
			log.Error("reading reports", "err", err)
			http.Error(w, "the reports cannot be read", http.StatusServiceUnavailable)
			return
		}
		a := answer(ix, req, opt)
		w.Header().Set("Content-Type", "application/json")
		if err := writeAnswer(w, a); err != nil {
			log.Warn("writing answer", "err", err)
		}
	})
}
