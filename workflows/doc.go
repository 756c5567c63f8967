// Package workflows holds kiln's workflow definitions: deterministic code
// only. Workflows order the phases of a build, set each activity's timeouts
// and retry policy, and reach the outside world only through activities such
// as tekton.Activities.RunPipeline. See ../shared/STYLE.md, section 8.
package workflows
