// Command devstack runs kiln on one machine for `make dev`: a real etcd and
// kube-apiserver with Tekton's CRDs, the real Tekton controller,
// kube-scheduler and kwok as the kubelet, a Temporal dev server with its UI,
// and a kiln worker configured from deploy/kiln.yaml. It then starts a demo
// build of deploy/'s example pipelines with `kiln run --wait`.
//
// The Tekton controller binds :8080 and :9090 whatever it is told, so the
// stack runs in a private network namespace (test/netns-run), and devstack
// bridges the Temporal frontend and UI out of it through unix sockets in
// the work directory. Ctrl-C stops everything it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/temporaltest"
	"github.com/kiln-build/kiln/worker"
)

func main() {
	var (
		inner    = flag.Bool("inner", false, "run the stack (inside the network namespace)")
		dir      = flag.String("dir", ".kiln/dev", "work directory: logs, the Temporal database, sockets")
		config   = flag.String("config", "deploy/kiln.yaml", "worker config")
		frontend = flag.Int("temporal-port", 7233, "where the Temporal frontend is served on 127.0.0.1")
		ui       = flag.Int("ui-port", 8233, "where the Temporal UI is served on 127.0.0.1")
		demo     = flag.Bool("demo", true, "start the demo build once the stack is up")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *inner {
		err = runInner(ctx, *dir, *config)
	} else {
		err = runOuter(ctx, *dir, *config, *frontend, *ui, *demo)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// runOuter starts the inner stack in a network namespace, bridges its
// sockets to TCP ports, runs the demo build, and waits for Ctrl-C.
func runOuter(ctx context.Context, dir, config string, frontendPort, uiPort int, demo bool) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ready := filepath.Join(dir, "ready")
	os.Remove(ready)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin, err := kubestack.BinDir()
	if err != nil {
		return err
	}
	netns := filepath.Join(filepath.Dir(bin), "test", "netns-run")
	cmd := exec.Command(netns, self, "-inner", "-dir", dir, "-config", config)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the stack: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		fmt.Println("devstack: stopped")
	}()

	fmt.Println("devstack: starting etcd, kube-apiserver, Tekton, kwok, Temporal and a kiln worker ...")
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the stack exited: %v (logs in %s)", err, dir)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, b := range []struct {
		port int
		sock string
	}{{frontendPort, "temporal.sock"}, {uiPort, "ui.sock"}} {
		if err := bridge(ctx, "127.0.0.1:"+strconv.Itoa(b.port), filepath.Join(dir, b.sock)); err != nil {
			return err
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(frontendPort)
	fmt.Printf(`
devstack: ready
  Temporal UI     http://127.0.0.1:%d
  Temporal        TEMPORAL_ADDRESS=%s
  follow a build  TEMPORAL_ADDRESS=%s bin/kiln status build/main/dev-1
  logs            %s
  Ctrl-C stops everything.

`, uiPort, addr, addr, dir)
	if demo {
		run := exec.CommandContext(ctx, filepath.Join(bin, "kiln"), "run",
			"--repo", "https://github.com/gardenlinux/gardenlinux", "--branch", "main",
			"--commit", "b2279318", "--version", "dev-"+strconv.FormatInt(time.Now().Unix(), 10),
			"--flavour-set", "all", "--target", "build", "--target", "manifest", "--target", "tests", "--target", "publish",
			"--wait")
		run.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+addr)
		run.Stdout, run.Stderr = os.Stdout, os.Stderr
		if err := run.Run(); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "devstack: demo build:", err)
		}
		fmt.Printf("\ndevstack: the demo build is done; see it in the UI at http://127.0.0.1:%d. Ctrl-C stops everything.\n", uiPort)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-exited:
		return fmt.Errorf("the stack exited: %v (logs in %s)", err, dir)
	}
}

// bridge accepts TCP connections on addr and pipes each to the unix socket.
func bridge(ctx context.Context, addr, sock string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s (is another devstack running?): %w", addr, err)
	}
	forward(ctx, ln, "unix", sock)
	return nil
}

// forward pipes every connection ln accepts to network/target, until ctx
// ends.
func forward(ctx context.Context, ln net.Listener, network, target string) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				t, err := net.Dial(network, target)
				if err != nil {
					return
				}
				defer t.Close()
				pipe(c, t)
			}()
		}
	}()
}

func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(a, b); done <- struct{}{} }()
	go func() { io.Copy(b, a); done <- struct{}{} }()
	<-done
}

// runInner starts the stack and serves the Temporal frontend and UI on
// unix sockets in dir until ctx ends.
func runInner(ctx context.Context, dir, config string) error {
	start := time.Now()
	stack, err := kubestack.Start(ctx, kubestack.Options{Dir: filepath.Join(dir, "kube")})
	if err != nil {
		return fmt.Errorf("kube stack: %w", err)
	}
	defer stack.Stop()
	if err := stack.StartTekton(ctx); err != nil {
		return fmt.Errorf("tekton: %w", err)
	}
	cfg, err := worker.LoadConfig(config, os.Getenv)
	if err != nil {
		return err
	}
	if img := cfg.Phases.Image; img != nil {
		// kwok runs no steps: report the artifacts the image pipeline
		// declares, as its upload step would.
		if img.Annotations == nil {
			img.Annotations = map[string]string{}
		}
		img.Annotations[kubestack.AnnotationTerminationMessage] = kubestack.TerminationMessage(map[string]string{
			"artifacts": `[{"name":"rootfs.raw","key":"builds/{{.Version}}/{{.Flavour.Name}}/rootfs.raw","size":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]`,
		})
	}
	if err := stack.PrepareNamespace(ctx, cfg.Namespace); err != nil {
		return err
	}
	srv, err := startTemporal(ctx, dir)
	if err != nil {
		return err
	}
	defer srv.Stop()
	for _, s := range []struct{ sock, target string }{
		{"temporal.sock", srv.FrontendHostPort()},
		{"ui.sock", uiAddr(srv.FrontendHostPort())},
	} {
		if err := unixProxy(ctx, filepath.Join(dir, s.sock), s.target); err != nil {
			return err
		}
	}
	logf, err := os.Create(filepath.Join(dir, "worker.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	logger := slog.New(slog.NewTextHandler(logf, nil))
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, cfg, srv.Client(), stack.RESTConfig(), logger, nil) }()
	fmt.Printf("devstack: stack up in %v (Tekton %s namespace %q, worker log %s)\n",
		time.Since(start).Round(time.Millisecond), "v1.15.1", cfg.Namespace, logf.Name())
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return <-done
	}
}

func startTemporal(ctx context.Context, dir string) (*testsuite.DevServer, error) {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return temporaltest.StartWithUI(sctx, dir)
}

// uiAddr is where the dev server serves its UI: the frontend port + 1000.
func uiAddr(frontend string) string {
	host, port, _ := net.SplitHostPort(frontend)
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+1000))
}

// unixProxy serves sock, piping each connection to the TCP target.
func unixProxy(ctx context.Context, sock, target string) error {
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	forward(ctx, ln, "tcp", target)
	return nil
}
