// Package bench holds kiln's end-to-end benchmarks against real servers: a
// Temporal dev server and a real kube-apiserver. Run them with `make bench`.
package bench
