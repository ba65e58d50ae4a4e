package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/admin"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/tlsreload"
)

func cmdServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", defaultConfigPaths[0], "configuration file")
	listen := fs.String("listen", "", "registry API address (overrides listen)")
	policyPath := fs.String("policy", "", "policy file (overrides policy)")
	storagePath := fs.String("storage", "", "content store directory (overrides storage.path)")
	auditPath := fs.String("audit", "", "audit log path, or - for stdout (overrides audit.path)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (overrides log.level)")
	pprofAddr := fs.String("pprof", "", "serve Go profiling (net/http/pprof) on this address, e.g. 127.0.0.1:6060 (off by default)")
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate: config: %v\n", err)
		return 2
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	// Paths in flags are relative to the working directory (paths in the
	// file are relative to the file).
	if *policyPath != "" {
		cfg.Policy = absPath(*policyPath)
	}
	if *storagePath != "" {
		cfg.Storage.Path = absPath(*storagePath)
	}
	if *auditPath != "" {
		cfg.Audit.Path = *auditPath
		if !audit.IsStdout(*auditPath) {
			cfg.Audit.Path = absPath(*auditPath)
		}
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "pullgate: config: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Log)
	slog.SetDefault(log) // what libraries log goes to the same place
	if *pprofAddr != "" {
		go func() {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			log.Error("pprof listener ended", "err", http.ListenAndServe(*pprofAddr, mux))
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ring := audit.NewRing(2000)
	srv, err := proxy.Open(ctx, cfg, log, proxy.Options{Registerer: reg, OnAudit: func(e audit.Event) { ring.Add(e) }, Version: version})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate: %v\n", err)
		return 2
	}
	defer srv.Close()
	if cfg.Admin != "" {
		aln, err := net.Listen("tcp", cfg.Admin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pullgate: admin listen: %v\n", err)
			return 1
		}
		var atls *tls.Config
		if cfg.AdminTLS != nil {
			rl, err := tlsreload.New(cfg.Resolve(cfg.AdminTLS.Cert), cfg.Resolve(cfg.AdminTLS.Key), "", log)
			if err != nil {
				fmt.Fprintf(os.Stderr, "pullgate: adminTLS: %v\n", err)
				return 2
			}
			atls = rl.TLSConfig()
		}
		h := admin.New(admin.Options{Gatherer: reg, Ring: ring, Version: version, Log: log, Ready: srv.Ready, Status: srv.ReadyStatus,
			Policy: func() admin.PolicyInfo { return admin.PolicyInfoOf(srv.Policy()) }})
		go func() {
			if err := admin.Serve(ctx, aln, h, atls, log); err != nil {
				log.Error("admin listener failed", "err", err)
			}
		}()
		log.Info("admin listener", "addr", aln.Addr().String(), "ui", "/ui", "metrics", "/metrics")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pullgate: listen: %v\n", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				if err := srv.ReloadPolicy(); err != nil {
					log.Error("policy reload on SIGHUP failed; keeping the policy in force", "err", err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	log.Info("pullgate serving", "listen", ln.Addr().String(), "policyRevision", srv.Policy().Revision(), "version", version)
	if err := srv.ListenAndServe(ctx, ln); err != nil {
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(c config.Log) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// absPath makes a path from a flag absolute against the working directory.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
