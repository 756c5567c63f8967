// Package local runs Tekton pipelines (tekton.dev/v1 PipelineRuns,
// Pipelines and Tasks) on this machine, without a cluster: every step is a
// process on the host, in namespaces of its own that give it a pod's file
// system. Activities puts it behind the same activity
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
// # Steps see what a pod sees (Options.Isolation)
//
// With IsolationNamespaces, the default, every step and sidecar runs in a
// user, a mount and a PID namespace of its own; no root is needed. Its
// file system is built as a container runtime builds a pod's:
//   - /workspace is the task run's own directory (Tekton's default working
//     directory), /tekton/home (also HOME, unless the step sets it) and
//     /tekton/results are its home and results directories,
//     /tekton/steps (exit codes) and /tekton/scripts are read-only;
//   - each workspace is at its mountPath (default /workspace/<name>), or
//     at a step's own mountPath for a step-level workspace, mounted in
//     that step only; a readOnly workspace, and every configMap, secret
//     and projected one, is read-only;
//   - a Task's volumes are at their volumeMounts (subPath and readOnly
//     honoured; configMap, secret and projected volumes read-only);
//   - the host's other top-level directories are overlays whose writes
//     go to a tmpfs that dies with the step: like a container's root file
//     system, writable and ephemeral; nothing a step writes there reaches
//     the host or the next step. The mounts under them are bound again,
//     read-only. Where the kernel has no overlays in user namespaces
//     (before Linux 5.11, or tmpfs without user xattrs, before 6.6) they
//     are read-only instead, and a mount path under them that the host
//     lacks cannot be created: the step fails naming it;
//   - /tmp, /var/tmp, /dev/shm are private tmpfs; /dev holds the usual
//     devices; /proc is the namespace's own; Options.Root is hidden, so a
//     step cannot read other runs, or an earlier attempt, through the
//     host's paths.
//
// $(workspaces.W.path), $(results.R.path) and
// $(steps.step-S.exitCode.path) are these paths, as Tekton substitutes
// them. A step runs as root of its user namespace, which is the worker's
// user on the host: what it creates in workspaces is the worker's, and
// host files owned by other users are not its own. The network is the
// host's, so sidecars and steps share localhost. Each step is the only
// child of its namespace's PID 1: when the step exits, or the worker dies,
// the kernel kills everything left in the namespace, setsid or not.
//
// Each step starts by re-executing the worker's binary into the new
// namespaces (internal/nsinit, whose init function takes over any binary
// that links this package), which costs some tens of milliseconds per
// step (a Go binary of this size starting), against about 2 ms without.
// NewRunner checks once that user namespaces work and refuses, naming
// the sysctls to set (kernel.unprivileged_userns_clone,
// user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns),
// where they do not.
//
// With IsolationNone, steps run on the host as they are: in directories
// under Options.Root, with those host paths in the variables above, able
// to write wherever the worker's user may; a workspace's mountPath is
// ignored and readOnly not enforced, and volumes, volumeMounts, sidecars
// and step-level workspaces are refused. Two runs that write the same
// absolute path then collide.
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
//     a step that cannot use it fails naming it; in namespaces, the
//     container's rules); timeout; onError: continue;
//     $(steps.step-S.exitCode.path); volumeMounts and step-level
//     workspaces (namespaces only).
//   - Task volumes: emptyDir, configMap, secret and projected (configMap
//     and secret sources), with params in their names and items
//     (namespaces only).
//   - Sidecars with a command or script (namespaces only): each runs beside
//     the steps, started before them and killed, with what it started,
//     when they end; its output goes to logs/<task>/sidecar-<name>.log.
//     Steps do not wait for a sidecar to be ready, and readiness probes
//     are ignored.
//   - Cancellation: Cancelled (kill everything, no finally),
//     CancelledRunFinally and StoppedRunFinally.
//
// Ignored, because they have no meaning on the host (each use is logged as
// a warning where it may matter):
//   - image and imagePullPolicy: steps run on the host, see above.
//   - computeResources, podTemplate, serviceAccountName, taskRunTemplate,
//     taskRunSpecs' pod, service account, resource and metadata settings,
//     and the affinity assistant: there are no pods.
//   - securityContext: steps run as the worker's user (root of their user
//     namespace).
//   - With isolation none only: a Task workspace's mountPath (the
//     workspace is a directory under the run directory and
//     $(workspaces.W.path) points there; a script that hard-codes the
//     mount path does not find it) and readOnly.
//   - emptyDir medium and sizeLimit, volumeClaimTemplate size and access
//     modes, volumes' defaultMode: workspaces and volumes are plain
//     directories.
//   - A sidecar's image, probes, ports, lifecycle and resources.
//   - Result size limits: results are files, not termination messages.
//   - displayName, description, labels and annotations.
//
// Rejected before anything runs, with an error naming the field:
//   - matrix; pipelines in pipelines; custom tasks; taskRef kinds other
//     than Task; remote resolution (resolver on pipelineRef or taskRef).
//   - References to Pipelines, Tasks, ConfigMaps or Secrets the Runner was
//     not given.
//   - With isolation none: sidecars, volumes, volumeMounts and
//     step-level (isolated) workspaces.
//   - Volumes other than emptyDir, configMap, secret and projected
//     (hostPath, persistentVolumeClaim, …); volumeMounts naming no volume,
//     with subPathExpr or mountPropagation; volumeDevices; sidecars with
//     neither command nor script.
//   - StepActions (steps[].ref and params); step results; step when
//     expressions; stdoutConfig and stderrConfig; Windows scripts; a step
//     with neither command nor script (it relies on its image's
//     entrypoint, unknown on the host); env valueFrom other than
//     configMapKeyRef and secretKeyRef.
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
//	runs/<run>/home/<taskrun>              /tekton/home (namespaces)
//	runs/<run>/volumes/<taskrun>/<volume>  a Task's volumes (namespaces)
//	runs/<run>/logs/<task>/sidecar-<s>.log a sidecar's output
//	root                                   where each step's namespaces mount their root
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
// group of every running step, grandchildren included. Steps also get
// SIGKILL if the worker dies. In namespaces the group's leader is the
// namespace's PID 1, whose death kills every process in the namespace;
// with isolation none a process that leaves the group with setsid
// escapes this.
package local
