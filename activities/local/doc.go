// Package local runs Tekton pipelines (tekton.dev/v1 PipelineRuns,
// Pipelines and Tasks) on this machine, without a cluster: every step is a
// process on the host. Activities puts it behind the same activity
// interface as activities/tekton (RunPipeline, CancelPipelineRun) and
// activities/logs (ArchiveLogs), so a worker registers one backend or the
// other and workflows do not change.
//
// # Steps run on the host, not in their images
//
// A step's image is ignored: its script or command runs on this machine,
// with the tools installed here, as the worker's user, in the worker's
// environment (Options.Env) plus the step's env. A script that needs a tool only its
// image has fails as it would on a host without it. The first step a
// Runner runs logs a warning saying so.
//
// # Tekton's semantics, Tekton's code
//
// Objects are Tekton's own Go types. A run is defaulted (SetDefaults) and
// validated (Validate) by Tekton itself, in the configuration of a default
// install (enable-api-fields: beta, 60-minute default timeout), and its
// Pipeline and Tasks too; tasks are ordered with Tekton's DAG package
// (dag.Build, dag.GetCandidateTasks). Variable substitution uses the
// primitives Tekton exports (the v1 types' ReplaceVariables and
// ApplyReplacements, pkg/container, pkg/substitution, pkg/workspace) in the
// order and with the rules of Tekton's reconcilers; the reconcilers' own
// helper packages (pkg/reconciler/{pipelinerun,taskrun}/resources) cannot
// be imported without some eighty more modules (remote resolution,
// sigstore, Vault and cloud KMS clients), so the logic that glues those
// primitives together is mirrored here (see subst.go and run.go). Outcomes
// are Tekton's: PipelineRun reasons Succeeded, Completed, Failed,
// PipelineRunTimeout, Cancelled, PipelineValidationFailed and
// CouldntGetPipelineResult; TaskRun reasons Succeeded, Failed,
// FailureIgnored, TaskRunTimeout, TaskRunCancelled; Tekton's skipping
// reasons; its condition messages ("\"step-build\" exited with code 1").
//
// # Support matrix
//
// Supported:
//   - PipelineRun: pipelineRef (to a Pipeline given to the Runner) or
//     pipelineSpec; params of all three types; workspaces bound to emptyDir,
//     persistentVolumeClaim, volumeClaimTemplate, configMap, secret or
//     projected (configMap and secret sources), with subPath; params in
//     their claim, ConfigMap and Secret names, items and subPath (the
//     run's, then the task's, as Tekton's reconcilers substitute them);
//     timeouts (pipeline, tasks, finally); taskRunSpecs[].timeout.
//   - Pipeline: tasks and finally; runAfter and result dependencies;
//     independent tasks in parallel, at most Options.MaxParallel at a time;
//     params with defaults (defaults may refer to params), propagated into
//     embedded task specs; $(tasks.T.results.R) with [i], [*] and .key;
//     when expressions (input, operator, values) on params, results,
//     $(workspaces.W.bound) and, in finally, $(tasks.T.status),
//     $(tasks.T.reason) and $(tasks.status); retries; timeout; onError
//     (stopAndFail, continue); pipeline results, also from finally tasks;
//     $(context.pipelineRun.name|namespace|uid), $(context.pipeline.name),
//     $(context.pipelineTask.retries).
//   - Task: taskRef (to a Task given to the Runner) or taskSpec; params of
//     all three types with defaults (also as $(inputs.params.P)); results
//     of all three types written to $(results.R.path); workspaces, optional
//     ones included ($(workspaces.W.path|bound|claim|volume)), propagated
//     to embedded specs; stepTemplate; $(context.taskRun.name|namespace|uid),
//     $(context.task.name), $(context.task.retry-count).
//   - Step: script (a shebang line is honoured as the kernel does; without
//     one the script runs with Options.ScriptShell, default /bin/sh, after
//     "set -e", as Tekton's "#!/bin/sh" preamble does); command and args,
//     with the kubelet's $(VAR) expansion; env (value, or valueFrom a
//     configMapKeyRef or secretKeyRef) and envFrom, from ConfigMaps and
//     Secrets given to the Runner; workingDir, created when missing, as
//     the container runtime does, if it lies in the run's directory or in
//     one of the task's workspaces (elsewhere on the host it must exist;
//     a step that cannot use it fails naming it); timeout; onError:
//     continue; $(steps.step-S.exitCode.path).
//   - Cancellation: Cancelled (kill everything, no finally),
//     CancelledRunFinally and StoppedRunFinally.
//
// Ignored, because they have no meaning on the host (each use is logged as
// a warning where it may matter):
//   - image and imagePullPolicy: steps run on the host, see above.
//   - computeResources, podTemplate, serviceAccountName, taskRunTemplate,
//     taskRunSpecs' pod, service account, resource and metadata settings,
//     and the affinity assistant: there are no pods.
//   - securityContext: steps run as the worker's user.
//   - A Task workspace's mountPath: the workspace is a directory under the
//     run directory and $(workspaces.W.path) points there; a script that
//     hard-codes the mount path does not find it. readOnly is not enforced.
//   - emptyDir medium and sizeLimit, volumeClaimTemplate size and access
//     modes: workspaces are plain directories.
//   - Result size limits: results are files, not termination messages.
//   - displayName, description, labels and annotations.
//
// Rejected before anything runs, with an error naming the field:
//   - matrix; pipelines in pipelines; custom tasks; taskRef kinds other
//     than Task; remote resolution (resolver on pipelineRef or taskRef).
//   - References to Pipelines, Tasks, ConfigMaps or Secrets the Runner was
//     not given.
//   - sidecars; volumes, volumeMounts and volumeDevices; StepActions
//     (steps[].ref and params); step results; step when expressions;
//     step-level (isolated) workspaces; stdoutConfig and stderrConfig;
//     Windows scripts; a step with neither command nor script (it relies
//     on its image's entrypoint, unknown on the host); env valueFrom other
//     than configMapKeyRef and secretKeyRef.
//   - csi workspaces; projected sources other than configMap and secret.
//   - spec.status set at creation (pending or cancelled runs).
//   - when expressions with cel, and every alpha feature Tekton's own
//     validation rejects in a default install (artifacts, param enums, …).
//   - tekton.dev/v1beta1 objects (Decode).
//
// # Runs on disk
//
// Everything lives under Options.Root:
//
//	runs/<run>/status.json                 the RunStatus, rewritten as the run progresses
//	runs/<run>/logs/<task>/<step>.log      each step's output (every retry of its task)
//	runs/<run>/workspaces/<ws>             volumeClaimTemplate workspaces
//	runs/<run>/workspaces/<taskrun>/<ws>   emptyDir, configMap, secret, projected
//	runs/<run>/results/<taskrun>/<result>  $(results.R.path)
//	runs/<run>/scripts/<taskrun>/<step>    step scripts
//	runs/<run>/steps/<taskrun>/step-<s>/exitCode
//	runs/<run>/work/<taskrun>              a task run's default working directory (Tekton's /workspace)
//	runs/<run>/pgroups                     the process group of every step started (see Processes)
//	volumes/<claim>                        persistentVolumeClaim workspaces, shared by all runs
//	attempts/<run>/<n>/                    attempt n of the run, kept when a later attempt replaced it
//	locks/<run>                            held while a process runs the run
//
// A step's output also goes, live, to Options.Log, each line prefixed
// "[task/step] ". An unnamed step is "unnamed-<index>".
//
// # Archived logs
//
// ArchiveLogs copies a run's step logs to S3 (Options.Archive) under the
// keys and in the format of activities/logs: one object per pipeline task
// that got a TaskRun, <prefix>logs/<path>/<task>.log, holding its steps in
// order, each introduced by a line "==> step-<name> <==". As a retried
// task's attempts append to the same step log files, the object holds
// every attempt, oldest first (the cluster archives the last attempt's
// pod). OpenTaskLog reads the same content from the disk, and ReadStatus a
// run's status, for tools such as kiln logs.
//
// # Identity, idempotency and crashes
//
// A run is its name. Running a name that already finished returns the
// recorded outcome without running anything (ErrConflict if the spec
// differs), unless RunOptions.Replace is set and the run did not succeed
// (it failed, was cancelled, timed out or failed validation): then it runs
// again. A name in progress in this process is joined; a name recorded as
// running whose process is gone (its lock is free) starts again from
// scratch in a fresh directory. Activities name runs tekton.RunName(key),
// as the cluster backend does, and RunPipeline replaces on the first
// attempt of an activity (only an earlier workflow execution can have
// left a finished run then: a re-run of a failed build) and adopts on
// later ones.
//
// Before a run starts again, in a crash's wake or to replace a failed
// run, its earlier attempt is ended and set aside: every process group
// recorded in its pgroups file that still has a process is killed
// (SIGKILL), and the restart waits until none is left (at most 10 s, then
// it fails naming the groups, and a later Run tries again). Only then is
// the directory moved to attempts/<run>/<n>, with its logs, status and
// workspaces, and the new attempt gets a fresh runs/<run>. Its status
// counts attempts (RunStatus.Attempt) and lists the restarts
// (RunStatus.Restarts: which attempt, why, in what state); Runner.Attempts
// and ReadAttempts return the earlier attempts' records, and
// OpenAttemptTaskLog their logs. tekton.Progress, what RunPipeline
// heartbeats, does not carry restarts.
//
// # Processes
//
// Every step runs in a process group of its own. When a step ends, the
// processes it left behind in its group are killed, as a container's are
// when its main process exits. Cancellation and timeouts kill the whole
// group of every running step, grandchildren included (a process that
// leaves the group with setsid escapes this). Steps also get SIGKILL if
// the worker dies; their children then live on, which is why each step's
// group is recorded in the run's pgroups file as soon as the step's
// process exists (and marked ended once its group is killed), for the
// next attempt to kill.
//
// Limits of that record: a worker that dies in the moment between
// starting a step and writing its line leaves that group unrecorded. A
// recorded group is recognised by its ID and its leader's start time;
// once the leader is gone, a group with that ID is taken for the recorded
// one, which is wrong only if all of its processes ended and an unrelated
// process of the same user got the ID for a group of its own, and left
// it, meanwhile.
package local
