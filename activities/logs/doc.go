// Package logs holds kiln's log archiving activity: ArchiveLogs copies the
// logs of a finished PipelineRun's pods, read through the API server's
// pods/log while the pods still exist, into S3, so that the logs outlive the
// pods.
//
// # Layout
//
// Each pipeline task gets one object, <prefix>logs/<path>/<task>.log, where
// the caller chooses path deterministically (for example
// build/main/1.0/image/aws-amd64/a1). The object holds the task pod's step
// containers in the pod's order, then its sidecars, each introduced by a
// header line:
//
//	==> step-build <==
//	...the container's log...
//	==> step-push <==
//	...
//
// A log that does not end with a newline gets one, so every header starts a
// line. A matrixed task, with several TaskRuns, names the TaskRun in the
// header too ("==> <taskrun>/step-build <=="). A container whose log the
// kubelet refuses (one that never started) gets a line saying why instead of
// its log.
//
// # Memory
//
// Logs are streamed: each container's log stream is opened only when the
// previous one is drained, and storage.Upload holds at most one part
// (Config.PartSize) in memory, so a 50 MiB log costs no more than a 5 MiB one.
//
// # Idempotency and errors
//
// Keys are deterministic, so a retried attempt overwrites each object with the
// same content. The activity heartbeats a Progress per task and about once a
// second while streaming. A task whose pod is gone is listed in
// ArchiveResult.Missing (or in Logs, if an earlier attempt archived it),
// which is not an error. S3's AccessDenied and NoSuchBucket are non-retryable
// (storage.ErrTypeAccessDenied), as are the API server refusing the worker's
// credentials (ErrTypeForbidden), a PipelineRun that does not exist
// (ErrTypeNotFound) and an invalid request (ErrTypeInvalidRequest); other API
// server and S3 trouble is retried.
//
// The worker's ServiceAccount needs get on pipelineruns, list on taskruns,
// and get on pods and pods/log in the build namespace.
package logs
