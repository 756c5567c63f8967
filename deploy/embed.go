// Package deploy holds kiln's manifests, and embeds the demo that `kiln
// dev` runs (dev/: a worker config for the local executor, a small flavour
// set and the demo's pipelines), so the binary runs it from anywhere.
package deploy

import "embed"

// Dev is the demo: dev/kiln.yaml, dev/flavours.yaml and dev/tekton/.
//
//go:embed dev
var Dev embed.FS
