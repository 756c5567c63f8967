//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/activities/publish"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/ec2test"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// clouds are the real S3 server (versitygw) and the EC2-compatible test
// server one artifacts test uses.
type clouds struct {
	s3  *s3test.Server
	ec2 *ec2test.Server
	// env holds the credentials' variables for the worker.
	env []string
}

func startClouds(t *testing.T) *clouds {
	t.Helper()
	srv, err := s3test.Start(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	for _, b := range []string{"staging", "releases"} {
		if _, err := srv.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &b}); err != nil {
			t.Fatal(err)
		}
	}
	e := ec2test.New(ec2test.Options{ImportPolls: 2, CopyPolls: 2, RegisterPolls: 1})
	t.Cleanup(e.Close)
	c := &clouds{s3: srv, ec2: e, env: []string{
		"KILN_E2E_S3_ID=" + srv.Access, "KILN_E2E_S3_SECRET=" + srv.Secret,
		"KILN_E2E_AWS_ID=AKIDKILNE2E", "KILN_E2E_AWS_SECRET=kiln-e2e-secret",
	}}
	for _, kv := range c.env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return c
}

// config is the storage and publishing part of the worker config: aws
// through kiln's own EC2 activities, gcp through a publish pipeline whose
// results kwok reports, the rest by promotion alone.
func (c *clouds) config(t *testing.T) string {
	gcp := filepath.Join(t.TempDir(), "publish-gcp.yaml")
	if err := os.WriteFile(gcp, []byte(`apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: kiln-publish-gcp}
spec:
  params: [{name: image, type: string}]
  results:
  - {name: image-name, value: $(tasks.publish.results.image-name)}
  - {name: project, value: $(tasks.publish.results.project)}
  tasks:
  - name: publish
    taskSpec:
      results: [{name: image-name}, {name: project}]
      steps:
      - name: publish
        image: google/cloud-sdk:slim
        script: |
          #!/bin/sh
          echo "importing $(params.image)"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	msg := kubestack.TerminationMessage(map[string]string{"image-name": "gardenlinux-gcp-576-0", "project": "gardenlinux-images"})
	return fmt.Sprintf(`  publish:
    gcp:
      pipelineFile: %s
      params: {image: '{{index .Artifacts ".rootfs.raw"}}'}
      annotations: {kiln.test/termination-message: '%s'}
storage:
  endpoint: %s
  pathStyle: true
  stagingBucket: staging
  releaseBucket: releases
  prefix: gardenlinux/
  credentials: {accessKeyIdEnv: KILN_E2E_S3_ID, secretAccessKeyEnv: KILN_E2E_S3_SECRET}
publishing:
  s3Only: [ali, azure, kvm, metal, openstack, vmware]
  aws:
    region: eu-central-1
    regions: [ap-southeast-1, eu-west-1, us-east-1]
    public: true
    pollInterval: 100ms
    endpoint: %s
    tags: {project: gardenlinux}
    credentials: {accessKeyIdEnv: KILN_E2E_AWS_ID, secretAccessKeyEnv: KILN_E2E_AWS_SECRET}
`, gcp, msg, c.s3.Endpoint, c.ec2.URL())
}

// stage puts content at the staged key of each flavour.
func (c *clouds) stage(t *testing.T, content []byte, flavours ...string) {
	t.Helper()
	for _, f := range flavours {
		key := stagedKey("576.0", "b2279318", f)
		if _, err := c.s3.Client().PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: strPtr("staging"), Key: &key, Body: bytes.NewReader(content),
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *clouds) manifest(t *testing.T, flavour string) storage.Manifest {
	t.Helper()
	// No .release file: the flavour's own name is its cname; the commit
	// is shorter than 8 characters, so it is the base's commit part.
	key := storage.ManifestKey("gardenlinux/", flavour+"-576.0-b2279318")
	obj, err := c.s3.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: strPtr("releases"), Key: &key})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Body.Close()
	data, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	m, format, err := storage.DecodeManifest(data)
	if err != nil || format != storage.FormatGardenLinux {
		t.Fatalf("%s: %v (format %q):\n%s", key, err, format, data)
	}
	return m
}

func (c *clouds) getJSON(t *testing.T, key string, v any) {
	t.Helper()
	obj, err := c.s3.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: strPtr("releases"), Key: &key})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Body.Close()
	if err := json.NewDecoder(obj.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
}

// objects counts the keys under prefix in the release bucket.
func (c *clouds) objects(t *testing.T, prefix string) int {
	t.Helper()
	out, err := c.s3.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: strPtr("releases"), Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Contents)
}

func strPtr(s string) *string { return &s }

func startBuildID(t *testing.T, id, queue string, in workflows.BuildRequest) client.WorkflowRun {
	t.Helper()
	run, err := env.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: id, TaskQueue: queue, WorkflowExecutionTimeout: 10 * time.Minute,
	}, "Build", in)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func flavourState(p workflows.Progress, name string) workflows.FlavourState {
	for _, f := range p.Flavours {
		if f.Name == name {
			return f
		}
	}
	return workflows.FlavourState{}
}

// TestArtifactsManifestsAndPublishing runs the 11 flavours of the all set
// against a real S3 server and the EC2-compatible server: one artifact is
// corrupt, so the first build fails naming it; the second verifies,
// promotes and writes manifests only for that flavour, skipping the ten
// built before, and publishes aws (import, register, copy to 3 regions,
// public) and gcp (a pipeline whose results become the manifest's
// published images); a third build of the same commit does nothing at all.
func TestArtifactsManifestsAndPublishing(t *testing.T) {
	s := newSuite(t)
	c := startClouds(t)
	runWorker(t, buildConfigWith(t, s.ns, "", c.config(t)), s.queue)
	all := []string{"ali-gardener_prod-amd64", "aws-gardener_prod-amd64", "azure-gardener_prod-amd64", "gcp-gardener_prod-amd64",
		"kvm-chost_prod-amd64", "kvm-gardener_prod-amd64", "metal-amd64", "metal-chost_prod-amd64", "metal-gardener_prod-amd64",
		"openstack-gardener_prod-amd64", "vmware-gardener_prod-amd64"}
	const bad = "openstack-gardener_prod-amd64"
	c.stage(t, stagedImage, all...)
	corrupt := bytes.Clone(stagedImage)
	corrupt[100] ^= 1
	c.stage(t, corrupt, bad)
	in := gardenRequest(s.ns, "build", "manifest", "tests", "publish")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// 1. The corrupt artifact fails its flavour, naming the key; the others
	// get their manifests; nothing is published.
	run := startBuild(t, s.queue, in)
	err := run.Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeFlavoursFailed || !strings.Contains(err.Error(), bad) {
		t.Fatalf("first build: %v, want FlavoursFailed naming %s", err, bad)
	}
	p := getProgress(t, run)
	if f := flavourState(p, bad); f.State != workflows.StateFailed || !strings.Contains(f.Error, stagedKey("576.0", "b2279318", bad)) || !strings.Contains(f.Error, "corrupt") {
		t.Errorf("%s = %+v, want failed as corrupt, naming the key", bad, f)
	}
	if n := c.objects(t, "gardenlinux/meta/singles/"); n != 10 {
		t.Errorf("%d manifests after the first build, want 10", n)
	}
	if n := c.objects(t, "gardenlinux/objects/"); n != 10 {
		t.Errorf("%d release objects, want 10: each built flavour's file under objects/<base>/", n)
	}
	if n := c.ec2.Calls("ImportSnapshot"); n != 0 {
		t.Errorf("%d imports although the build failed before publishing", n)
	}

	// 2. Fixed and built again under the same ID: only the fixed flavour
	// runs; the others are skipped by their manifests, and only its file
	// is copied.
	c.stage(t, stagedImage, bad)
	run = startBuild(t, s.queue, in)
	var res workflows.BuildResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("second build: %v\nprogress: %+v", err, getProgress(t, run))
	}
	recordHistory(t, run.GetID(), run.GetRunID(), "build-v5-gardenlinux.json")
	recordHistory(t, run.GetID()+"/flavour/"+bad, "", "flavour-v5-gardenlinux.json")
	recordHistory(t, run.GetID()+"/publish/aws-gardener_prod-amd64", "", "publish-v3-aws.json")
	recordHistory(t, run.GetID()+"/publish/gcp-gardener_prod-amd64", "", "publish-v3-gcp.json")
	p = res.Progress
	reused := 0
	for _, f := range p.Flavours {
		switch {
		case f.Name == bad:
			if f.State != workflows.StateSucceeded || !strings.Contains(f.Phases[2].Reason, "1 files (1 copied)") {
				t.Errorf("%s = %+v, want built and its file promoted", f.Name, f)
			}
		case f.Reused && f.State == workflows.StateSkipped && strings.Contains(f.Reason, "built before"):
			reused++
		default:
			t.Errorf("%s = %+v, want skipped as built before", f.Name, f)
		}
	}
	if reused != 10 {
		t.Errorf("%d flavours reused, want 10", reused)
	}
	// No image ran again: the fixed flavour's image run of the first build
	// had succeeded (its artifact was corrupt in S3) and was adopted.
	images := 0
	for _, pr := range buildRuns(t, s.ns, run.GetID()) {
		if pr.Labels["kiln.dev/phase"] == workflows.PhaseImage {
			images++
		}
	}
	if images != 11 {
		t.Errorf("%d image pipelineruns after the second build, want the first build's 11", images)
	}

	// The manifests: Garden Linux's fields, the promoted file, logs, and
	// the published images.
	m := c.manifest(t, "aws-gardener_prod-amd64")
	if m.Platform != "aws" || m.Architecture != "amd64" || m.BuildCommittish != "b2279318" || m.Version != "576.0" ||
		len(m.Paths) != 1 || m.Kiln == nil || m.Kiln.Sizes[m.Paths[0].Name] != int64(len(stagedImage)) || m.Test() != storage.TestPassed ||
		m.Paths[0].S3Key != "gardenlinux/objects/aws-gardener_prod-amd64-576.0-b2279318/aws-gardener_prod-amd64-576.0-b2279318.rootfs.raw" {
		t.Errorf("aws manifest = %+v", m)
	}
	// Every run's logs were archived while its pods existed (kwok serves
	// kubestack.DefaultPodLog for every container).
	logURI := m.Kiln.Logs["image/build-image"]
	logKey, ok := strings.CutPrefix(logURI, "s3://releases/")
	if !ok || m.Kiln.Logs["test/unit"] == "" {
		t.Errorf("manifest logs = %v, want the image and test tasks' logs in the release bucket", m.Kiln.Logs)
	} else if obj, err := c.s3.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: strPtr("releases"), Key: &logKey}); err != nil {
		t.Errorf("archived log %s: %v", logURI, err)
	} else {
		b, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		if !bytes.Contains(b, []byte("==> step-build <==")) {
			t.Errorf("archived log %s:\n%s", logURI, b)
		}
	}
	if p.Phases[0].Logs["build-base-image"] == "" {
		t.Errorf("base phase logs = %v", p.Phases[0].Logs)
	}
	imgs, _ := m.PublishedImageMetadata["published_aws_images"].([]any)
	if len(imgs) != 4 {
		t.Errorf("aws published images = %v, want 4 regions", m.PublishedImageMetadata)
	}
	if g := c.manifest(t, "gcp-gardener_prod-amd64").PublishedImageMetadata; g["gcp_image_name"] != "gardenlinux-gcp-576-0" || g["gcp_project_name"] != "gardenlinux-images" {
		t.Errorf("gcp published images = %v", g)
	}
	for _, region := range []string{"eu-central-1", "ap-southeast-1", "eu-west-1", "us-east-1"} {
		imgs := c.ec2.Images(region)
		if len(imgs) != 1 || imgs[0].State != "available" || !imgs[0].Public || imgs[0].Tags[publish.TagKey] == "" || imgs[0].Tags["project"] != "gardenlinux" {
			t.Errorf("%s images = %+v, want one available, public, tagged", region, imgs)
		}
	}
	var set storage.ManifestSet
	c.getJSON(t, p.ManifestSet, &set)
	if len(set.Manifests) != 11 {
		t.Errorf("manifest set lists %d manifests, want 11", len(set.Manifests))
	}

	// 3. The same commit under another build ID: every flavour is
	// skipped, nothing is published again, no pipeline runs.
	imports := c.ec2.Calls("ImportSnapshot")
	run = startBuildID(t, "build/"+s.ns+"/576.0-again", s.queue, in)
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("third build: %v", err)
	}
	for _, f := range res.Progress.Flavours {
		if !f.Reused {
			t.Errorf("%s built again", f.Name)
		}
		if ph := f.Phases[len(f.Phases)-1]; ph.Name == workflows.PhasePublish && ph.State == workflows.StateSucceeded {
			t.Errorf("%s published again", f.Name)
		}
	}
	if n := len(buildRuns(t, s.ns, run.GetID())); n != 2 {
		t.Errorf("%d pipelineruns in the third build, want 2 (base and packages)", n)
	}
	if c.ec2.Calls("ImportSnapshot") != imports {
		t.Error("the third build imported again")
	}
}

// TestAWSPublishSurvivesAWorkerKill kills the worker process while the
// image copies are held, lets another worker take over, and checks that
// nothing was imported or registered twice.
func TestAWSPublishSurvivesAWorkerKill(t *testing.T) {
	s := newSuite(t)
	c := startClouds(t)
	cfg := buildConfigWith(t, s.ns, "", c.config(t))
	in := gardenRequest(s.ns, "build", "manifest", "publish")
	in.FlavourSet, in.Flavours = "", []flavour.Flavour{{Platform: "aws", Arch: "amd64", Features: []string{"_prod", "gardener"}, Build: true, Publish: true}}
	c.stage(t, stagedImage, "aws-gardener_prod-amd64")
	release := c.ec2.Hold("CopyImage")
	first := startKilnWorker(t, cfg, s.queue, c.env...)
	run := startBuild(t, s.queue, in)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		return c.ec2.Calls("CopyImage") >= 3, nil
	}); err != nil {
		t.Fatalf("the copies did not start: %v", err)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	t.Log("worker killed with 3 copies in flight")
	release()
	startKilnWorker(t, cfg, s.queue, c.env...)
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("build after the kill: %v", err)
	}
	if n := c.ec2.Created(ec2test.KindImportTask); n != 1 {
		t.Errorf("%d import tasks, want 1", n)
	}
	if n := len(c.ec2.Images("eu-central-1")); n != 1 {
		t.Errorf("%d images registered in the source region, want 1", n)
	}
	if n := c.ec2.Created(ec2test.KindImage); n != 4 {
		t.Errorf("%d images created in all, want 4 (one per region)", n)
	}
	if imgs, _ := c.manifest(t, "aws-gardener_prod-amd64").PublishedImageMetadata["published_aws_images"].([]any); len(imgs) != 4 {
		t.Errorf("published images = %v", imgs)
	}
}

// TestAWSPublishFailureIsCompensatedAndRetried makes one region's copy
// fail in a build that waits on failure: the saga's compensation removes
// everything the publish registered, in every region, before the build
// waits at the publish gate; kiln status says so; an operator's kiln retry
// publishes the flavour again in a fresh child, and the build succeeds.
func TestAWSPublishFailureIsCompensatedAndRetried(t *testing.T) {
	s := newSuite(t)
	c := startClouds(t)
	runWorker(t, buildConfigWith(t, s.ns, "", c.config(t)), s.queue)
	const fl = "aws-gardener_prod-amd64"
	in := gardenRequest(s.ns, "build", "manifest", "publish")
	in.FlavourSet, in.Flavours = "", []flavour.Flavour{{Platform: "aws", Arch: "amd64", Features: []string{"_prod", "gardener"}, Build: true, Publish: true}}
	in.OnFailure = workflows.OnFailureWait
	c.stage(t, stagedImage, fl)
	c.ec2.FailCopy("the destination region refused the copy") // the first round's copy only
	run := startBuild(t, s.queue, in)
	p := waitProgress(t, run.GetID(), func(p workflows.Progress) bool { return p.Resume != nil && p.Resume.Waiting })
	if r := p.Resume; r.Phase != workflows.PhasePublish || len(r.Failed) != 1 || r.Failed[0] != fl {
		t.Fatalf("waiting on %s %v, want publish of %s", r.Phase, r.Failed, fl)
	}
	// The undo was done before the build waited.
	for _, region := range []string{"eu-central-1", "ap-southeast-1", "eu-west-1", "us-east-1"} {
		for _, img := range c.ec2.Images(region) {
			if img.State != "deregistered" {
				t.Errorf("%s: image %s left %s", region, img.ID, img.State)
			}
		}
		for _, snap := range c.ec2.Snapshots(region) {
			t.Errorf("%s: snapshot %s left", region, snap.ID)
		}
	}
	f := flavourState(p, fl)
	if ph := f.Phases[len(f.Phases)-1]; ph.State != workflows.StateFailed || !strings.Contains(ph.Error, "compensation succeeded") {
		t.Errorf("publish = %+v, want failed and compensated", ph)
	}
	if status := kilnCLI(t, "status", run.GetID()); !strings.Contains(status, "waiting for an operator until ") || !strings.Contains(status, "publish failed for flavour "+fl) {
		t.Errorf("status while waiting:\n%s", status)
	}
	kilnCLI(t, "retry", run.GetID(), "--by", "ops", "--phase", "publish", "--flavour", fl)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("build after the retry: %v", err)
	}
	if n := c.ec2.Created(ec2test.KindImportTask); n != 2 {
		t.Errorf("%d import tasks, want 2 (the retry imports afresh)", n)
	}
	live := 0
	for _, region := range []string{"eu-central-1", "ap-southeast-1", "eu-west-1", "us-east-1"} {
		for _, img := range c.ec2.Images(region) {
			if img.State == "available" {
				live++
			}
		}
	}
	if live != 4 {
		t.Errorf("%d available images, want 4 (one per region, from the retry)", live)
	}
	if imgs, _ := c.manifest(t, fl).PublishedImageMetadata["published_aws_images"].([]any); len(imgs) != 4 {
		t.Errorf("published images = %v", imgs)
	}
	if _, err := env.client.DescribeWorkflowExecution(ctx, run.GetID()+"/publish/"+fl+"/r2", ""); err != nil {
		t.Errorf("the retry's child: %v", err)
	}
	if status := kilnCLI(t, "status", run.GetID()); !strings.Contains(status, "decision: retry publish "+fl+" by ops") {
		t.Errorf("status:\n%s", status)
	}
	recordHistory(t, run.GetID(), run.GetRunID(), "build-v5-publish-retry.json")
}
