// Package tekton holds kiln's Tekton activities: RunPipeline submits one
// phase's PipelineRun (tekton.dev/v1) and awaits it; CancelPipelineRun stops
// one.
//
// # Naming and identity
//
// A PipelineRun's name derives from the request's Key alone (RunName): a
// readable prefix of at most 30 characters and 8 hex characters of the key's
// SHA-256, 39 characters in all. Tekton names TaskRuns "<pipelinerun>-<task>"
// and Pods "<taskrun>-pod", so tasks named with up to 19 characters keep every
// derived name within Kubernetes' 63-character label limit without Tekton
// hashing them. The same key always yields the same name: a retried activity,
// or a worker that restarted, finds the run it created before.
//
// Every run carries the labels LabelManagedBy=kiln, LabelKey (a hash of the
// key) and LabelSpec (a hash of the request's content), plus the caller's
// labels, and the annotation AnnotationKey with the full key. When Create
// answers AlreadyExists, the existing run is adopted only if its managed-by,
// key and spec labels match; otherwise RunPipeline fails with the
// non-retryable ErrTypeConflict and names the differing label.
//
// # Awaiting
//
// A Watcher keeps one label-filtered PipelineRun informer and one TaskRun
// informer per namespace for the whole worker process, and fans their events
// out to waiters by name. A waiter is notified through a one-slot channel and
// reads the latest state from the informer's cache, so a waiter costs a map
// entry and a channel however many updates arrive. Registering a waiter checks
// the cache first, so a run that finished while the worker was down is seen at
// once. When a watch drops, client-go's reflector relists and resumes, and the
// relist is diffed against the cache, so no completion is lost. RunPipeline
// heartbeats from the moment it registers, while a namespace's cache syncs
// too.
//
// # Cancellation and errors
//
// When the activity is cancelled (the SDK delivers that through heartbeats),
// RunPipeline patches spec.status to the configured mode (Cancelled by default,
// or CancelledRunFinally, StoppedRunFinally) from a context of its own and
// returns the cancellation. A worker shutdown does not cancel the run: the
// retried attempt re-attaches to it through the heartbeat details.
//
// Errors are classified where they occur. A run whose Succeeded condition is
// False yields a non-retryable ApplicationError whose type is Tekton's reason
// (Failed, PipelineRunTimeout, Cancelled, CouldntGetPipeline, ...) with a
// Failure as details. A spec rejected by Tekton's own validation or by the API
// server (400, 422) yields ErrTypeInvalidSpec naming the field. API-server
// unavailability, throttling and 5xx answers are retryable.
//
// The informers' own LISTs and WATCHes are classified alike. One the API
// server refuses (Forbidden, Unauthorized: the Role lacks list or watch on
// pipelineruns or taskruns) fails RunPipeline at once with ErrTypeForbidden,
// naming the verb, the resource, the namespace and the fix. Any other
// failure (connection refused, 5xx, a webhook that is down) is retried by
// client-go, and RunPipeline returns it as retryable only once it has lasted
// the Watcher's grace period (SetWatchErrorGrace, default a minute).
//
// Whether a failed run deserves a fresh run (the workflow's next attempt of
// a phase) is RerunFor's allow-list, over the run's reason and its failed
// TaskRuns' (RerunForError): the pipeline's own failure, timeouts, image
// pulls and the pods the cluster could not create or keep. Spec, validation
// and resolution errors, cancellations, kiln's own error types and reasons
// the list does not know never get one.
package tekton
