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

func start(ctx context.Context, dir string, ui bool) (*testsuite.DevServer, error) {
	path, err := kubestack.Tool("temporal")
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "temporal.log"))
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
			Logger: Logger(io.Discard),
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
