//go:build e2e

// Package e2e runs kiln end to end against real servers: a Temporal dev
// server, etcd and kube-apiserver with Tekton's CRDs, the real Tekton
// controller, kube-scheduler, and kwok playing the kubelet. The Tekton
// controller binds fixed ports, so the tests run in a private network
// namespace:
//
//	go test -c -tags e2e -o /tmp/e2e.test ./test/e2e
//	test/netns-run /tmp/e2e.test -test.v
//
// `make test` does this after building the tools.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/temporaltest"
)

// env holds the servers shared by the package's tests.
var env struct {
	stack    *kubestack.Stack
	temporal *testsuite.DevServer
	client   client.Client
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run(m *testing.M) (code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kiln-e2e-")
	if err != nil {
		return 1, err
	}
	defer func() { // keep the servers' logs when something failed
		if code == 0 && err == nil && os.Getenv("KILN_KEEP_STACK") == "" {
			os.RemoveAll(dir)
		}
	}()
	start := time.Now()
	env.stack, err = kubestack.Start(ctx, kubestack.Options{Dir: filepath.Join(dir, "kube")})
	if errors.Is(err, kubestack.ErrNoTools) && os.Getenv("KILN_REQUIRE_TOOLS") == "" {
		fmt.Println("e2e: skipping:", err)
		return 0, nil
	}
	if err != nil {
		return 1, fmt.Errorf("start kube stack (logs in %s): %w", dir, err)
	}
	defer env.stack.Stop()
	if err := env.stack.StartTekton(ctx); err != nil {
		return 1, fmt.Errorf("start Tekton (logs in %s): %w", dir, err)
	}
	env.temporal, err = temporaltest.StartWithUI(ctx, dir) // the UI: mails link to it
	if err != nil {
		return 1, err
	}
	defer env.temporal.Stop()
	env.client = env.temporal.Client()
	fmt.Printf("e2e: servers up in %v (logs in %s)\n", time.Since(start).Round(time.Millisecond), dir)
	return m.Run(), nil
}
