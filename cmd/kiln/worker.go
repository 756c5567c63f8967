package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/kiln-build/kiln/worker"
)

func newWorkerCommand(logger *slog.Logger) *cobra.Command {
	var configPath, healthAddr string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a kiln worker: the Build workflows and the Tekton activities",
		Long: `Run a kiln worker. It polls the task queue for Build workflows and runs
their activities: it creates PipelineRuns in the configured namespace and
awaits them through one shared watch.

With executor: local in the config, it runs the pipelines' steps as
processes on this machine instead (no cluster; step images are ignored),
printing each step's output live, prefixed [task/step], and keeping it in
the local directory for kiln logs.

On SIGTERM or Ctrl-C it stops gracefully: activities awaiting PipelineRuns
return at once, the runs keep going in the cluster, and the next worker
re-attaches to them. (A local executor's steps stop with the worker; the
next attempt runs them again.)

Kubernetes access follows client-go's rules: the config's kubeconfig, then
$KUBECONFIG, ~/.kube/config, then the in-cluster service account.` + temporalEnvHelp,
		Example: `  TEMPORAL_ADDRESS=temporal:7233 kiln worker --config deploy/kiln.yaml
  kiln worker --config kiln.yaml --health-addr :8081`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := worker.LoadConfig(configPath, os.Getenv)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid config %s:\n%w", configPath, err)
			}
			var rc *rest.Config
			if cfg.IsLocal() {
				cfg.StepOutput = cmd.OutOrStdout()
			} else if rc, err = worker.RESTConfig(cfg); err != nil {
				return err
			}
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var ready atomic.Bool
			if healthAddr != "" {
				if err := serveHealth(ctx, healthAddr, &ready, logger); err != nil {
					return err
				}
			}
			return worker.Run(ctx, cfg, c, rc, logger, func() { ready.Store(true) })
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "kiln.yaml", "worker config file (see deploy/kiln.yaml)")
	cmd.Flags().StringVar(&healthAddr, "health-addr", "", "serve /healthz and /readyz on this address, e.g. :8081")
	return cmd
}

// serveHealth serves /healthz (the process is up) and /readyz (the worker
// polls) until ctx ends.
func serveHealth(ctx context.Context, addr string, ready *atomic.Bool, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "worker not started", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health address: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("health server", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	return nil
}
