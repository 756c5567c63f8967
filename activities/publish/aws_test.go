package publish

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/test/ec2test"
)

const (
	source = "eu-central-1"
	bucket = "kiln-release"
	object = "objects/sha256/abc/rootfs.raw"
)

var targets = []string{"ap-southeast-1", "eu-west-1", "us-east-1"}

// fixture runs the AWS activities against an ec2test server in a Temporal
// test activity environment.
type fixture struct {
	t   *testing.T
	srv *ec2test.Server
	aws *AWS
	env *testsuite.TestActivityEnvironment

	mu         sync.Mutex
	heartbeats map[string][]converter.EncodedValues // by activity type
}

func newFixture(t *testing.T, so ec2test.Options, ao AWSOptions) *fixture {
	t.Helper()
	srv := ec2test.New(so)
	t.Cleanup(srv.Close)
	if ao.PollInterval == 0 {
		ao.PollInterval = time.Millisecond
	}
	if ao.MaxBackoff == 0 {
		ao.MaxBackoff = time.Millisecond
	}
	f := &fixture{t: t, srv: srv, heartbeats: map[string][]converter.EncodedValues{}}
	f.aws = NewAWS(srv.Client, ao)
	var s testsuite.WorkflowTestSuite
	f.env = s.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.aws)
	f.env.SetOnActivityHeartbeatListener(func(info *activity.Info, details converter.EncodedValues) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.heartbeats[info.ActivityType.Name] = append(f.heartbeats[info.ActivityType.Name], details)
	})
	return f
}

// run executes an activity as a Temporal worker would and decodes its
// result into out (nil for activities that return only an error). An
// activity that hangs fails the test.
func (f *fixture) run(fn, in, out any) error {
	f.t.Helper()
	type result struct {
		v   converter.EncodedValue
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f.env.ExecuteActivity(fn, in)
		done <- result{v, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		f.t.Fatalf("activity %T did not return within 20s", fn)
	}
	v, err := r.v, r.err
	if err != nil {
		return err
	}
	if out != nil {
		if err := v.Get(out); err != nil {
			f.t.Fatalf("decode result: %v", err)
		}
	}
	return nil
}

func (f *fixture) must(fn, in, out any) {
	f.t.Helper()
	if err := f.run(fn, in, out); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) importSnapshot(key string) ImportResult {
	f.t.Helper()
	var res ImportResult
	f.must(f.aws.ImportSnapshot, ImportRequest{Key: key, Region: source, Bucket: bucket, ObjectKey: object, Description: "gardenlinux " + key}, &res)
	return res
}

func (f *fixture) register(key, name, snapshot string) RegionImage {
	f.t.Helper()
	var img RegionImage
	f.must(f.aws.RegisterImage, RegisterRequest{Key: key, Region: source, Name: name, SnapshotID: snapshot, Arch: "arm64", BootMode: "uefi"}, &img)
	return img
}

func (f *fixture) copyTo(key, name string, src RegionImage, region string) RegionImage {
	f.t.Helper()
	var img RegionImage
	f.must(f.aws.CopyImage, CopyRequest{Key: key, SourceRegion: src.Region, SourceImageID: src.ImageID, Region: region, Name: name,
		Tags: map[string]string{"flavour": "aws-gardener_prod-arm64"}}, &img)
	return img
}

// publish runs the whole sequence the workflow runs and returns the images.
// between, if set, runs after the image is registered and tagged.
func (f *fixture) publish(key, name string, between func()) []RegionImage {
	f.t.Helper()
	imp := f.importSnapshot(key)
	src := f.register(key, name, imp.SnapshotID)
	f.must(f.aws.CreateTags, TagRequest{Region: source, ResourceIDs: []string{src.ImageID, imp.SnapshotID},
		Tags: map[string]string{"flavour": "aws-gardener_prod-arm64"}}, nil)
	if between != nil {
		between()
	}
	images := []RegionImage{src}
	for _, r := range targets {
		images = append(images, f.copyTo(key, name, src, r))
	}
	f.must(f.aws.AwaitImages, ImagesRequest{Images: images}, nil)
	f.must(f.aws.MakePublic, ImagesRequest{Images: images}, nil)
	return images
}

// checkPublished asserts the end state of a publish: in every region one
// available, public image of the name with the key, on its own snapshot,
// also tagged with the key.
func (f *fixture) checkPublished(key, name string, images []RegionImage) {
	f.t.Helper()
	for _, want := range images {
		var found []ec2test.Image
		for _, img := range f.srv.Images(want.Region) {
			if img.Name == name {
				found = append(found, img)
			}
		}
		if len(found) != 1 {
			f.t.Fatalf("%s: %d images named %s, want 1", want.Region, len(found), name)
		}
		img := found[0]
		if img.ID != want.ImageID || img.State != "available" || !img.Public || img.Tags[TagKey] != key || img.Tags["flavour"] == "" {
			f.t.Fatalf("%s: image %+v, want %s available, public, tagged %s=%s and flavour", want.Region, img, want.ImageID, TagKey, key)
		}
		if img.Architecture != "arm64" || img.BootMode != "uefi" || !img.EnaSupport || img.VirtualizationType != "hvm" ||
			img.RootDeviceName != "/dev/xvda" || len(img.BlockDevices) != 1 || img.BlockDevices[0].VolumeType != "gp3" ||
			!img.BlockDevices[0].DeleteOnTermination || img.BlockDevices[0].DeviceName != "/dev/xvda" {
			f.t.Fatalf("%s: image %+v is not an arm64 uefi hvm ENA image on a gp3 /dev/xvda", want.Region, img)
		}
		snaps := f.snapshotsOf(want.Region, key)
		if len(snaps) != 1 || snaps[0].ID != img.SnapshotID || snaps[0].State != "completed" {
			f.t.Fatalf("%s: snapshots of key %s %+v, want only %s, completed", want.Region, key, snaps, img.SnapshotID)
		}
	}
}

func (f *fixture) snapshotsOf(region, key string) []ec2test.Snapshot {
	var out []ec2test.Snapshot
	for _, s := range f.srv.Snapshots(region) {
		if s.Tags[TagKey] == key {
			out = append(out, s)
		}
	}
	return out
}

func allRegions() []string { return append([]string{source}, targets...) }

// appError asserts err is an ApplicationError of the type and retryability.
func appError(t *testing.T, err error, typ string, nonRetryable bool) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an application error", err)
	}
	if ae.Type() != typ || ae.NonRetryable() != nonRetryable {
		t.Fatalf("error %v: type %q non-retryable %v, want %q %v", err, ae.Type(), ae.NonRetryable(), typ, nonRetryable)
	}
	return ae
}

// retryable asserts err is one Temporal retries.
func retryable(t *testing.T, err error) {
	t.Helper()
	var ae *temporal.ApplicationError
	if err == nil || (errors.As(err, &ae) && ae.NonRetryable()) {
		t.Fatalf("error %v, want a retryable error", err)
	}
}

// TestPublish runs import, register, tag, copy to three regions, await and
// make public, and checks four available public images with their
// snapshots, all tagged with the key, each made exactly once.
func TestPublish(t *testing.T) {
	f := newFixture(t, ec2test.Options{ImportPolls: 3, CopyPolls: 2}, AWSOptions{})
	images := f.publish("key-1", "gardenlinux-aws-1877.0-arm64", nil)
	f.checkPublished("key-1", "gardenlinux-aws-1877.0-arm64", images)

	for kind, want := range map[string]int{ec2test.KindImportTask: 1, ec2test.KindImage: 4, ec2test.KindSnapshot: 4} {
		if got := f.srv.Created(kind); got != want {
			t.Errorf("created %d %s, want %d", got, kind, want)
		}
	}
	tasks := f.srv.ImportTasks(source)
	if len(tasks) != 1 || tasks[0].Tags[TagKey] != "key-1" || tasks[0].Bucket != bucket || tasks[0].Key != object || tasks[0].Format != "RAW" {
		t.Fatalf("import tasks %+v", tasks)
	}
	// The import was polled, and heartbeated its status while it was.
	if n := f.srv.Calls("DescribeImportSnapshotTasks"); n != 4 {
		t.Errorf("%d DescribeImportSnapshotTasks calls, want 4 (3 active, 1 completed)", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	hb := f.heartbeats["ImportSnapshot"]
	if len(hb) == 0 {
		t.Fatal("ImportSnapshot did not heartbeat")
	}
	var p importProgress
	if err := hb[0].Get(&p); err != nil || p.TaskID != tasks[0].ID || p.Status == "" {
		t.Fatalf("import heartbeat %+v (%v)", p, err)
	}
	if len(f.heartbeats["AwaitImages"]) == 0 {
		t.Fatal("AwaitImages did not heartbeat")
	}
}

// TestThrottling proves a throttling burst in the middle of a publish is
// survived inside the activities' attempts, and that a burst longer than
// the SDK's attempts fails the attempt with a retryable error.
func TestThrottling(t *testing.T) {
	t.Run("burst survived", func(t *testing.T) {
		f := newFixture(t, ec2test.Options{ImportPolls: 1, CopyPolls: 1}, AWSOptions{})
		images := f.publish("key-1", "gardenlinux-1", func() { f.srv.Throttle(8) })
		f.checkPublished("key-1", "gardenlinux-1", images)
		if n := f.srv.Calls("CopyImage"); n != 11 {
			t.Fatalf("%d CopyImage requests, want 11 (8 throttled, then 3 answered)", n)
		}
	})
	t.Run("burst outlasts the SDK", func(t *testing.T) {
		f := newFixture(t, ec2test.Options{}, AWSOptions{MaxAttempts: 3})
		f.srv.Throttle(3)
		err := f.run(f.aws.EnabledRegions, RegionsRequest{Region: source}, nil)
		retryable(t, err)
		if !strings.Contains(err.Error(), "RequestLimitExceeded") {
			t.Fatalf("error %v does not name the throttling", err)
		}
		var regions []string
		f.must(f.aws.EnabledRegions, RegionsRequest{Region: source}, &regions) // Temporal's retry
	})
}

// TestCompensation fails a publish mid-copy, with one copy still pending
// and the source image disabled, and proves DeleteImages leaves no image and no snapshot of the key in any
// region, the imported one included, touches nothing of another key, and
// can run twice.
func TestCompensation(t *testing.T) {
	f := newFixture(t, ec2test.Options{ImportPolls: 1, CopyPolls: 1000}, AWSOptions{})
	// Another publish, which must survive the cleanup.
	otherImp := f.importSnapshot("other")
	other := f.register("other", "other-1", otherImp.SnapshotID)
	otherCopy := f.copyTo("other", "other-1", other, "eu-west-1")

	imp := f.importSnapshot("key-1")
	src := f.register("key-1", "gardenlinux-1", imp.SnapshotID)
	f.copyTo("key-1", "gardenlinux-1", src, "ap-southeast-1") // stays pending
	f.srv.Fail("CopyImage", 1, "InvalidParameterValue")
	err := f.run(f.aws.CopyImage, CopyRequest{Key: "key-1", SourceRegion: source, SourceImageID: src.ImageID, Region: "eu-west-1", Name: "gardenlinux-1"}, nil)
	appError(t, err, ErrTypeInvalidRequest, true)

	// A disabled image is hidden from DescribeImages unless asked for.
	if err := f.srv.SetImageState(source, src.ImageID, "disabled", ""); err != nil {
		t.Fatal(err)
	}
	var res CleanupResult
	f.must(f.aws.DeleteImages, CleanupRequest{Key: "key-1", Regions: allRegions()}, &res)
	if len(res.Deregistered) != 2 || len(res.DeletedSnapshots) != 2 {
		t.Fatalf("cleanup %+v, want 2 images and 2 snapshots", res)
	}
	for _, r := range allRegions() {
		for _, img := range f.srv.Images(r) {
			if img.Tags[TagKey] != "other" {
				t.Errorf("%s: image %+v left", r, img)
			}
		}
		for _, s := range f.srv.Snapshots(r) {
			if s.Tags[TagKey] != "other" {
				t.Errorf("%s: snapshot %+v left", r, s)
			}
		}
	}
	if imgs := f.srv.Images(source); len(imgs) != 1 || imgs[0].ID != other.ImageID {
		t.Fatalf("the other key's image is gone: %+v", imgs)
	}
	if imgs := f.srv.Images("eu-west-1"); len(imgs) != 1 || imgs[0].ID != otherCopy.ImageID {
		t.Fatalf("the other key's copy is gone: %+v", imgs)
	}

	var again CleanupResult
	f.must(f.aws.DeleteImages, CleanupRequest{Key: "key-1", Regions: allRegions()}, &again)
	if len(again.Deregistered)+len(again.DeletedSnapshots) != 0 {
		t.Fatalf("second cleanup removed %+v", again)
	}
}

// TestCompensationAfterCrashes proves DeleteImages finds what a crash left
// without tags or IDs: an imported snapshot whose tag was never written
// (found through its import task), and an import still running (cancelled,
// so its snapshot never appears).
func TestCompensationAfterCrashes(t *testing.T) {
	t.Run("untagged imported snapshot", func(t *testing.T) {
		f := newFixture(t, ec2test.Options{ImportPolls: 1}, AWSOptions{MaxAttempts: 2})
		f.srv.Fail("CreateTags", 2, "InternalError") // the worker never tags the snapshot
		err := f.run(f.aws.ImportSnapshot, ImportRequest{Key: "key-1", Region: source, Bucket: bucket, ObjectKey: object}, nil)
		retryable(t, err)
		snaps := f.srv.Snapshots(source)
		if len(snaps) != 1 || snaps[0].Tags[TagKey] != "" {
			t.Fatalf("snapshots %+v, want one untagged", snaps)
		}
		var res CleanupResult
		f.must(f.aws.DeleteImages, CleanupRequest{Key: "key-1", Regions: []string{source}}, &res)
		if len(f.srv.Snapshots(source)) != 0 || len(res.DeletedSnapshots) != 1 || res.DeletedSnapshots[0].SnapshotID != snaps[0].ID {
			t.Fatalf("cleanup %+v left %+v", res, f.srv.Snapshots(source))
		}
		// The key's import is spent: importing again under it is a conflict,
		// not a register of a deleted snapshot later.
		err = f.run(f.aws.ImportSnapshot, ImportRequest{Key: "key-1", Region: source, Bucket: bucket, ObjectKey: object}, nil)
		appError(t, err, ErrTypeConflict, true)
	})
	t.Run("import still running", func(t *testing.T) {
		f := newFixture(t, ec2test.Options{ImportPolls: 1000}, AWSOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := f.aws.ImportSnapshot(ctx, ImportRequest{Key: "key-1", Region: source, Bucket: bucket, ObjectKey: object})
			done <- err
		}()
		waitFor(t, func() bool { return f.srv.Calls("DescribeImportSnapshotTasks") >= 2 })
		cancel() // the worker dies, or the workflow gives up
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("ImportSnapshot returned %v after cancel, want context.Canceled", err)
		}
		var res CleanupResult
		f.must(f.aws.DeleteImages, CleanupRequest{Key: "key-1", Regions: []string{source}}, &res)
		tasks := f.srv.ImportTasks(source)
		if len(tasks) != 1 || tasks[0].Status != "deleted" {
			t.Fatalf("import tasks %+v, want the task cancelled", tasks)
		}
		if n := len(f.srv.Snapshots(source)); n != 0 {
			t.Fatalf("%d snapshots after cleanup", n)
		}
	})
}

// TestCrashBetweenSteps loses the answer of each creating call after EC2
// acted, as a worker crash would, and retries the activity as Temporal
// would: the retry finds the earlier result, so each thing exists once and
// the same ID comes back. With the SDK's own retries, one activity attempt
// already copes.
func TestCrashBetweenSteps(t *testing.T) {
	type step struct {
		action, kind string
		// prepare makes what the step needs; do runs it and returns an ID.
		prepare func(f *fixture) any
		do      func(f *fixture, in any) (string, error)
	}
	imp := step{
		action: "ImportSnapshot", kind: ec2test.KindImportTask,
		prepare: func(f *fixture) any { return nil },
		do: func(f *fixture, _ any) (string, error) {
			var res ImportResult
			err := f.run(f.aws.ImportSnapshot, ImportRequest{Key: "key-1", Region: source, Bucket: bucket, ObjectKey: object}, &res)
			return res.TaskID + "/" + res.SnapshotID, err
		},
	}
	reg := step{
		action: "RegisterImage", kind: ec2test.KindImage,
		prepare: func(f *fixture) any { return f.importSnapshot("key-1").SnapshotID },
		do: func(f *fixture, in any) (string, error) {
			var img RegionImage
			err := f.run(f.aws.RegisterImage, RegisterRequest{Key: "key-1", Region: source, Name: "gardenlinux-1", SnapshotID: in.(string), Arch: "amd64"}, &img)
			return img.ImageID, err
		},
	}
	cp := step{
		action: "CopyImage", kind: ec2test.KindImage,
		prepare: func(f *fixture) any {
			return f.register("key-1", "gardenlinux-1", f.importSnapshot("key-1").SnapshotID)
		},
		do: func(f *fixture, in any) (string, error) {
			var img RegionImage
			src := in.(RegionImage)
			err := f.run(f.aws.CopyImage, CopyRequest{Key: "key-1", SourceRegion: source, SourceImageID: src.ImageID, Region: "eu-west-1", Name: "gardenlinux-1"}, &img)
			return img.ImageID, err
		},
	}
	tests := []struct {
		name        string
		step        step
		maxAttempts int
		attempts    int // activity attempts until success
		// lookups is how many DescribeImages calls the step makes: copies
		// and imports are found again by ClientToken alone, registrations
		// by name.
		lookups int
	}{
		{"import, worker retries", imp, 1, 2, 0},
		{"import, SDK retries", imp, 0, 1, 0},
		{"register, worker retries", reg, 1, 2, 2},
		{"register, SDK retries", reg, 0, 1, 2}, // the SDK's retry meets InvalidAMIName.Duplicate
		{"copy, worker retries", cp, 1, 2, 0},
		{"copy, SDK retries", cp, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, ec2test.Options{ImportPolls: 1, CopyPolls: 1}, AWSOptions{MaxAttempts: tt.maxAttempts})
			in := tt.step.prepare(f)
			before, lookups := f.srv.Created(tt.step.kind), f.srv.Calls("DescribeImages")
			f.srv.LoseResponse(tt.step.action, 1)
			var id string
			var err error
			for attempt := 1; attempt <= tt.attempts; attempt++ {
				id, err = tt.step.do(f, in)
				if attempt < tt.attempts {
					retryable(t, err)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.srv.Created(tt.step.kind) - before; got != 1 {
				t.Fatalf("%s created %d %s, want 1", tt.step.action, got, tt.step.kind)
			}
			if got := f.srv.Calls("DescribeImages") - lookups; got != tt.lookups {
				t.Fatalf("%s looked up images %d times, want %d", tt.step.action, got, tt.lookups)
			}
			// The retry returns what the lost call made.
			switch tt.step.action {
			case "ImportSnapshot":
				tasks := f.srv.ImportTasks(source)
				if len(tasks) != 1 || id != tasks[0].ID+"/"+tasks[0].SnapshotID || f.srv.Snapshots(source)[0].Tags[TagKey] != "key-1" {
					t.Fatalf("result %s, tasks %+v", id, tasks)
				}
			default:
				region := source
				if tt.step.action == "CopyImage" {
					region = "eu-west-1"
				}
				imgs := f.srv.Images(region)
				if len(imgs) != 1 || imgs[0].ID != id || imgs[0].Name != "gardenlinux-1" {
					t.Fatalf("result %s, images %+v", id, imgs)
				}
			}
		})
	}
}

// TestWorkerCrashMidRequest kills the worker while EC2 holds its CopyImage
// request; EC2 then copies anyway. The retried activity gets that copy.
func TestWorkerCrashMidRequest(t *testing.T) {
	f := newFixture(t, ec2test.Options{ImportPolls: 1}, AWSOptions{})
	src := f.register("key-1", "gardenlinux-1", f.importSnapshot("key-1").SnapshotID)
	release := f.srv.Hold("CopyImage")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	in := CopyRequest{Key: "key-1", SourceRegion: source, SourceImageID: src.ImageID, Region: "us-east-1", Name: "gardenlinux-1"}
	go func() {
		_, err := f.aws.CopyImage(ctx, in)
		done <- err
	}()
	waitFor(t, func() bool { return f.srv.Calls("CopyImage") == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("CopyImage returned %v, want context.Canceled", err)
	}
	release()
	waitFor(t, func() bool { return len(f.srv.Images("us-east-1")) == 1 })
	var img RegionImage
	f.must(f.aws.CopyImage, in, &img)
	if imgs := f.srv.Images("us-east-1"); len(imgs) != 1 || imgs[0].ID != img.ImageID {
		t.Fatalf("retry returned %s; images %+v", img.ImageID, imgs)
	}
}

// TestErrors proves the classification of failures.
func TestErrors(t *testing.T) {
	importReq := ImportRequest{Key: "key-1", Region: source, Bucket: bucket, ObjectKey: object}
	tests := []struct {
		name         string
		run          func(f *fixture) error
		typ          string
		nonRetryable bool
		mention      string
	}{
		{
			name: "import task fails",
			run: func(f *fixture) error {
				f.srv.FailImport("ClientError: Disk validation failed [Unsupported specified file format]")
				return f.run(f.aws.ImportSnapshot, importReq, nil)
			},
			typ: ErrTypeImportFailed, nonRetryable: true, mention: "s3://" + bucket + "/" + object,
		},
		{
			name: "auth failure",
			run: func(f *fixture) error {
				f.srv.Fail("ImportSnapshot", 1, "AuthFailure")
				return f.run(f.aws.ImportSnapshot, importReq, nil)
			},
			typ: ErrTypeAccessDenied, nonRetryable: true, mention: "AuthFailure",
		},
		{
			name: "unauthorized operation",
			run: func(f *fixture) error {
				f.srv.Fail("ModifyImageAttribute", 1, "UnauthorizedOperation")
				id := f.srv.AddImage(source, ec2test.Image{Name: "x-1"})
				return f.run(f.aws.MakePublic, ImagesRequest{Images: []RegionImage{{Region: source, ImageID: id}}}, nil)
			},
			typ: ErrTypeAccessDenied, nonRetryable: true, mention: "UnauthorizedOperation",
		},
		{
			name: "region not enabled",
			run: func(f *fixture) error {
				f.srv.SetRegions([]string{"us-east-1"})
				return f.run(f.aws.EnabledRegions, RegionsRequest{Region: source}, nil)
			},
			typ: ErrTypeAccessDenied, nonRetryable: true,
		},
		{
			name: "unknown architecture",
			run: func(f *fixture) error {
				return f.run(f.aws.RegisterImage, RegisterRequest{Key: "k", Region: source, Name: "x-1", SnapshotID: "snap-00000000000000001", Arch: "riscv64"}, nil)
			},
			typ: ErrTypeInvalidRequest, nonRetryable: true, mention: "riscv64",
		},
		{
			name: "missing snapshot",
			run: func(f *fixture) error {
				return f.run(f.aws.RegisterImage, RegisterRequest{Key: "k", Region: source, Name: "x-1", SnapshotID: "snap-00000000000000fff", Arch: "amd64"}, nil)
			},
			typ: ErrTypeInvalidRequest, nonRetryable: true, mention: "InvalidSnapshot.NotFound",
		},
		{
			name: "name taken by another key",
			run: func(f *fixture) error {
				f.srv.AddImage(source, ec2test.Image{Name: "gardenlinux-1", Tags: map[string]string{TagKey: "other"}})
				return f.run(f.aws.RegisterImage, RegisterRequest{Key: "key-1", Region: source, Name: "gardenlinux-1", SnapshotID: f.importSnapshot("key-1").SnapshotID, Arch: "amd64"}, nil)
			},
			typ: ErrTypeConflict, nonRetryable: true, mention: "gardenlinux-1",
		},
		{
			name: "copy name taken by an untagged image",
			run: func(f *fixture) error {
				f.srv.AddImage("eu-west-1", ec2test.Image{Name: "gardenlinux-1"})
				src := f.register("key-1", "gardenlinux-1", f.importSnapshot("key-1").SnapshotID)
				return f.run(f.aws.CopyImage, CopyRequest{Key: "key-1", SourceRegion: source, SourceImageID: src.ImageID, Region: "eu-west-1", Name: "gardenlinux-1"}, nil)
			},
			typ: ErrTypeConflict, nonRetryable: true,
		},
		{
			name: "copy fails",
			run: func(f *fixture) error {
				src := f.register("key-1", "gardenlinux-1", f.importSnapshot("key-1").SnapshotID)
				f.srv.FailCopy("snapshot copy failed")
				cp := f.copyTo("key-1", "gardenlinux-1", src, "us-east-1")
				return f.run(f.aws.AwaitImages, ImagesRequest{Images: []RegionImage{src, cp}}, nil)
			},
			typ: ErrTypeImageFailed, nonRetryable: true, mention: "snapshot copy failed",
		},
		{
			name: "awaited image does not exist",
			run: func(f *fixture) error {
				return f.run(f.aws.AwaitImages, ImagesRequest{Images: []RegionImage{{Region: source, ImageID: "ami-00000000000000fff"}}}, nil)
			},
			typ: ErrTypeImageFailed, nonRetryable: true,
		},
		{
			name: "internal errors outlast the SDK",
			run: func(f *fixture) error {
				f.srv.Fail("DescribeRegions", 100, "InternalError")
				return f.run(f.aws.EnabledRegions, RegionsRequest{Region: source}, nil)
			},
			typ: "", nonRetryable: false, mention: "InternalError",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, ec2test.Options{ImportPolls: 1, CopyPolls: 1}, AWSOptions{MaxAttempts: 3})
			err := tt.run(f)
			if tt.typ == "" {
				retryable(t, err)
			} else {
				appError(t, err, tt.typ, tt.nonRetryable)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// TestRegisterIgnoresOtherAccounts proves RegisterImage looks only at the
// account's own images: another account's public image of the same name
// neither conflicts nor gets adopted.
func TestRegisterIgnoresOtherAccounts(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, AWSOptions{})
	foreign := f.srv.AddImage(source, ec2test.Image{Name: "gardenlinux-1", OwnerID: "999999999999", Public: true, Tags: map[string]string{TagKey: "key-1"}})
	img := f.register("key-1", "gardenlinux-1", f.importSnapshot("key-1").SnapshotID)
	if img.ImageID == foreign || len(f.srv.Images(source)) != 2 {
		t.Fatalf("registered %s; images %+v", img.ImageID, f.srv.Images(source))
	}
	// And a second run adopts its own image.
	if again := f.register("key-1", "gardenlinux-1", f.srv.Images(source)[1].SnapshotID); again != img {
		t.Fatalf("second register returned %+v, want %+v", again, img)
	}
	if n := f.srv.Calls("RegisterImage"); n != 1 {
		t.Fatalf("%d RegisterImage calls, want 1", n)
	}
}

// TestAwaitCancelled proves AwaitImages returns promptly when its context
// is cancelled.
func TestAwaitCancelled(t *testing.T) {
	f := newFixture(t, ec2test.Options{ImportPolls: 1, CopyPolls: 1_000_000}, AWSOptions{})
	src := f.register("key-1", "gardenlinux-1", f.importSnapshot("key-1").SnapshotID)
	cp := f.copyTo("key-1", "gardenlinux-1", src, "eu-west-1")
	// An hour between polls: only a sleep that watches ctx returns in time.
	slow := NewAWS(f.srv.Client, AWSOptions{PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- slow.AwaitImages(ctx, ImagesRequest{Images: []RegionImage{src, cp}}) }()
	waitFor(t, func() bool { return f.srv.Calls("DescribeImages") >= 3 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("AwaitImages returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AwaitImages did not return after cancel")
	}
}

// TestEnabledRegions proves the answer is the server's enabled regions,
// sorted.
func TestEnabledRegions(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, AWSOptions{})
	f.srv.SetRegions([]string{"us-east-1", "eu-central-1", "af-south-1", "ap-southeast-1"})
	var regions []string
	f.must(f.aws.EnabledRegions, RegionsRequest{Region: source}, &regions)
	if want := []string{"af-south-1", "ap-southeast-1", "eu-central-1", "us-east-1"}; !slices.Equal(regions, want) {
		t.Fatalf("regions %v, want %v", regions, want)
	}
}

func TestClientToken(t *testing.T) {
	a, b := clientToken("CopyImage", "key", "eu-west-1"), clientToken("CopyImage", "key", "us-east-1")
	if a == b || len(a) > 64 || a != clientToken("CopyImage", "key", "eu-west-1") {
		t.Fatalf("tokens %q %q", a, b)
	}
	if clientToken("ab", "c") == clientToken("a", "bc") {
		t.Fatal("token parts are not separated")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
