// Package temporaltest starts a real Temporal dev server, built from source
// by `make tools` (bin/temporal), for kiln's tests and benchmarks.
package temporaltest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/test/kubestack"
)

// Start starts a dev server with its SQLite file and log in dir, and returns
// it with a connected client. It returns an error wrapping
// kubestack.ErrNoTools if bin/temporal is not built. Stop the server when
// done.
func Start(ctx context.Context, dir string) (*testsuite.DevServer, error) {
	return start(ctx, dir, false)
}

// StartWithUI is Start with the Temporal UI, served on the frontend's port
// plus 1000.
func StartWithUI(ctx context.Context, dir string) (*testsuite.DevServer, error) {
	return start(ctx, dir, true)
}

// StartOn is Start on hostPort ("127.0.0.1:7233"; "" picks a free port).
// Stopping the server and starting it again with the same dir and
// FrontendHostPort brings the same server back, with its database, for
// outage drills; clients dialled to the address reconnect by themselves.
func StartOn(ctx context.Context, dir, hostPort string) (*testsuite.DevServer, error) {
	return startOn(ctx, dir, hostPort, false)
}

func start(ctx context.Context, dir string, ui bool) (*testsuite.DevServer, error) {
	return startOn(ctx, dir, "", ui)
}

func startOn(ctx context.Context, dir, hostPort string, ui bool) (*testsuite.DevServer, error) {
	path, err := kubestack.Tool("temporal")
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "temporal.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: path,
		DBFilename:   filepath.Join(dir, "temporal.db"),
		LogLevel:     "warn",
		EnableUI:     ui,
		// Let workers start the activities their own workflow tasks
		// schedule without a round trip through matching, as Temporal
		// Cloud does.
		ExtraArgs: []string{"--dynamic-config-value", "system.enableActivityEagerExecution=true"},
		Stdout:    logf,
		Stderr:    logf,
		ClientOptions: &client.Options{
			HostPort: hostPort,
			Logger:   Logger(io.Discard),
		},
	})
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start Temporal dev server (log in %s): %w", logf.Name(), err)
	}
	return srv, nil
}

// Logger is an SDK logger that writes warnings and errors to w.
func Logger(w io.Writer) log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})))
}
