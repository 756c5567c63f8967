package ec2test_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/kiln-build/kiln/test/ec2test"
)

// fast retries throttling and 5xx quickly, five times.
func fast(o *ec2.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = 5
		so.Backoff = retry.NewExponentialJitterBackoff(time.Millisecond)
	})
}

// once does not retry, so a test sees every injected fault.
func once(o *ec2.Options) { o.Retryer = aws.NopRetryer{} }

func code(t *testing.T, err error) (string, int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an API error, got %v", err)
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return ae.ErrorCode(), status
}

func tagSpec(rt types.ResourceType, kv ...string) types.TagSpecification {
	ts := types.TagSpecification{ResourceType: rt}
	for i := 0; i+1 < len(kv); i += 2 {
		ts.Tags = append(ts.Tags, types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return ts
}

// TestLifecycle walks an image through the calls kiln's activities make,
// with the real SDK client, and checks the server's state and answers.
func TestLifecycle(t *testing.T) {
	s := ec2test.New(ec2test.Options{ImportPolls: 2, CopyPolls: 1})
	defer s.Close()
	ctx := context.Background()
	src, dst := s.ClientWithOptions("eu-central-1", once), s.ClientWithOptions("us-east-1", once)

	imp := &ec2.ImportSnapshotInput{
		ClientToken:       aws.String("tok-1"),
		DiskContainer:     &types.SnapshotDiskContainer{Format: aws.String("RAW"), UserBucket: &types.UserBucket{S3Bucket: aws.String("b"), S3Key: aws.String("img.raw")}},
		TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeImportSnapshotTask, "k", "v")},
	}
	out, err := src.ImportSnapshot(ctx, imp)
	if err != nil {
		t.Fatal(err)
	}
	task := aws.ToString(out.ImportTaskId)
	if st := aws.ToString(out.SnapshotTaskDetail.Status); st != "active" {
		t.Fatalf("new task status %q, want active", st)
	}
	again, err := src.ImportSnapshot(ctx, imp)
	if err != nil || aws.ToString(again.ImportTaskId) != task {
		t.Fatalf("same ClientToken: task %v, %v; want %s", aws.ToString(again.ImportTaskId), err, task)
	}
	imp.DiskContainer.UserBucket.S3Key = aws.String("other.raw")
	if _, err := src.ImportSnapshot(ctx, imp); err == nil {
		t.Fatal("ClientToken reused with another object: want IdempotentParameterMismatch")
	} else if c, _ := code(t, err); c != "IdempotentParameterMismatch" {
		t.Fatalf("code %s, want IdempotentParameterMismatch", c)
	}
	if n := s.Created(ec2test.KindImportTask); n != 1 {
		t.Fatalf("created %d import tasks, want 1", n)
	}
	var snap string
	for i := 1; i <= 3; i++ {
		d, err := src.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{task}})
		if err != nil {
			t.Fatal(err)
		}
		detail := d.ImportSnapshotTasks[0].SnapshotTaskDetail
		want := "active"
		if i == 3 {
			want = "completed"
		}
		if got := aws.ToString(detail.Status); got != want {
			t.Fatalf("poll %d: status %q, want %q", i, got, want)
		}
		snap = aws.ToString(detail.SnapshotId)
		if tags := d.ImportSnapshotTasks[0].Tags; len(tags) != 1 || aws.ToString(tags[0].Key) != "k" {
			t.Fatalf("task tags %v", tags)
		}
	}
	if snap == "" || len(s.Snapshots("eu-central-1")) != 1 {
		t.Fatalf("completed import made snapshot %q; server has %v", snap, s.Snapshots("eu-central-1"))
	}
	if _, err := src.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{
		Filters: []types.Filter{{Name: aws.String("tag:k"), Values: []string{"v"}}},
	}); err == nil {
		t.Fatal("import task filters are undocumented in EC2; the server must refuse them")
	}

	if _, err := src.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{snap}, Tags: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}); err != nil {
		t.Fatal(err)
	}
	reg := &ec2.RegisterImageInput{
		Name: aws.String("gardenlinux-1"), Architecture: types.ArchitectureValuesArm64, BootMode: types.BootModeValuesUefi,
		EnaSupport: aws.Bool(true), RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{
			SnapshotId: aws.String(snap), DeleteOnTermination: aws.Bool(true), VolumeType: types.VolumeTypeGp3}}},
		TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeImage, "k", "v")},
	}
	r, err := src.RegisterImage(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	ami := aws.ToString(r.ImageId)
	if _, err := src.RegisterImage(ctx, reg); err == nil {
		t.Fatal("second RegisterImage with the same name succeeded")
	} else if c, st := code(t, err); c != "InvalidAMIName.Duplicate" || st != http.StatusBadRequest {
		t.Fatalf("duplicate name: %s %d", c, st)
	}
	// Names are unique per region: the same name registers elsewhere.
	imgs := s.Images("eu-central-1")
	if len(imgs) != 1 || imgs[0].ID != ami || imgs[0].State != "available" || imgs[0].SnapshotID != snap ||
		imgs[0].Architecture != "arm64" || imgs[0].BootMode != "uefi" || !imgs[0].EnaSupport || imgs[0].Tags["k"] != "v" {
		t.Fatalf("registered image %+v", imgs)
	}
	if _, err := src.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snap)}); err == nil {
		t.Fatal("deleted a snapshot an image uses")
	} else if c, _ := code(t, err); c != "InvalidSnapshot.InUse" {
		t.Fatalf("code %s, want InvalidSnapshot.InUse", c)
	}

	cp := &ec2.CopyImageInput{
		ClientToken: aws.String("copy-1"), Name: aws.String("gardenlinux-1"), SourceImageId: aws.String(ami), SourceRegion: aws.String("eu-central-1"),
		TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeImage, "k", "v"), tagSpec(types.ResourceTypeSnapshot, "k", "v")},
	}
	c1, err := dst.CopyImage(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := dst.CopyImage(ctx, cp)
	if err != nil || aws.ToString(c2.ImageId) != aws.ToString(c1.ImageId) {
		t.Fatalf("CopyImage with the same token: %v %v, want %s", aws.ToString(c2.ImageId), err, aws.ToString(c1.ImageId))
	}
	cp.ClientToken = aws.String("copy-2")
	if _, err := dst.CopyImage(ctx, cp); err == nil {
		t.Fatal("a second copy with the same name succeeded")
	} else if c, _ := code(t, err); c != "InvalidAMIName.Duplicate" {
		t.Fatalf("code %s", c)
	}
	copyID := aws.ToString(c1.ImageId)
	states := []string{}
	for range 2 {
		d, err := dst.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{{Name: aws.String("image-id"), Values: []string{copyID}}}})
		if err != nil || len(d.Images) != 1 {
			t.Fatalf("describe copy: %v %v", d, err)
		}
		states = append(states, string(d.Images[0].State))
	}
	if !slices.Equal(states, []string{"pending", "available"}) {
		t.Fatalf("copy states %v, want pending then available", states)
	}
	dsnaps := s.Snapshots("us-east-1")
	if len(dsnaps) != 1 || dsnaps[0].State != "completed" || dsnaps[0].Tags["k"] != "v" {
		t.Fatalf("copy's snapshot %+v", dsnaps)
	}
	if got := s.Images("us-east-1"); len(got) != 1 || got[0].SnapshotID != dsnaps[0].ID || got[0].SourceImageID != ami {
		t.Fatalf("copy %+v", got)
	}
	if _, err := src.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{copyID}}); err == nil {
		t.Fatal("an image of us-east-1 is visible in eu-central-1")
	}

	if _, err := dst.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(copyID),
		LaunchPermission: &types.LaunchPermissionModifications{Add: []types.LaunchPermission{{Group: types.PermissionGroupAll}}}}); err != nil {
		t.Fatal(err)
	}
	if !s.Images("us-east-1")[0].Public {
		t.Fatal("ModifyImageAttribute did not make the image public")
	}

	if _, err := dst.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(copyID)}); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(copyID)}); err == nil {
		t.Fatal("deregistered twice")
	} else if c, _ := code(t, err); c != "InvalidAMIID.NotFound" {
		t.Fatalf("code %s", c)
	}
	if _, err := dst.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(dsnaps[0].ID)}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Images("us-east-1")) + len(s.Snapshots("us-east-1")); n != 0 {
		t.Fatalf("%d resources left in us-east-1", n)
	}
}

// TestFilters proves DescribeImages and DescribeSnapshots filter for real:
// owner, name, tags, IDs, wildcards, and pages.
func TestFilters(t *testing.T) {
	s := ec2test.New(ec2test.Options{})
	defer s.Close()
	ctx := context.Background()
	c := s.ClientWithOptions("eu-west-1", once)
	mine := s.AddImage("eu-west-1", ec2test.Image{Name: "gl-1", Tags: map[string]string{"key": "a"}})
	other := s.AddImage("eu-west-1", ec2test.Image{Name: "gl-2", Tags: map[string]string{"key": "b", "x": "y"}})
	foreign := s.AddImage("eu-west-1", ec2test.Image{Name: "gl-1", OwnerID: "999999999999", Public: true, Tags: map[string]string{"key": "a"}})
	private := s.AddImage("eu-west-1", ec2test.Image{Name: "private-foreign", OwnerID: "999999999999"})

	f := func(name string, v ...string) types.Filter { return types.Filter{Name: aws.String(name), Values: v} }
	tests := []struct {
		name string
		in   ec2.DescribeImagesInput
		want []string
	}{
		{"all visible", ec2.DescribeImagesInput{}, []string{mine, other, foreign}},
		{"owner self", ec2.DescribeImagesInput{Owners: []string{"self"}}, []string{mine, other}},
		{"owner account", ec2.DescribeImagesInput{Owners: []string{"999999999999"}}, []string{foreign}},
		{"name", ec2.DescribeImagesInput{Filters: []types.Filter{f("name", "gl-1")}}, []string{mine, foreign}},
		{"name self", ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{f("name", "gl-1")}}, []string{mine}},
		{"wildcard", ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{f("name", "gl-*")}}, []string{mine, other}},
		{"tag", ec2.DescribeImagesInput{Filters: []types.Filter{f("tag:key", "b", "c")}}, []string{other}},
		{"tag-key", ec2.DescribeImagesInput{Filters: []types.Filter{f("tag-key", "x")}}, []string{other}},
		{"and", ec2.DescribeImagesInput{Filters: []types.Filter{f("tag:key", "a"), f("name", "gl-2")}}, nil},
		{"image-id filter", ec2.DescribeImagesInput{Filters: []types.Filter{f("image-id", other, "ami-00000000000000fff")}}, []string{other}},
		{"ids", ec2.DescribeImagesInput{ImageIds: []string{foreign}}, []string{foreign}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			p := ec2.NewDescribeImagesPaginator(c, &tt.in)
			for p.HasMorePages() {
				out, err := p.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, im := range out.Images {
					got = append(got, aws.ToString(im.ImageId))
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}

	// Pages: MaxResults cuts, NextToken resumes.
	out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, MaxResults: aws.Int32(1)})
	if err != nil || len(out.Images) != 1 || out.NextToken == nil {
		t.Fatalf("first page %v %v", out, err)
	}
	out, err = c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, MaxResults: aws.Int32(1), NextToken: out.NextToken})
	if err != nil || len(out.Images) != 1 || aws.ToString(out.Images[0].ImageId) != other || out.NextToken != nil {
		t.Fatalf("second page %v %v", out, err)
	}

	errs := []struct {
		name string
		call func() error
		code string
	}{
		{"unknown filter", func() error {
			_, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Filters: []types.Filter{f("nmae", "x")}})
			return err
		}, "InvalidParameterValue"},
		{"missing id", func() error {
			_, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-00000000000000fff"}})
			return err
		}, "InvalidAMIID.NotFound"},
		{"malformed id", func() error {
			_, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{"ami-x"}})
			return err
		}, "InvalidAMIID.Malformed"},
		{"private foreign id", func() error {
			_, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{private}})
			return err
		}, "InvalidAMIID.NotFound"},
		{"missing snapshot", func() error {
			_, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{"snap-00000000000000fff"}})
			return err
		}, "InvalidSnapshot.NotFound"},
	}
	for _, e := range errs {
		t.Run(e.name, func(t *testing.T) {
			err := e.call()
			if err == nil {
				t.Fatal("no error")
			}
			if got, _ := code(t, err); got != e.code {
				t.Fatalf("code %s, want %s", got, e.code)
			}
		})
	}
}

// TestFaults proves each fault injection: the code and status the SDK sees,
// and whether the call acted.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	register := func(c *ec2.Client, name string) error {
		_, err := c.DescribeRegions(ctx, &ec2.DescribeRegionsInput{})
		if err != nil {
			return err
		}
		_, err = c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(name),
			LaunchPermission: &types.LaunchPermissionModifications{Add: []types.LaunchPermission{{Group: types.PermissionGroupAll}}}})
		return err
	}
	tests := []struct {
		name    string
		inject  func(s *ec2test.Server)
		opt     func(*ec2.Options)
		code    string
		status  int
		public  bool // whether ModifyImageAttribute acted
		calls   int  // ModifyImageAttribute requests
		regions []string
	}{
		{name: "throttle survived by retries", inject: func(s *ec2test.Server) { s.Throttle(3) }, opt: fast, public: true, calls: 1},
		{name: "throttle", inject: func(s *ec2test.Server) { s.Throttle(1) }, opt: once, code: "RequestLimitExceeded", status: 503, calls: 0},
		{name: "fail auth", inject: func(s *ec2test.Server) { s.Fail("ModifyImageAttribute", 1, "AuthFailure") }, opt: once, code: "AuthFailure", status: 401, calls: 1},
		{name: "fail unauthorized", inject: func(s *ec2test.Server) { s.Fail("ModifyImageAttribute", 2, "UnauthorizedOperation") }, opt: fast, code: "UnauthorizedOperation", status: 403, calls: 1},
		{name: "fail any action", inject: func(s *ec2test.Server) { s.Fail("*", 1, "Blocked") }, opt: once, code: "Blocked", status: 403, calls: 0},
		{name: "lose response acts", inject: func(s *ec2test.Server) { s.LoseResponse("ModifyImageAttribute", 1) }, opt: once, code: "InternalError", status: 500, public: true, calls: 1},
		{name: "lose response retried", inject: func(s *ec2test.Server) { s.LoseResponse("ModifyImageAttribute", 1) }, opt: fast, public: true, calls: 2},
		{name: "region not enabled", inject: func(s *ec2test.Server) { s.SetRegions([]string{"us-east-1"}) }, opt: once, code: "AuthFailure", status: 401, calls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ec2test.New(ec2test.Options{})
			defer s.Close()
			id := s.AddImage("eu-west-1", ec2test.Image{Name: "img"})
			tt.inject(s)
			err := register(s.ClientWithOptions("eu-west-1", tt.opt), id)
			if tt.code == "" && err != nil {
				t.Fatal(err)
			}
			if tt.code != "" {
				if err == nil {
					t.Fatal("no error")
				}
				if c, st := code(t, err); c != tt.code || st != tt.status {
					t.Fatalf("got %s %d, want %s %d", c, st, tt.code, tt.status)
				}
			}
			if got := s.Images("eu-west-1")[0].Public; got != tt.public {
				t.Fatalf("public %v, want %v", got, tt.public)
			}
			if got := s.Calls("ModifyImageAttribute"); got != tt.calls {
				t.Fatalf("%d ModifyImageAttribute calls, want %d", got, tt.calls)
			}
		})
	}
}

// TestFailedImportAndCopy proves FailImport and FailCopy end the next task
// and copy the way EC2 reports failures.
func TestFailedImportAndCopy(t *testing.T) {
	s := ec2test.New(ec2test.Options{ImportPolls: 1, CopyPolls: 1})
	defer s.Close()
	ctx := context.Background()
	c := s.ClientWithOptions("eu-west-1", once)
	s.FailImport("ClientError: Disk validation failed [Unsupported specified file format]")
	out, err := c.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{DiskContainer: &types.SnapshotDiskContainer{
		UserBucket: &types.UserBucket{S3Bucket: aws.String("b"), S3Key: aws.String("k")}}})
	if err != nil {
		t.Fatal(err)
	}
	var detail *types.SnapshotTaskDetail
	for range 2 {
		d, err := c.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{aws.ToString(out.ImportTaskId)}})
		if err != nil {
			t.Fatal(err)
		}
		detail = d.ImportSnapshotTasks[0].SnapshotTaskDetail
	}
	if aws.ToString(detail.Status) != "deleted" || aws.ToString(detail.StatusMessage) == "" || detail.SnapshotId != nil {
		t.Fatalf("failed import detail %+v", detail)
	}
	if n := len(s.Snapshots("eu-west-1")); n != 0 {
		t.Fatalf("failed import made %d snapshots", n)
	}

	src := s.AddImage("eu-west-1", ec2test.Image{Name: "img", SnapshotID: "snap-00000000000000abc"})
	s.FailCopy("copy broke")
	cp, err := c.CopyImage(ctx, &ec2.CopyImageInput{Name: aws.String("img-copy"), SourceImageId: aws.String(src), SourceRegion: aws.String("eu-west-1")})
	if err != nil {
		t.Fatal(err)
	}
	var im types.Image
	for range 2 {
		d, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{aws.ToString(cp.ImageId)}})
		if err != nil {
			t.Fatal(err)
		}
		im = d.Images[0]
	}
	if im.State != types.ImageStateFailed || im.StateReason == nil || aws.ToString(im.StateReason.Message) != "copy broke" {
		t.Fatalf("failed copy %+v", im)
	}
}

// TestHold proves a held call waits, and acts once released even though
// its client gave up: a worker that died with a request in flight.
func TestHold(t *testing.T) {
	s := ec2test.New(ec2test.Options{})
	defer s.Close()
	id := s.AddImage("eu-west-1", ec2test.Image{Name: "img"})
	release := s.Hold("ModifyImageAttribute")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.ClientWithOptions("eu-west-1", once).ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: aws.String(id),
			LaunchPermission: &types.LaunchPermissionModifications{Add: []types.LaunchPermission{{Group: types.PermissionGroupAll}}}})
		done <- err
	}()
	waitFor(t, func() bool { return s.Calls("ModifyImageAttribute") == 1 })
	if s.Images("eu-west-1")[0].Public {
		t.Fatal("a held call acted")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error %v, want context.Canceled", err)
	}
	release()
	waitFor(t, func() bool { return s.Images("eu-west-1")[0].Public })
}

// TestRegions proves DescribeRegions lists the enabled regions, and the
// opt-in ones only when asked for all.
func TestRegions(t *testing.T) {
	s := ec2test.New(ec2test.Options{})
	defer s.Close()
	s.SetRegions([]string{"us-east-1", "eu-west-1", "af-south-1"})
	c := s.ClientWithOptions("eu-west-1", once)
	out, err := c.DescribeRegions(context.Background(), &ec2.DescribeRegionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range out.Regions {
		got[aws.ToString(r.RegionName)] = aws.ToString(r.OptInStatus)
	}
	want := map[string]string{"af-south-1": "opted-in", "eu-west-1": "opt-in-not-required", "us-east-1": "opt-in-not-required"}
	if len(got) != len(want) {
		t.Fatalf("regions %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("regions %v, want %v", got, want)
		}
	}
	all, err := c.DescribeRegions(context.Background(), &ec2.DescribeRegionsInput{AllRegions: aws.Bool(true)})
	if err != nil || len(all.Regions) <= len(out.Regions) {
		t.Fatalf("AllRegions listed %d regions (%v), want more than %d", len(all.Regions), err, len(out.Regions))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
