// Package s3test runs a real S3-compatible server, versitygw with its posix
// backend (built by `make tools`), on loopback for tests.
package s3test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kiln-build/kiln/test/kubestack"
)

// Server is a running versitygw.
type Server struct {
	Endpoint       string
	Access, Secret string
	path, addr     string // the binary, the listening address
	data           string
	log            *os.File
	cmd            *exec.Cmd
}

// Start serves the directory dir/data as S3 on a free loopback port. It
// returns an error wrapping kubestack.ErrNoTools when bin/versitygw is not
// built.
func Start(ctx context.Context, dir string) (*Server, error) {
	path, err := kubestack.Tool("versitygw")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: "http://" + addr, Access: "kilntest", Secret: "kilntest-secret", path: path, addr: addr, data: data, log: logf}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// start runs versitygw and waits until it listens.
func (s *Server) start(ctx context.Context) error {
	cmd := exec.Command(s.path, "--access", s.Access, "--secret", s.Secret, "--port", s.addr, "posix", s.data)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return fmt.Errorf("versitygw did not listen on %s (log %s)", s.addr, s.log.Name())
		}
	}
}

// Stop ends the server. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		s.cmd.Wait()
	}
	s.cmd = nil
}

// Restart stops the server if it runs and starts it again on the same
// port and data directory, so it serves what it stored before: an S3
// outage and its end, for tests of retries. Stop and Restart must not run
// concurrently with each other.
func (s *Server) Restart(ctx context.Context) error {
	s.Stop()
	fmt.Fprintf(s.log, "--- s3test: restarting on %s\n", s.addr)
	return s.start(ctx)
}

// Client returns an SDK client for the server, path-style.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: s.Access, SecretAccessKey: s.Secret}, nil
		}),
	})
}

// Port is the server's port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Endpoint[len("http://"):])
	n, _ := strconv.Atoi(p)
	return n
}
