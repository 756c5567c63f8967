package workflows

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/kiln-build/kiln/workflows/flavour"
)

// Phase names, as they appear in progress, PipelineRun labels and keys.
const (
	PhaseBase     = "base"
	PhasePackages = "packages"
	PhaseImage    = "image"
	PhaseTest     = "test"
	// PhaseTestPlatform is the platform test, for flavours whose flavour
	// file sets test-platform: true.
	PhaseTestPlatform = "test-platform"
	PhasePublish      = "publish"
)

// PipelineConfig is how one phase runs its pipeline.
type PipelineConfig struct {
	// PipelineRef names a Pipeline in the build namespace. Exactly one of
	// PipelineRef and PipelineSpec is set.
	PipelineRef string `json:"pipelineRef,omitempty"`
	// PipelineSpec is an inline pipeline; the worker reads it from the file
	// the config names.
	PipelineSpec *pipelinev1.PipelineSpec `json:"pipelineSpec,omitempty"`
	// Params are the PipelineRun's string params, as text/template
	// templates over TemplateData: "{{.Commit}}", "{{.Flavour.Platform}}",
	// "{{.Results.base.digest}}".
	Params map[string]string `json:"params,omitempty"`
	// Labels are added to the PipelineRun, as templates like Params; kiln's
	// own kiln.dev/ labels win. Values must render to valid label values.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are added to the PipelineRun, as templates like Params;
	// kiln's own win.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Workspaces bind the pipeline's workspaces.
	Workspaces []pipelinev1.WorkspaceBinding `json:"workspaces,omitempty"`
	// ServiceAccountName runs the pipeline's pods.
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Timeout bounds one PipelineRun. Optional: default 1h.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Attempts is how many fresh PipelineRuns to try when the pipeline
	// fails. Optional: default 1.
	Attempts int `json:"attempts,omitempty"`
	// Backoff is the wait before the second attempt, doubled for each
	// further one. Optional: default 30s.
	Backoff time.Duration `json:"backoff,omitempty"`
}

// Plan is what a build runs: the worker's configuration for each phase,
// with the flavours expanded. The Build workflow gets it from the Plan
// activity, so the history records exactly what ran.
type Plan struct {
	// Namespace of the PipelineRuns.
	Namespace string `json:"namespace"`
	// Base, Packages, Image and Test configure those phases; a nil phase is
	// not configured and is skipped.
	Base     *PipelineConfig `json:"base,omitempty"`
	Packages *PipelineConfig `json:"packages,omitempty"`
	Image    *PipelineConfig `json:"image,omitempty"`
	Test     *PipelineConfig `json:"test,omitempty"`
	// TestPlatform configures the platform test (flavours with
	// test-platform: true).
	TestPlatform *PipelineConfig `json:"testPlatform,omitempty"`
	// Publish configures the publish pipeline per platform.
	Publish map[string]PipelineConfig `json:"publish,omitempty"`
	// Parallelism bounds how many flavours build at once. Optional:
	// default 4.
	Parallelism int `json:"parallelism,omitempty"`
	// Flavours are the request's flavours, expanded.
	Flavours []flavour.Flavour `json:"flavours"`
	// Problem is what the plan found wrong with the request (an unknown
	// flavour set), so that the build fails naming it, and still notifies.
	Problem string `json:"problem,omitempty"`
	// DashboardURL is the Tekton Dashboard link template, if any.
	DashboardURL string `json:"dashboardURL,omitempty"`
	// HeartbeatTimeout is how long a RunPipeline attempt may go without a
	// heartbeat before Temporal retries it on another worker, which
	// re-attaches to the run. Optional: default 1m.
	HeartbeatTimeout time.Duration `json:"heartbeatTimeout,omitempty"`
	// ApprovalTimeout is how long a release build waits for approval.
	// Optional: default 72h.
	ApprovalTimeout time.Duration `json:"approvalTimeout,omitempty"`
	// Notify is set when the workers can send notifications (config:
	// smtp); NotifySuccess also mails about successful builds (release
	// builds always are); NotifyWindow is how long a notification may keep
	// retrying (default 24h).
	Notify        bool          `json:"notify,omitempty"`
	NotifySuccess bool          `json:"notifySuccess,omitempty"`
	NotifyWindow  time.Duration `json:"notifyWindow,omitempty"`
	// NotifyChat is set when the workers also post to a chat webhook.
	NotifyChat bool `json:"notifyChat,omitempty"`
	// OnFailure is the default of BuildRequest.OnFailure.
	OnFailure string `json:"onFailure,omitempty"`
	// ResumeWindow is how long a failed build waits for an operator.
	// Optional: default 24h.
	ResumeWindow time.Duration `json:"resumeWindow,omitempty"`
	// Storage is set when the workers have the S3 staging and release
	// buckets (config: storage): flavours then verify and promote their
	// artifacts and write release manifests, and runs' logs are archived.
	Storage *StoragePlan `json:"storage,omitempty"`
	// AWS is set when the workers publish AWS images themselves (config:
	// publishing.aws) rather than through a publish pipeline.
	AWS *AWSPlan `json:"aws,omitempty"`
	// S3Only lists the platforms whose images are published by promoting
	// them to the release bucket alone (config: publishing.s3Only).
	S3Only []string `json:"s3Only,omitempty"`
	// PackagesCheck is how a build checks that its PackagesVersion exists
	// (config: packages.check). Nil: the version is not checked.
	PackagesCheck *PackagesCheck `json:"packagesCheck,omitempty"`
}

// StoragePlan is the part of the storage configuration builds see.
type StoragePlan struct {
	StagingBucket string `json:"stagingBucket"`
	ReleaseBucket string `json:"releaseBucket"`
	Prefix        string `json:"prefix,omitempty"`
	// ArchiveLogs archives every PipelineRun's logs to S3 after it ends.
	ArchiveLogs bool `json:"archiveLogs,omitempty"`
}

// AWSPlan is how the workers publish AWS images.
type AWSPlan struct {
	// Region is where the snapshot is imported and the image registered;
	// the raw image's bucket must be in it.
	Region string `json:"region"`
	// Regions are the regions the image is copied to. Empty: every region
	// enabled for the account.
	Regions []string `json:"regions,omitempty"`
	// Public makes the images public.
	Public bool `json:"public,omitempty"`
	// Bucket holds the raw image. Optional: the release bucket.
	Bucket string `json:"bucket,omitempty"`
	// RoleName is VM Import's service role. Optional: vmimport.
	RoleName string `json:"roleName,omitempty"`
	// BootMode is uefi, legacy-bios or uefi-preferred. Optional.
	BootMode string `json:"bootMode,omitempty"`
	// NamePrefix starts every image name. Optional: gardenlinux.
	NamePrefix string `json:"namePrefix,omitempty"`
	// Tags are put on every image and snapshot.
	Tags map[string]string `json:"tags,omitempty"`
}

// publisher says how the platform's images are published: "aws" (the
// workers' own AWS publishing), "pipeline", "s3" (promotion alone), or ""
// when nothing publishes them.
func (p Plan) publisher(platform string) string {
	switch {
	case platform == "aws" && p.AWS != nil && p.Storage != nil:
		return "aws"
	case p.Publish[platform].PipelineRef != "" || p.Publish[platform].PipelineSpec != nil:
		return "pipeline"
	case slices.Contains(p.S3Only, platform):
		return "s3"
	}
	return ""
}

// checkTargets reports, before anything runs, a publish target with
// platforms that nothing publishes, naming each and the fix.
func (p Plan) checkTargets(in BuildRequest) error {
	var errs []error
	if !in.Has(TargetPublish) {
		return errors.Join(errs...)
	}
	missing := map[string][]string{}
	var platforms []string
	for _, f := range p.Flavours {
		if !f.Publish || p.publisher(f.Platform) != "" {
			continue
		}
		if missing[f.Platform] == nil {
			platforms = append(platforms, f.Platform)
		}
		missing[f.Platform] = append(missing[f.Platform], f.Name())
	}
	for _, pl := range platforms {
		how := "phases.publish." + pl
		if pl == "aws" {
			how += ", publishing.aws"
		}
		errs = append(errs, fmt.Errorf("publish: no publisher for platform %s (flavours %s); configure %s or list it in publishing.s3Only, or drop the publish target",
			pl, strings.Join(missing[pl], ", "), how))
	}
	return errors.Join(errs...)
}

// PlanRequest is the input of the Plan activity.
type PlanRequest struct {
	FlavourSet string            `json:"flavourSet,omitempty"`
	Flavours   []flavour.Flavour `json:"flavours,omitempty"`
}

// ActivityPlan is the name of the activity that returns a build's Plan
// (activities/plan). Workflows refer to it by name: that package imports
// this one.
const ActivityPlan = "Plan"

// TemplateData is what param templates see.
type TemplateData struct {
	BuildID string
	Repo    string
	Branch  string
	Commit  string
	Version string
	// PackagesVersion is the request's packages version (kiln run
	// --packages-version), empty when the build runs the packages phase.
	PackagesVersion string
	// Flavour is the flavour of the image, test and publish phases (for
	// publish: the first flavour of the platform).
	Flavour  flavour.Flavour
	Platform string
	Params   map[string]string
	// Results holds earlier phases' pipeline results: .Results.base.digest.
	Results map[string]map[string]string
	// Artifacts maps the flavour's promoted files to their s3:// URIs in the
	// publish phase, by name and by suffix: {{index .Artifacts ".raw"}}.
	Artifacts map[string]string
	// Manifest is the flavour's release manifest's key, in the publish
	// phase.
	Manifest string
}

// Render renders the params of c over d, sorted by name.
func (c PipelineConfig) Render(d TemplateData) (pipelinev1.Params, error) {
	m, err := render("params", c.Params, d)
	if err != nil {
		return nil, err
	}
	var out pipelinev1.Params
	for _, n := range sortedKeys(m) {
		out = append(out, pipelinev1.Param{Name: n, Value: *pipelinev1.NewStructuredValues(m[n])})
	}
	return out, nil
}

// RenderLabels renders the labels of c over d.
func (c PipelineConfig) RenderLabels(d TemplateData) (map[string]string, error) {
	return render("labels", c.Labels, d)
}

// RenderAnnotations renders the annotations of c over d.
func (c PipelineConfig) RenderAnnotations(d TemplateData) (map[string]string, error) {
	return render("annotations", c.Annotations, d)
}

// templateFuncs are the functions param templates may call besides
// text/template's own: join, as in {{join .Flavour.Features ","}}.
var templateFuncs = template.FuncMap{"join": strings.Join}

func render(field string, templates map[string]string, d TemplateData) (map[string]string, error) {
	out := make(map[string]string, len(templates))
	for _, n := range sortedKeys(templates) {
		t, err := template.New(n).Option("missingkey=error").Funcs(templateFuncs).Parse(templates[n])
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", field, n, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return nil, fmt.Errorf("%s.%s: %w", field, n, err)
		}
		out[n] = b.String()
	}
	return out, nil
}

// Validate checks c, naming fields under path.
func (c PipelineConfig) Validate(path string) error {
	var errs []error
	if (c.PipelineRef == "") == (c.PipelineSpec == nil) {
		errs = append(errs, fmt.Errorf("%s: exactly one of pipelineRef and pipelineFile is required", path))
	}
	if c.Attempts < 0 {
		errs = append(errs, fmt.Errorf("%s.attempts: %d is negative", path, c.Attempts))
	}
	if c.Timeout < 0 || c.Backoff < 0 {
		errs = append(errs, fmt.Errorf("%s: timeout and backoff must not be negative", path))
	}
	sample := sampleData()
	for _, f := range []struct {
		name string
		m    map[string]string
	}{{"params", c.Params}, {"labels", c.Labels}, {"annotations", c.Annotations}} {
		for _, n := range sortedKeys(f.m) {
			t, err := template.New(n).Funcs(templateFuncs).Parse(f.m[n])
			if err == nil {
				err = t.Execute(&bytes.Buffer{}, sample)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s.%s: %v", path, f.name, n, err))
			}
		}
	}
	return errors.Join(errs...)
}

// sampleData is a build's template data, for checking templates.
func sampleData() TemplateData {
	return TemplateData{
		BuildID: "build/main/1.0", Repo: "https://git.example/os", Branch: "main", Commit: "0123456789abcdef",
		Version: "1.0", PackagesVersion: "1.0", Flavour: flavour.Flavour{Platform: "aws", Arch: "amd64"}, Platform: "aws",
		Params: map[string]string{}, Results: map[string]map[string]string{},
		Artifacts: map[string]string{}, Manifest: "meta/singles/aws-amd64-1.0-0123456789abcdef",
	}
}

// SampleParams are c's params with placeholder values, for checking the
// pipeline they feed before any build runs.
func (c PipelineConfig) SampleParams() pipelinev1.Params {
	var out pipelinev1.Params
	for _, n := range sortedKeys(c.Params) {
		out = append(out, pipelinev1.Param{Name: n, Value: *pipelinev1.NewStructuredValues("sample")})
	}
	return out
}

// Validate checks the plan's phases.
func (p Plan) Validate() error {
	var errs []error
	if p.Namespace == "" {
		errs = append(errs, errors.New("namespace: required"))
	}
	for _, ph := range []struct {
		name string
		c    *PipelineConfig
	}{{"phases.base", p.Base}, {"phases.packages", p.Packages}, {"phases.image", p.Image}, {"phases.test", p.Test}, {"phases.testPlatform", p.TestPlatform}} {
		if ph.c != nil {
			errs = append(errs, ph.c.Validate(ph.name))
		}
	}
	for _, platform := range sortedKeys(p.Publish) {
		errs = append(errs, p.Publish[platform].Validate("phases.publish."+platform))
	}
	if p.PackagesCheck != nil {
		errs = append(errs, p.PackagesCheck.Validate("packages.check"))
	}
	if p.Parallelism < 0 {
		errs = append(errs, fmt.Errorf("parallelism: %d is negative", p.Parallelism))
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// labelValue makes s a valid label value: characters outside
// [A-Za-z0-9._-] become ".", and a value longer than 63 keeps its first 54
// characters and a hash.
func labelValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
		if !ok {
			b[i] = '.'
		}
	}
	v := strings.Trim(string(b), ".-_")
	if len(v) > 63 {
		v = strings.Trim(v[:54], ".-_") + "-" + fnv32(s)
	}
	return v
}

func fnv32(s string) string {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return fmt.Sprintf("%08x", h)
}
