package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"sigs.k8s.io/yaml"

	"github.com/kiln-build/kiln/activities/git"
	"github.com/kiln-build/kiln/activities/local"
	"github.com/kiln-build/kiln/activities/notify"
	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/internal/strictyaml"
	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// Config is the worker's configuration, read from a YAML file (kiln.yaml)
// with KILN_* environment overrides. The Temporal connection is not part of
// it: it comes from the SDK's envconfig (TEMPORAL_ADDRESS,
// TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS settings, or a profile file).
type Config struct {
	// Namespace is the Kubernetes namespace of the PipelineRuns. Required.
	// Env: KILN_NAMESPACE.
	Namespace string `json:"namespace"`
	// TaskQueue is the Temporal task queue. Optional: default "kiln".
	// Env: KILN_TASK_QUEUE.
	TaskQueue string `json:"taskQueue,omitempty"`
	// Kubeconfig is a kubeconfig file. Optional: default client-go's rules,
	// $KUBECONFIG, then ~/.kube/config, then in-cluster. Env: KILN_KUBECONFIG.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Flavours is the Garden Linux flavour file (2021 or 2024 format),
	// relative to the config file. Optional: then every request must list
	// its flavours. Env: KILN_FLAVOURS.
	Flavours string `json:"flavours,omitempty"`
	// Parallelism bounds the flavours a build runs at once. Optional:
	// default 4. Env: KILN_PARALLELISM.
	Parallelism int `json:"parallelism,omitempty"`
	// MaxConcurrentActivities bounds the activities this worker runs at
	// once; awaiting PipelineRuns is cheap, so it can be high. Optional:
	// default 1000.
	MaxConcurrentActivities int `json:"maxConcurrentActivities,omitempty"`
	// CancelMode is how a cancelled build stops its PipelineRuns:
	// Cancelled, CancelledRunFinally or StoppedRunFinally. Optional:
	// default Cancelled.
	CancelMode string `json:"cancelMode,omitempty"`
	// DashboardURL is a Tekton Dashboard link template over .Namespace and
	// .Name. Optional.
	DashboardURL string `json:"dashboardURL,omitempty"`
	// HeartbeatTimeout is how long a PipelineRun's awaiting activity may go
	// silent (a worker killed) before another worker takes over and
	// re-attaches. Optional: default 1m.
	HeartbeatTimeout Duration `json:"heartbeatTimeout,omitzero"`
	// ApprovalTimeout is how long a release build waits for approve or
	// reject before failing with ApprovalTimeout. Optional: default 72h.
	ApprovalTimeout Duration `json:"approvalTimeout,omitzero"`
	// OnFailure is what a build does when a phase or flavour has used all
	// its attempts, unless the request says: fail (default) or wait for an
	// operator (kiln retry).
	OnFailure string `json:"onFailure,omitempty"`
	// ResumeWindow is how long a failed build waits for an operator.
	// Optional: default 24h.
	ResumeWindow Duration `json:"resumeWindow,omitzero"`
	// Notifications configures mail. Optional: without it, builds do not
	// notify (and say so in the worker log).
	Notifications *Notifications `json:"notifications,omitempty"`
	// Storage configures the S3 buckets for artifacts, releases and logs.
	// Optional: without it, builds neither verify nor promote artifacts,
	// write no manifests and archive no logs.
	Storage *Storage `json:"storage,omitempty"`
	// Publishing configures AWS publishing and the platforms published by
	// promotion alone. Other platforms publish through
	// phases.publish.<platform>.
	Publishing *Publishing `json:"publishing,omitempty"`
	// Executor runs the phases' pipelines: tekton (default) creates
	// PipelineRuns on the cluster; local runs their steps as processes on
	// this machine (activities/local), for a laptop without a cluster.
	Executor string `json:"executor,omitempty"`
	// Local configures the local executor.
	Local *LocalExecutor `json:"local,omitempty"`
	// Packages configures how a build run with --packages-version checks
	// that the version exists. Optional: without it, the version is not
	// checked, and the packages phase's progress says so.
	Packages *Packages `json:"packages,omitempty"`
	// Phases configures each phase's pipeline. A phase left out is skipped.
	Phases Phases `json:"phases"`

	// StepOutput receives the local executor's step output, live, each
	// line prefixed "[task/step] ". Not part of the file. Optional.
	StepOutput io.Writer `json:"-"`

	dir string // the config file's directory, for relative paths
}

// Executors.
const (
	ExecutorTekton = "tekton"
	ExecutorLocal  = "local"
)

// LocalExecutor configures the local executor.
type LocalExecutor struct {
	// Dir holds the runs: their status, step logs, workspaces and results
	// (<dir>/runs/<pipelinerun>), relative to the config file. Optional:
	// "local" beside the config file.
	Dir string `json:"dir,omitempty"`
	// Pipelines are YAML files, or directories of them, with the Pipelines
	// and Tasks that pipelineRef and taskRef name, relative to the config
	// file. Optional.
	Pipelines []string `json:"pipelines,omitempty"`
	// MaxParallel bounds the tasks running at once on this machine.
	// Optional: the number of CPUs.
	MaxParallel int `json:"maxParallel,omitempty"`
	// Isolation is how steps are kept from the host: "namespaces" (each
	// step in user, mount and PID namespaces with a pod's paths) or
	// "none" (on the host, unisolated). Optional: "namespaces".
	Isolation string `json:"isolation,omitempty"`
}

// IsLocal reports whether the config runs pipelines on this machine.
func (c Config) IsLocal() bool { return c.Executor == ExecutorLocal }

// LocalDir is the local executor's directory.
func (c Config) LocalDir() string {
	if c.Local != nil && c.Local.Dir != "" {
		return c.path(c.Local.Dir)
	}
	return c.path("local")
}

// Notifications configures how builds notify their people.
type Notifications struct {
	// SMTP is the mail relay. Its password comes from passwordFile or
	// passwordEnv, never from this file.
	SMTP SMTP `json:"smtp"`
	// Handles is a YAML file mapping CODEOWNERS handles (@user, @org/team)
	// to addresses, relative to the config file.
	Handles string `json:"handles,omitempty"`
	// Templates is a directory whose subject.tmpl, mail.txt.tmpl or
	// mail.html.tmpl override the built-in ones.
	Templates string `json:"templates,omitempty"`
	// TemporalURL links a build in the Temporal UI: a template over
	// .Namespace and .WorkflowID.
	TemporalURL string `json:"temporalURL,omitempty"`
	// Namespace is the Temporal namespace for TemporalURL. Optional: default.
	Namespace string `json:"namespace,omitempty"`
	// OnSuccess also mails about successful builds (releases always are).
	OnSuccess bool `json:"onSuccess,omitempty"`
	// Window is how long a notification keeps retrying while the relay is
	// down. Optional: 24h.
	Window Duration `json:"window,omitzero"`
	// Chat also posts each notification to a chat webhook.
	Chat *Chat `json:"chat,omitempty"`
}

// Chat is the chat channel: a Slack-compatible or DingTalk payload posted
// to a webhook URL read from a file or an environment variable (it holds a
// token), or a Matrix room on a homeserver, with an access token read from
// a file or an environment variable.
type Chat struct {
	Format  string `json:"format"`
	URLFile string `json:"urlFile,omitempty"`
	URLEnv  string `json:"urlEnv,omitempty"`
	// Homeserver, Room and TokenFile or TokenEnv are for matrix.
	Homeserver string   `json:"homeserver,omitempty"`
	Room       string   `json:"room,omitempty"`
	TokenFile  string   `json:"tokenFile,omitempty"`
	TokenEnv   string   `json:"tokenEnv,omitempty"`
	Timeout    Duration `json:"timeout,omitzero"`
}

func (ch *Chat) config(c Config) notify.ChatConfig {
	return notify.ChatConfig{Format: ch.Format, URLFile: c.path(ch.URLFile), URLEnv: ch.URLEnv,
		Homeserver: ch.Homeserver, Room: ch.Room, TokenFile: c.path(ch.TokenFile), TokenEnv: ch.TokenEnv, Timeout: ch.Timeout.Duration}
}

// SMTP is notify.SMTPConfig as the config file writes it.
type SMTP struct {
	// Host is the relay; its TLS certificate must be valid for this name.
	Host string `json:"host"`
	// Port. Optional: 465 for implicit TLS, 587 for STARTTLS, 25 for none.
	Port int `json:"port,omitempty"`
	// TLS: starttls (default: required, nothing goes out without it),
	// implicit (SMTPS), starttls-optional (plain SMTP if the relay offers
	// no STARTTLS, and then no login), or none (only for a relay on
	// localhost).
	TLS string `json:"tls,omitempty"`
	// TLSCAFile is a PEM file of the CA certificates that sign the relay's
	// certificate, trusted instead of the system's, relative to the config
	// file. Optional: the system's roots.
	TLSCAFile string `json:"tlsCAFile,omitempty"`
	// Username logs in to the relay (over TLS only). Optional.
	Username string `json:"username,omitempty"`
	// PasswordFile (relative to the config file; trailing newlines
	// dropped) or PasswordEnv (the name of the worker's environment
	// variable) holds the password; one of them with Username. The
	// password is read at start and never logged.
	PasswordFile string `json:"passwordFile,omitempty"`
	PasswordEnv  string `json:"passwordEnv,omitempty"`
	From         string `json:"from"`
	// Timeout bounds connecting and each command ("30s").
	Timeout Duration `json:"timeout,omitzero"`
}

func (s SMTP) config(c Config) notify.SMTPConfig {
	return notify.SMTPConfig{Host: s.Host, Port: s.Port, TLS: s.TLS, TLSCAFile: c.path(s.TLSCAFile), Username: s.Username,
		PasswordFile: c.path(s.PasswordFile), PasswordEnv: s.PasswordEnv, From: s.From, Timeout: s.Timeout.Duration}
}

// Phases configures the pipelines of a build's phases.
type Phases struct {
	Base     *PhaseConfig `json:"base,omitempty"`
	Packages *PhaseConfig `json:"packages,omitempty"`
	Image    *PhaseConfig `json:"image,omitempty"`
	Test     *PhaseConfig `json:"test,omitempty"`
	// TestPlatform is the platform test, run only for flavours whose
	// flavour file sets test-platform: true (Garden Linux's platform
	// tests, which boot the image on its cloud).
	TestPlatform *PhaseConfig           `json:"testPlatform,omitempty"`
	Publish      map[string]PhaseConfig `json:"publish,omitempty"`
}

// PhaseConfig is one phase's pipeline.
type PhaseConfig struct {
	// PipelineRef names a Pipeline in the namespace; PipelineFile is a YAML
	// file holding a tekton.dev/v1 Pipeline (or a bare PipelineSpec),
	// relative to the config file, inlined into each PipelineRun. Exactly one
	// is required.
	PipelineRef  string `json:"pipelineRef,omitempty"`
	PipelineFile string `json:"pipelineFile,omitempty"`
	// Labels are added to the PipelineRun; values are templates like
	// Params.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are added to the PipelineRun; values are templates like
	// Params.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Params are text/template templates over the build: {{.Commit}},
	// {{.Branch}}, {{.Version}}, {{.PackagesVersion}}, {{.Flavour.Platform}}, {{.Flavour.Arch}},
	// {{.Params.name}}, {{.Results.base.digest}}, and the function join:
	// {{join .Flavour.Features ","}}.
	Params map[string]string `json:"params,omitempty"`
	// Workspaces bind the pipeline's workspaces, as in a PipelineRun.
	Workspaces []pipelinev1.WorkspaceBinding `json:"workspaces,omitempty"`
	// ServiceAccountName runs the pipeline's pods.
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Timeout bounds one PipelineRun ("90m"). Optional: default 1h.
	Timeout Duration `json:"timeout,omitzero"`
	// Attempts is how many fresh PipelineRuns a failing pipeline gets.
	// Optional: default 1.
	Attempts int `json:"attempts,omitempty"`
	// Backoff is the wait before the second attempt, doubled after.
	// Optional: default 30s.
	Backoff Duration `json:"backoff,omitzero"`
}

// Duration is a time.Duration written as "90s", "1h30m".
type Duration struct{ time.Duration }

// UnmarshalJSON reads a Go duration string. Its errors say what is
// wanted; the config's decoder adds the field path and line.
func (d *Duration) UnmarshalJSON(b []byte) error {
	const want = "want a duration like 90s, 10m or 1h30m (units ns, us, ms, s, m, h)"
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n json.Number
		if json.Unmarshal(b, &n) == nil {
			return fmt.Errorf("%s, got %s: a number needs its unit", want, b)
		}
		return fmt.Errorf("%s, got %s", want, b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s, got %q", want, s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// LoadConfig reads the config file at path (YAML, or JSON) and applies the
// KILN_* environment overrides from getenv (os.Getenv in main). The file is
// decoded strictly (internal/strictyaml): field names as the json tags
// write them, case included, each value of its field's type; every
// problem is reported at once, one line each, as
// "path:line:column: field.path: what is wrong". It does not validate:
// call Validate.
func LoadConfig(path string, getenv func(string) string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := strictyaml.Unmarshal(path, data, &c); err != nil {
		return c, err
	}
	c.dir = filepath.Dir(path)
	if v := getenv("KILN_NAMESPACE"); v != "" {
		c.Namespace = v
	}
	if v := getenv("KILN_TASK_QUEUE"); v != "" {
		c.TaskQueue = v
	}
	if v := getenv("KILN_KUBECONFIG"); v != "" {
		c.Kubeconfig = v
	}
	if v := getenv("KILN_FLAVOURS"); v != "" {
		c.Flavours = v
	}
	if v := getenv("KILN_PARALLELISM"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return c, fmt.Errorf("KILN_PARALLELISM: %q is not a number", v)
		}
		c.Parallelism = n
	}
	return c, nil
}

func (c Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// TaskQueueName returns the task queue, defaulted.
func (c Config) TaskQueueName() string {
	if c.TaskQueue == "" {
		return workflows.TaskQueue
	}
	return c.TaskQueue
}

// Validate reports every problem at once, each with its field path, by
// building the plan and reading the files the config names.
func (c Config) Validate() error {
	_, _, err := c.Plan()
	return err
}

// Plan builds the workflows.Plan template from the config (reading pipeline
// files) and parses the flavour file. It reports every problem at once.
func (c Config) Plan() (workflows.Plan, *flavour.File, error) {
	var errs []error
	p := workflows.Plan{Namespace: c.Namespace, Parallelism: c.Parallelism, DashboardURL: c.DashboardURL, HeartbeatTimeout: c.HeartbeatTimeout.Duration, ApprovalTimeout: c.ApprovalTimeout.Duration,
		OnFailure: c.OnFailure, ResumeWindow: c.ResumeWindow.Duration}
	if n := c.Notifications; n != nil {
		p.Notify, p.NotifySuccess, p.NotifyWindow = true, n.OnSuccess, n.Window.Duration
		if n.Chat != nil {
			p.NotifyChat = true
			if err := n.Chat.config(c).Validate(); err != nil {
				// One error per problem, each with its full field path.
				chatErrs := []error{err}
				if j, ok := err.(interface{ Unwrap() []error }); ok {
					chatErrs = j.Unwrap()
				}
				for _, e := range chatErrs {
					errs = append(errs, fmt.Errorf("notifications.%w", e))
				}
			}
		}
		if err := n.SMTP.config(c).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("notifications.%w", err))
		}
		if n.Handles != "" {
			if _, err := c.Handles(); err != nil {
				errs = append(errs, err)
			}
		}
		if _, err := notify.LoadTemplates(c.path(n.Templates)); err != nil {
			errs = append(errs, fmt.Errorf("notifications.templates: %w", err))
		}
	}
	if c.OnFailure != "" && c.OnFailure != workflows.OnFailureFail && c.OnFailure != workflows.OnFailureWait {
		errs = append(errs, fmt.Errorf("onFailure: %q: want fail or wait", c.OnFailure))
	}
	if c.HeartbeatTimeout.Duration != 0 && c.HeartbeatTimeout.Duration < 3*time.Second {
		errs = append(errs, fmt.Errorf("heartbeatTimeout: %v is below 3s; RunPipeline heartbeats at a third of it", c.HeartbeatTimeout.Duration))
	}
	localCheck := false
	switch c.Executor {
	case "", ExecutorTekton:
		if c.Local != nil {
			errs = append(errs, errors.New("local: set, but executor is not local; set executor: local or drop it"))
		}
		if c.Namespace == "" {
			errs = append(errs, errors.New("namespace: required (or KILN_NAMESPACE): the Kubernetes namespace of the PipelineRuns"))
		}
	case ExecutorLocal:
		if c.Local != nil && c.Local.MaxParallel < 0 {
			errs = append(errs, fmt.Errorf("local.maxParallel: %d is negative", c.Local.MaxParallel))
		}
		if c.Local != nil && c.Local.Isolation != "" && c.Local.Isolation != local.IsolationNamespaces && c.Local.Isolation != local.IsolationNone {
			errs = append(errs, fmt.Errorf("local.isolation: %q is neither %q nor %q", c.Local.Isolation, local.IsolationNamespaces, local.IsolationNone))
		}
		localCheck = true
		if p.Namespace == "" {
			p.Namespace = "local" // names nothing on this machine, but runs carry one
		}
	default:
		errs = append(errs, fmt.Errorf("executor: %q: want tekton or local", c.Executor))
	}
	if c.Parallelism < 0 {
		errs = append(errs, fmt.Errorf("parallelism: %d is negative", c.Parallelism))
	}
	if c.CancelMode != "" && !slices.Contains(tekton.CancelModes, pipelinev1.PipelineRunSpecStatus(c.CancelMode)) {
		errs = append(errs, fmt.Errorf("cancelMode: %q is not one of %v", c.CancelMode, tekton.CancelModes))
	}
	phase := func(name string, pc *PhaseConfig) *workflows.PipelineConfig {
		if pc == nil {
			return nil
		}
		wc, err := c.pipelineConfig(name, *pc)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if err := wc.Validate(name); err != nil {
			errs = append(errs, err)
		}
		return &wc
	}
	p.Base = phase("phases.base", c.Phases.Base)
	p.Packages = phase("phases.packages", c.Phases.Packages)
	p.Image = phase("phases.image", c.Phases.Image)
	p.Test = phase("phases.test", c.Phases.Test)
	p.TestPlatform = phase("phases.testPlatform", c.Phases.TestPlatform)
	if c.Phases.Image == nil {
		errs = append(errs, errors.New("phases.image: required: the pipeline that builds one flavour's image"))
	}
	platforms := make([]string, 0, len(c.Phases.Publish))
	for k := range c.Phases.Publish {
		platforms = append(platforms, k)
	}
	slices.Sort(platforms)
	for _, platform := range platforms {
		pc := c.Phases.Publish[platform]
		if wc := phase("phases.publish."+platform, &pc); wc != nil {
			if p.Publish == nil {
				p.Publish = map[string]workflows.PipelineConfig{}
			}
			p.Publish[platform] = *wc
		}
	}
	errs = append(errs, c.storagePlan(&p)...)
	errs = append(errs, c.packagesPlan(&p)...)
	if localCheck {
		if opts, err := c.LocalOptions(nil, nil); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, c.checkLocal(p, opts)...)
		}
	}
	var file *flavour.File
	if c.Flavours != "" {
		data, err := os.ReadFile(c.path(c.Flavours))
		if err == nil {
			file, err = flavour.Parse(data)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("flavours: %s: %w", c.Flavours, err))
		}
	}
	return p, file, errors.Join(errs...)
}

func (c Config) pipelineConfig(path string, pc PhaseConfig) (workflows.PipelineConfig, error) {
	wc := workflows.PipelineConfig{
		PipelineRef: pc.PipelineRef, Params: pc.Params, Labels: pc.Labels, Annotations: pc.Annotations, Workspaces: pc.Workspaces,
		ServiceAccountName: pc.ServiceAccountName, Timeout: pc.Timeout.Duration,
		Attempts: pc.Attempts, Backoff: pc.Backoff.Duration,
	}
	if pc.PipelineFile != "" {
		if pc.PipelineRef != "" {
			return wc, fmt.Errorf("%s: pipelineRef and pipelineFile are both set; keep one", path)
		}
		spec, err := ReadPipelineFile(c.path(pc.PipelineFile))
		if err != nil {
			return wc, fmt.Errorf("%s.pipelineFile: %w", path, err)
		}
		wc.PipelineSpec = spec
	}
	return wc, nil
}

// ReadPipelineFile reads a tekton.dev/v1 Pipeline, or a bare PipelineSpec,
// from a YAML file.
func ReadPipelineFile(path string) (*pipelinev1.PipelineSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if head.Kind == "Pipeline" {
		var p pipelinev1.Pipeline
		if err := yaml.UnmarshalStrict(data, &p); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &p.Spec, nil
	}
	if head.Kind != "" {
		return nil, fmt.Errorf("%s: kind %s: want a Pipeline or a bare pipeline spec", path, head.Kind)
	}
	var spec pipelinev1.PipelineSpec
	if err := yaml.UnmarshalStrict(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(spec.Tasks) == 0 {
		return nil, fmt.Errorf("%s: no tasks", path)
	}
	return &spec, nil
}

// Handles reads the notifications' handles file.
func (c Config) Handles() (map[string]string, error) {
	m := map[string]string{}
	if c.Notifications == nil || c.Notifications.Handles == "" {
		return m, nil
	}
	path := c.path(c.Notifications.Handles)
	data, err := os.ReadFile(path)
	if err == nil {
		err = strictyaml.Unmarshal(path, data, &m)
	}
	if err != nil {
		return nil, fmt.Errorf("notifications.handles: %w", err)
	}
	return m, nil
}

// Mailer builds the notifications' SMTP sender, reading its password and
// CA file, or nil when the config has no notifications.
func (c Config) Mailer() (*notify.Mailer, error) {
	if c.Notifications == nil {
		return nil, nil
	}
	m, err := notify.NewMailer(c.Notifications.SMTP.config(c))
	if err != nil {
		return nil, fmt.Errorf("notifications.%w", err)
	}
	return m, nil
}

// NotifyActivities builds the notification activities, or nil when the
// config has no notifications.
func (c Config) NotifyActivities() (*notify.Activities, error) {
	n := c.Notifications
	if n == nil {
		return nil, nil
	}
	mailer, err := c.Mailer()
	if err != nil {
		return nil, err
	}
	tpl, err := notify.LoadTemplates(c.path(n.Templates))
	if err != nil {
		return nil, err
	}
	handles, err := c.Handles()
	if err != nil {
		return nil, err
	}
	ns := n.Namespace
	if ns == "" {
		ns = "default"
	}
	read := func(ctx context.Context, repo, commit string) (string, error) {
		_, s, err := git.ReadAtCommit(ctx, repo, commit, git.CodeownersPaths...)
		return s, err
	}
	opts := notify.Options{Handles: handles, TemporalURL: n.TemporalURL, Namespace: ns}
	if n.Chat != nil {
		if opts.Chat, err = notify.NewChat(n.Chat.config(c)); err != nil {
			return nil, fmt.Errorf("notifications.%w", err)
		}
	}
	return notify.New(mailer, tpl, read, opts)
}
