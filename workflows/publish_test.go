package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/publish"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
)

// cloud stands in for the AWS activities: images per region, with a
// region whose copy fails.
type cloud struct {
	mu       sync.Mutex
	images   map[string][]string // region → image IDs
	calls    []string
	failCopy string
	n        int
	// keys are the ImportSnapshot keys, in order; failDelete is the number
	// of DeleteImages calls to refuse.
	keys       []string
	failDelete int
}

// set changes the cloud's behaviour under its lock.
func (c *cloud) set(f func(c *cloud)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

func (c *cloud) register(env *testsuite.TestWorkflowEnvironment) {
	c.images = map[string][]string{}
	call := func(s string) {
		c.mu.Lock()
		c.calls = append(c.calls, s)
		c.mu.Unlock()
	}
	add := func(region string) string {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.n++
		id := fmt.Sprintf("ami-%04d", c.n)
		c.images[region] = append(c.images[region], id)
		return id
	}
	reg(env, "EnabledRegions", func(context.Context, publish.RegionsRequest) ([]string, error) {
		call("EnabledRegions")
		return []string{"ap-southeast-1", "eu-central-1", "eu-west-1", "us-east-1"}, nil
	})
	reg(env, "ImportSnapshot", func(_ context.Context, in publish.ImportRequest) (publish.ImportResult, error) {
		call("ImportSnapshot " + in.ObjectKey)
		c.set(func(c *cloud) { c.keys = append(c.keys, in.Key) })
		return publish.ImportResult{TaskID: "import-snap-1", SnapshotID: "snap-1"}, nil
	})
	reg(env, "RegisterImage", func(_ context.Context, in publish.RegisterRequest) (publish.RegionImage, error) {
		call("RegisterImage " + in.Name + " " + in.Arch)
		return publish.RegionImage{Region: in.Region, ImageID: add(in.Region)}, nil
	})
	reg(env, "CreateTags", func(_ context.Context, in publish.TagRequest) error {
		call("CreateTags")
		return nil
	})
	reg(env, "CopyImage", func(_ context.Context, in publish.CopyRequest) (publish.RegionImage, error) {
		call("CopyImage " + in.Region)
		c.mu.Lock()
		fail := in.Region == c.failCopy
		c.mu.Unlock()
		if fail {
			return publish.RegionImage{}, temporal.NewNonRetryableApplicationError("copy refused", publish.ErrTypeInvalidRequest, nil)
		}
		return publish.RegionImage{Region: in.Region, ImageID: add(in.Region)}, nil
	})
	reg(env, "AwaitImages", func(_ context.Context, in publish.ImagesRequest) error {
		call(fmt.Sprintf("AwaitImages %d", len(in.Images)))
		return nil
	})
	reg(env, "MakePublic", func(_ context.Context, in publish.ImagesRequest) error {
		call(fmt.Sprintf("MakePublic %d", len(in.Images)))
		return nil
	})
	reg(env, "DeleteImages", func(_ context.Context, in publish.CleanupRequest) (publish.CleanupResult, error) {
		call("DeleteImages " + strings.Join(in.Regions, ","))
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.failDelete > 0 {
			c.failDelete--
			return publish.CleanupResult{}, temporal.NewNonRetryableApplicationError("deregister refused", publish.ErrTypeInvalidRequest, nil)
		}
		var res publish.CleanupResult
		for _, r := range in.Regions {
			for _, id := range c.images[r] {
				res.Deregistered = append(res.Deregistered, publish.RegionImage{Region: r, ImageID: id})
			}
			delete(c.images, r)
		}
		return res, nil
	})
}

func (c *cloud) registered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ids := range c.images {
		n += len(ids)
	}
	return n
}

func awsPlan() workflows.Plan {
	p := storagePlan(2)
	delete(p.Publish, "aws")
	p.AWS = &workflows.AWSPlan{Region: "eu-central-1", Public: true}
	return p
}

// publishRun builds and publishes one aws and one gcp flavour.
func publishRun(t *testing.T, p workflows.Plan, c *cloud, rec *recorder) (*store, *testsuite.TestWorkflowEnvironment) {
	st := newStore()
	env := newEnv(t, p, rec, st.register, c.register, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterWorkflow(workflows.PublishFlavour)
	})
	env.ExecuteWorkflow(workflows.Build, request(flavours(2), "build", "manifest", "publish"))
	return st, env
}

func gcpResults(q tekton.PipelineRunRequest) []pipelinev1.PipelineRunResult {
	if q.Labels["kiln.dev/phase"] == "publish" {
		return []pipelinev1.PipelineRunResult{
			{Name: "image-name", Value: *pipelinev1.NewStructuredValues("gardenlinux-gcp-1443-3")},
			{Name: "project", Value: *pipelinev1.NewStructuredValues("gardenlinux-images")},
		}
	}
	return artifactResults(q)
}

func TestPublishAWSAndGCPIntoTheManifests(t *testing.T) {
	c := &cloud{}
	st, env := publishRun(t, awsPlan(), c, &recorder{results: gcpResults})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// Import, register, tag, copy to the three other enabled regions,
	// await the four images, make them public.
	want := []string{"EnabledRegions", "ImportSnapshot objects/aws-f00_prod-amd64-1443.3-0123abcd/aws-f00_prod-amd64-1443.3-0123abcd.rootfs.raw", "RegisterImage gardenlinux-aws-", "CreateTags", "AwaitImages 1",
		"CopyImage ap-southeast-1", "CopyImage eu-west-1", "CopyImage us-east-1", "AwaitImages 3", "MakePublic 4"}
	if len(c.calls) != len(want) {
		t.Fatalf("calls = %q", c.calls)
	}
	slices.Sort(c.calls[5:8]) // the copies run at once
	for i, w := range want {
		if !strings.HasPrefix(c.calls[i], w) {
			t.Errorf("call %d = %q, want %q…", i, c.calls[i], w)
		}
	}
	fl := flavours(2)
	aws := st.manifests[keyOf(fl[0])].PublishedImageMetadata
	if imgs, _ := aws["published_aws_images"].([]any); len(imgs) != 4 {
		t.Errorf("aws published images = %v, want 4 regions", aws)
	}
	gcp := st.manifests[keyOf(fl[1])].PublishedImageMetadata
	if gcp["gcp_image_name"] != "gardenlinux-gcp-1443-3" || gcp["gcp_project_name"] != "gardenlinux-images" {
		t.Errorf("gcp published images = %v", gcp)
	}
	p := progressOf(t, env)
	for _, f := range p.Flavours {
		if ph := f.Phases[len(f.Phases)-1]; ph.Name != workflows.PhasePublish || ph.State != workflows.StateSucceeded {
			t.Errorf("%s publish = %+v", f.Name, ph)
		}
	}
}

func TestFailedCopyIsCompensated(t *testing.T) {
	c := &cloud{failCopy: "eu-west-1"}
	_, env := publishRun(t, awsPlan(), c, &recorder{results: gcpResults})
	var appErr *temporal.ApplicationError
	err := env.GetWorkflowError()
	if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypePublishFailed || !strings.Contains(err.Error(), flavours(2)[0].Name()) {
		t.Fatalf("error = %v, want PublishFailed naming the aws flavour", err)
	}
	if n := c.registered(); n != 0 {
		t.Errorf("%d images left registered after compensation", n)
	}
	if last := c.calls[len(c.calls)-1]; !strings.HasPrefix(last, "DeleteImages eu-central-1,") || slices.Contains(c.calls, "MakePublic 4") {
		t.Errorf("calls = %q, want DeleteImages last and nothing made public", c.calls)
	}
	p := progressOf(t, env)
	ph := p.Flavours[0].Phases[len(p.Flavours[0].Phases)-1]
	if ph.State != workflows.StateFailed || !strings.Contains(ph.Error, "compensation succeeded") || !strings.Contains(ph.Reason, "3 images deregistered") {
		t.Errorf("aws publish = %+v, want failed and compensated (source and two copies)", ph)
	}
	// The other platform is not held back by aws.
	if ph := p.Flavours[1].Phases[len(p.Flavours[1].Phases)-1]; ph.State != workflows.StateSucceeded {
		t.Errorf("gcp publish = %+v", ph)
	}
}

func TestPublishPipelineMustReportItsPlatformsResults(t *testing.T) {
	c := &cloud{}
	// The gcp pipeline reports only the image name.
	_, env := publishRun(t, awsPlan(), c, &recorder{results: func(q tekton.PipelineRunRequest) []pipelinev1.PipelineRunResult {
		if q.Labels["kiln.dev/phase"] == "publish" {
			return []pipelinev1.PipelineRunResult{{Name: "image-name", Value: *pipelinev1.NewStructuredValues("x")}}
		}
		return artifactResults(q)
	}})
	if err := env.GetWorkflowError(); err == nil {
		t.Fatal("the build succeeded")
	}
	p := progressOf(t, env)
	gcp := p.Flavours[1].Phases[len(p.Flavours[1].Phases)-1]
	if gcp.State != workflows.StateFailed || !strings.Contains(gcp.Error, `reported no "project" result`) {
		t.Fatalf("gcp publish = %+v, want failed naming the missing project result", gcp)
	}
}

func TestPublishedFlavoursAreNotPublishedAgain(t *testing.T) {
	c := &cloud{}
	st := newStore()
	fl := flavours(2)
	for _, f := range fl {
		st.manifests[keyOf(f)] = storage.Manifest{Kiln: &storage.KilnFacts{Flavour: f.Name()}, Paths: []storage.Path{{Name: "rootfs.raw", S3Key: "k"}},
			PublishedImageMetadata: map[string]any{"published_aws_images": []any{}}}
	}
	rec := &recorder{}
	env := newEnv(t, awsPlan(), rec, st.register, c.register, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterWorkflow(workflows.PublishFlavour)
	})
	env.ExecuteWorkflow(workflows.Build, request(fl, "build", "manifest", "publish"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(c.calls) != 0 || slices.Contains(rec.phases(), "publish") || slices.Contains(rec.phases(), "image") {
		t.Errorf("calls %q, phases %v: a re-run of a published build did something", c.calls, rec.phases())
	}
}
