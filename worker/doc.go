// Package worker holds the worker's Config and its validation, dials the
// Temporal and Kubernetes clients, and registers kiln's workflows and
// activities.
package worker
