package kubestack

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"
)

var shared struct {
	once  sync.Once
	stack *Stack
	err   error
	dir   string
}

// ForTest returns the stack shared by the tests of the calling package,
// starting it on first use. It skips the test, saying why, when the tools are
// not built; `make test` builds them first, so CI never skips. Call
// StopShared from TestMain after m.Run.
func ForTest(tb testing.TB) *Stack {
	tb.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "kiln-kubestack-")
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.stack, shared.err = Start(ctx, Options{Dir: shared.dir})
	})
	SkipWithoutTools(tb, shared.err)
	if shared.err != nil {
		tb.Fatalf("start kube stack (logs in %s): %v", shared.dir, shared.err)
	}
	return shared.stack
}

// SkipWithoutTools skips the test when err says the tools are not built,
// unless KILN_REQUIRE_TOOLS is set (as `make test` sets it): then a missing
// tool fails the test, so that CI can never pass by skipping.
func SkipWithoutTools(tb testing.TB, err error) {
	tb.Helper()
	if !errors.Is(err, ErrNoTools) {
		return
	}
	if os.Getenv("KILN_REQUIRE_TOOLS") != "" {
		tb.Fatalf("KILN_REQUIRE_TOOLS is set: %v", err)
	}
	tb.Skipf("skipping: %v", err)
}

// StopShared stops the shared stack, if one was started, and removes its
// directory unless KILN_KEEP_STACK is set.
func StopShared() {
	if shared.stack != nil {
		shared.stack.Stop()
	}
	if shared.dir != "" && os.Getenv("KILN_KEEP_STACK") == "" {
		os.RemoveAll(shared.dir)
	}
}
