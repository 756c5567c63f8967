//go:build tools

// Package tools pins the Tekton controller, built with
// go build github.com/tektoncd/pipeline/cmd/controller.
package tools

import _ "github.com/tektoncd/pipeline/cmd/controller"
