// Command kiln orchestrates multi-phase Linux image builds as durable
// Temporal workflows whose activities run Tekton PipelineRuns.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
		os.Exit(1)
	}
}
