// Package dev runs kiln's whole system on one machine for `kiln dev`: a
// Temporal dev server with its UI and its database in the work directory,
// an S3 server (versitygw) with the staging and release buckets, a mail
// sink that stores .eml files, and a worker with the local executor, which
// runs the pipelines' steps as processes. Everything listens on loopback
// and stops with the Stack.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/kiln-build/kiln/deploy"
	"github.com/kiln-build/kiln/worker"
)

// Options configure the Stack.
type Options struct {
	// Dir is the work directory: the Temporal database, the buckets, the
	// mails, the runs and the servers' logs. Required.
	Dir string
	// TemporalPort is the Temporal frontend's port; the UI is on UIPort.
	// Optional: 7233 and 8233, as the temporal CLI's.
	TemporalPort, UIPort int
	// Temporal and VersityGW are the servers' binaries. Optional: found
	// beside the kiln binary (bin/ after make dev), then in $PATH.
	Temporal, VersityGW string
	// Out receives a line per mail the sink stores.
	Out io.Writer
	// StepOutput receives the steps' output, live, prefixed [task/step].
	StepOutput io.Writer
	// Logger receives the worker's and the SDK's messages.
	Logger *slog.Logger
}

// Stack is the running system.
type Stack struct {
	// Client is connected to the Temporal dev server.
	Client client.Client
	// TemporalAddr is the frontend's host:port, UIURL the UI's base URL.
	TemporalAddr, UIURL string
	// S3Endpoint is the S3 server's URL, S3 a client for it, and
	// BucketDir the directory holding its buckets (one directory each).
	S3Endpoint string
	S3         *s3.Client
	BucketDir  string
	// Mail is the mail sink.
	Mail *MailSink
	// Config is the worker's config (deploy/dev/kiln.yaml with the
	// ports filled in).
	Config worker.Config

	procs  []*proc
	cancel context.CancelFunc
	worker chan error
	lock   *os.File
}

// S3 credentials of the dev server: it listens on loopback only.
const (
	devAccessKey = "kiln-dev"
	devSecretKey = "kiln-dev-secret"
)

// Start starts everything and returns once the worker polls. On error,
// what was started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.TemporalPort == 0 {
		opts.TemporalPort = 7233
	}
	if opts.UIPort == 0 {
		opts.UIPort = 8233
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{BucketDir: filepath.Join(dir, "s3")}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if s.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	for _, p := range []int{opts.TemporalPort, opts.UIPort} {
		if err := portFree(p); err != nil {
			return nil, err
		}
	}
	temporal, err := tool(opts.Temporal, "temporal")
	if err != nil {
		return nil, err
	}
	versitygw, err := tool(opts.VersityGW, "versitygw")
	if err != nil {
		return nil, err
	}

	// Temporal, with its database in dir: a restart shows earlier builds.
	s.TemporalAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.TemporalPort))
	s.UIURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.UIPort))
	if err := s.start(dir, "temporal", temporal, "server", "start-dev", "--ip", "127.0.0.1",
		"--port", strconv.Itoa(opts.TemporalPort), "--ui-port", strconv.Itoa(opts.UIPort),
		"--db-filename", filepath.Join(dir, "temporal.db"), "--log-level", "warn",
		// kiln schedule apply keeps each schedule's hash there.
		"--search-attribute", "KilnScheduleHash=Keyword"); err != nil {
		return nil, err
	}
	// S3, with its buckets as directories in dir.
	s3Port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.S3Endpoint = "http://127.0.0.1:" + strconv.Itoa(s3Port)
	if err := os.MkdirAll(s.BucketDir, 0o755); err != nil {
		return nil, err
	}
	if err := s.start(dir, "versitygw", versitygw, "--access", devAccessKey, "--secret", devSecretKey,
		"--port", "127.0.0.1:"+strconv.Itoa(s3Port), "posix", s.BucketDir); err != nil {
		return nil, err
	}
	// The mail sink.
	if s.Mail, err = StartMailSink("127.0.0.1:0", filepath.Join(dir, "mail"), func(m Mail) {
		fmt.Fprintln(opts.Out, m.Summary())
	}); err != nil {
		return nil, err
	}
	// The worker's config, and the environment its steps see: the S3
	// server for `kiln stage`, and this kiln binary first in $PATH.
	if s.Config, err = s.config(dir, opts); err != nil {
		return nil, err
	}
	if err := s.waitTemporal(ctx, opts.Logger); err != nil {
		return nil, err
	}
	if err := s.buckets(ctx); err != nil {
		return nil, err
	}
	started := make(chan struct{})
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.worker = cancel, make(chan error, 1)
	go func() {
		s.worker <- worker.Run(wctx, s.Config, s.Client, nil, opts.Logger, func() { close(started) })
	}()
	select {
	case <-started:
		return s, nil
	case err := <-s.worker:
		s.worker <- err
		return nil, fmt.Errorf("worker: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stop stops the worker and the servers; nothing of the Stack listens or
// runs afterwards.
func (s *Stack) Stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.worker
	}
	if s.Client != nil {
		s.Client.Close()
	}
	if s.Mail != nil {
		s.Mail.Close()
	}
	for _, p := range s.procs {
		p.stop()
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

// Err returns a channel that delivers the worker's error if it stops on
// its own.
func (s *Stack) Err() <-chan error { return s.worker }

// start starts a server in a process group of its own, logging to
// dir/<name>.log.
func (s *Stack) start(dir, name, path string, args ...string) error {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own group, so Ctrl-C in the terminal reaches kiln alone and kiln
	// stops the servers in order; they die with kiln if kiln is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	logf.Close()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	s.procs = append(s.procs, p)
	return nil
}

// proc is a server kiln dev started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited; err says how
	err  error
}

// stop ends the server's process group: SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// waitTemporal connects to the dev server once it answers.
func (s *Stack) waitTemporal(ctx context.Context, logger *slog.Logger) error {
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := client.Dial(client.Options{HostPort: s.TemporalAddr, Logger: log.NewStructuredLogger(logger)})
		if err == nil {
			if _, err = c.CheckHealth(ctx, &client.CheckHealthRequest{}); err == nil {
				s.Client = c
				return nil
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Temporal dev server did not answer on %s within a minute (see temporal.log): %w", s.TemporalAddr, err)
		}
		if err := s.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// exited reports a server that has stopped.
func (s *Stack) exited() error {
	for _, p := range s.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v (see %s.log)", p.name, p.err, p.name)
		default:
		}
	}
	return nil
}

// buckets creates the demo's buckets, waiting for the S3 server.
func (s *Stack) buckets(ctx context.Context) error {
	s.S3 = s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.S3Endpoint), UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: devAccessKey, SecretAccessKey: devSecretKey}, nil
		}),
	})
	deadline := time.Now().Add(30 * time.Second)
	for _, b := range []string{s.Config.Storage.StagingBucket, s.Config.Storage.ReleaseBucket} {
		for {
			_, err := s.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
			var ae smithy.APIError
			if err == nil || errors.As(err, &ae) && strings.HasPrefix(ae.ErrorCode(), "BucketAlready") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("create bucket %s on %s (see versitygw.log): %w", b, s.S3Endpoint, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// config writes the embedded demo into dir/demo and loads its worker
// config, with the servers' addresses filled in.
func (s *Stack) config(dir string, opts Options) (worker.Config, error) {
	demo := filepath.Join(dir, "demo")
	err := fs.WalkDir(deploy.Dev, "dev", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(demo, strings.TrimPrefix(path, "dev"))
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
		return worker.Config{}, fmt.Errorf("write the demo: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return worker.Config{}, err
	}
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": devAccessKey, "AWS_SECRET_ACCESS_KEY": devSecretKey, "AWS_REGION": "us-east-1",
		"AWS_ENDPOINT_URL_S3": s.S3Endpoint, "KILN_S3_PATH_STYLE": "true",
		"PATH": filepath.Dir(exe) + string(os.PathListSeparator) + os.Getenv("PATH"),
	} {
		if err := os.Setenv(k, v); err != nil {
			return worker.Config{}, err
		}
	}
	cfg, err := worker.LoadConfig(filepath.Join(demo, "kiln.yaml"), os.Getenv)
	if err != nil {
		return cfg, err
	}
	cfg.Storage.Endpoint = s.S3Endpoint
	_, port, _ := net.SplitHostPort(s.Mail.Addr)
	cfg.Notifications.SMTP.Port, _ = strconv.Atoi(port)
	cfg.Notifications.TemporalURL = s.UIURL + "/namespaces/{{.Namespace}}/workflows/{{.WorkflowID}}"
	cfg.StepOutput = opts.StepOutput
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("the demo's config: %w", err)
	}
	return cfg, nil
}

// ObjectFile is where the S3 server keeps an object on disk.
func (s *Stack) ObjectFile(bucket, key string) string {
	return filepath.Join(s.BucketDir, bucket, filepath.FromSlash(key))
}

// tool finds a server's binary: the given path, beside the kiln binary,
// then in $PATH.
func tool(given, name string) (string, error) {
	if given != "" {
		return given, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found beside the kiln binary or in $PATH: `make dev` builds it into bin/ (or pass its path)", name)
}

// lockDir makes sure one kiln dev uses dir at a time.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "dev.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another kiln dev runs in %s: stop it first, or use another --dir", dir)
	}
	return f, nil
}

func portFree(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d is taken (another Temporal or kiln dev?): free it or choose other ports with --port and --ui-port", port)
	}
	return ln.Close()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
