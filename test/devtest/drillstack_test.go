//go:build e2e

package devtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"sigs.k8s.io/yaml"

	"github.com/kiln-build/kiln/deploy"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
	"github.com/kiln-build/kiln/test/smtptest"
	"github.com/kiln-build/kiln/test/temporaltest"
	"github.com/kiln-build/kiln/workflows"
)

// drillStack is what the durability drills of issue 12 run against, as an
// operator would run kiln without a cluster: a Temporal dev server,
// versitygw and an SMTP sink, started by the test (so that it can stop
// and restart them), and kiln workers with the local executor, each a
// `bin/kiln worker` process with its own config and local.dir, running
// the demo's pipelines (deploy/dev).
type drillStack struct {
	t        *testing.T
	dir      string
	demo     string // deploy/dev written out; the workers' configs go here
	bin      string // bin/kiln
	temporal *testsuite.DevServer
	client   client.Client
	s3       *s3test.Server
	smtp     *smtptest.Server
}

// drillCommit is the commit the drills build.
var drillCommit = strings.Repeat("5e", 20)

func startDrillStack(t *testing.T) *drillStack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := &drillStack{t: t, dir: t.TempDir(), bin: kilnBin(t)}
	s.demo = filepath.Join(s.dir, "demo")

	// Temporal as kiln dev runs it: without eager activity execution, so
	// that an activity on the shared task queue goes to whichever worker
	// polls it (temporaltest enables eager execution, which would hand
	// most activities to the worker whose workflow task scheduled them).
	temporal, err := kubestack.Tool("temporal")
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(s.dir, "temporal.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	s.temporal, err = testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: temporal, DBFilename: filepath.Join(s.dir, "temporal.db"), LogLevel: "warn",
		Stdout: logf, Stderr: logf,
		ClientOptions: &client.Options{Logger: temporaltest.Logger(io.Discard)},
	})
	if err != nil {
		t.Fatalf("start Temporal dev server (log in %s): %v", logf.Name(), err)
	}
	t.Cleanup(func() { s.temporal.Stop() })
	s.client = s.temporal.Client()

	if s.s3, err = s3test.Start(ctx, filepath.Join(s.dir, "s3")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.s3.Stop() })
	for _, b := range []string{"staging", "releases"} {
		if _, err := s.s3.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	if s.smtp, err = smtptest.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.smtp.Close)

	err = fs.WalkDir(deploy.Dev, "dev", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(s.demo, strings.TrimPrefix(path, "dev"))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := deploy.Dev.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// workerConfig writes the demo's worker config (deploy/dev/kiln.yaml) as
// <demo>/<name>.yaml with the test's servers, its own local.dir
// (<dir>/<name>), and what edit changes, and returns its path.
func (s *drillStack) workerConfig(name string, edit func(cfg map[string]any)) string {
	s.t.Helper()
	b, err := deploy.Dev.ReadFile("dev/kiln.yaml")
	if err != nil {
		s.t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		s.t.Fatal(err)
	}
	cfg["local"].(map[string]any)["dir"] = filepath.Join(s.dir, name)
	cfg["storage"].(map[string]any)["endpoint"] = s.s3.Endpoint
	_, port, _ := net.SplitHostPort(s.smtp.Addr)
	notifications := cfg["notifications"].(map[string]any)
	notifications["smtp"].(map[string]any)["port"], _ = strconv.Atoi(port)
	notifications["temporalURL"] = "http://127.0.0.1:1/namespaces/{{.Namespace}}/workflows/{{.WorkflowID}}"
	if edit != nil {
		edit(cfg)
	}
	if b, err = yaml.Marshal(cfg); err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(s.demo, name+".yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// env is the environment of kiln's processes: the Temporal server, the S3
// server's address and keys (for the worker's storage and the steps'
// kiln stage), and bin/ first in $PATH (kiln stage).
func (s *drillStack) env() []string {
	return append(os.Environ(),
		"TEMPORAL_ADDRESS="+s.temporal.FrontendHostPort(), "TEMPORAL_NAMESPACE=default",
		"AWS_ACCESS_KEY_ID="+s.s3.Access, "AWS_SECRET_ACCESS_KEY="+s.s3.Secret, "AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL_S3="+s.s3.Endpoint, "KILN_S3_PATH_STYLE=true",
		"PATH="+filepath.Dir(s.bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// drillWorker is a running `kiln worker`.
type drillWorker struct {
	name, config, dir string // dir: its local.dir
	log               string
	cmd               *exec.Cmd
	done              chan struct{}
}

// startWorker starts `kiln worker --config config`, logging to
// <dir>/<name>.log. It is stopped (SIGTERM) when the test ends.
func (s *drillStack) startWorker(name, config string) *drillWorker {
	s.t.Helper()
	w := &drillWorker{name: name, config: config, dir: filepath.Join(s.dir, name), log: filepath.Join(s.dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(w.log)
	if err != nil {
		s.t.Fatal(err)
	}
	w.cmd = exec.Command(s.bin, "worker", "--config", config)
	w.cmd.Env = s.env()
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	logf.Close()
	go func() { w.cmd.Wait(); close(w.done) }()
	s.t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
			<-w.done
		}
		if s.t.Failed() {
			b, _ := os.ReadFile(w.log)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			s.t.Logf("%s's log (%s), its end:\n%s", w.name, w.log, b)
		}
	})
	return w
}

// waitPollers waits until n workers poll the shared task queue.
func (s *drillStack) waitPollers(n int) {
	s.t.Helper()
	waitUntil(s.t, time.Minute, fmt.Sprintf("%d workers polling %s", n, workflows.TaskQueue), func() bool {
		resp, err := s.client.DescribeTaskQueue(context.Background(), workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		return err == nil && len(resp.GetPollers()) >= n
	})
}

// kiln runs a kiln client command against the stack and returns its
// stdout and stderr.
func (s *drillStack) kiln(args ...string) (stdout, stderr string, err error) {
	s.t.Helper()
	cmd := exec.Command(s.bin, args...)
	cmd.Env = s.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// run runs `kiln run --wait` for the demo's flavours at version, with the
// extra flags, and returns the build's ID and kiln run's output.
func (s *drillStack) run(version string, extra ...string) (string, string, error) {
	s.t.Helper()
	args := append([]string{"run", "--repo", "https://example.com/os.git", "--branch", "drill", "--commit", drillCommit,
		"--version", version, "--only", "you@kiln.localhost", "--poll", "500ms", "--wait"}, extra...)
	out, errOut, err := s.kiln(args...)
	return "build/drill/" + version, out + errOut, err
}

// progress asks the build's workflow for its progress.
func (s *drillStack) progress(id string) workflows.Progress {
	s.t.Helper()
	var p workflows.Progress
	v, err := s.client.QueryWorkflow(context.Background(), id, "", workflows.QueryProgress)
	if err == nil {
		err = v.Get(&p)
	}
	if err != nil {
		s.t.Fatalf("progress of %s: %v", id, err)
	}
	return p
}

// drillRun is one PipelineRun of a build, as its progress shows it.
type drillRun struct {
	title string // <phase> or <phase>/<flavour>
	workflows.PhaseState
}

// drillRuns lists the build's PipelineRuns.
func drillRuns(p workflows.Progress) []drillRun {
	var runs []drillRun
	for _, ph := range p.Phases {
		if ph.PipelineRun != "" {
			runs = append(runs, drillRun{ph.Name, ph})
		}
	}
	for _, f := range p.Flavours {
		for _, ph := range f.Phases {
			if ph.PipelineRun != "" {
				runs = append(runs, drillRun{ph.Name + "/" + f.Name, ph})
			}
		}
	}
	return runs
}

// checkArchived checks that every PipelineRun of the build had its logs
// archived, and returns the runs.
func checkArchived(t *testing.T, p workflows.Progress) []drillRun {
	t.Helper()
	runs := drillRuns(p)
	if len(runs) == 0 {
		t.Fatalf("the build ran no PipelineRun: %+v", p)
	}
	for _, r := range runs {
		if len(r.Logs) == 0 || r.LogsError != "" {
			t.Errorf("%s %s: logs %v, logsError %q: want every run's logs archived", r.title, r.PipelineRun, r.Logs, r.LogsError)
		}
	}
	return runs
}
