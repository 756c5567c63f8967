package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// AWSOptions configure the AWS activities.
type AWSOptions struct {
	// PollInterval is the time between two looks at an import task or at
	// pending images. Optional: default 15s.
	PollInterval time.Duration
	// MaxAttempts is how often the SDK tries one EC2 request that failed
	// with throttling, a 5xx or a network error before the activity attempt
	// fails with a retryable error. Optional: default 10.
	MaxAttempts int
	// MaxBackoff bounds the SDK's jittered exponential backoff between
	// those tries. Optional: default 5s. With the defaults a request gives
	// up after about 40s at worst: set the activities' HeartbeatTimeout
	// above that.
	MaxBackoff time.Duration
}

// Defaults of AWSOptions.
const (
	DefaultPollInterval = 15 * time.Second
	DefaultMaxAttempts  = 10
	DefaultMaxBackoff   = 5 * time.Second
)

// AWS holds the EC2 activities. Register it with a Temporal worker; each
// exported method is an activity whose name is its method name.
type AWS struct {
	clientFor func(region string) *ec2.Client
	opts      AWSOptions
	retryer   aws.Retryer
}

// NewAWS returns the EC2 activities. clientFor returns an EC2 client for a
// region; the activities set their own retryer on every call (see
// AWSOptions), so clients may be built with any.
func NewAWS(clientFor func(region string) *ec2.Client, opts AWSOptions) *AWS {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	return &AWS{
		clientFor: clientFor,
		opts:      opts,
		retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = opts.MaxAttempts
			o.MaxBackoff = opts.MaxBackoff
			o.Backoff = retry.NewExponentialJitterBackoff(opts.MaxBackoff)
		}),
	}
}

// ec2API is a region's client with the activities' retryer.
type ec2API struct {
	c      *ec2.Client
	optFns []func(*ec2.Options)
}

func (a *AWS) client(region string) (ec2API, error) {
	if region == "" {
		return ec2API{}, invalid("region is required")
	}
	c := a.clientFor(region)
	if c == nil {
		return ec2API{}, invalid("no EC2 client for region " + region)
	}
	return ec2API{c: c, optFns: []func(*ec2.Options){func(o *ec2.Options) { o.Retryer = a.retryer }}}, nil
}

// importProgress is ImportSnapshot's heartbeat details.
type importProgress struct {
	TaskID   string `json:"taskId"`
	Status   string `json:"status"`
	Message  string `json:"message,omitempty"`
	Progress string `json:"progress,omitempty"`
}

// awaitProgress is AwaitImages' heartbeat details.
type awaitProgress struct {
	Available int           `json:"available"`
	Pending   []RegionImage `json:"pending"`
}

// ImportSnapshot imports the raw disk in S3 as an EBS snapshot in
// in.Region and waits until the import completes, heartbeating the task's
// status and progress every PollInterval. The import task is tagged TagKey
// = in.Key at creation and the snapshot when the task completes.
//
// Idempotency: the ClientToken derives from in.Key and in.Region, so a
// retry gets the same import task back and awaits it; a Key is good for
// one import. ErrTypeImportFailed (non-retryable) if the task ends deleted,
// naming the S3 object and EC2's status message; ErrTypeConflict if the
// task of this key completed but its snapshot was deleted since (a
// DeleteImages ran: publish again under a new key); ErrTypeAccessDenied and
// ErrTypeInvalidRequest as EC2 answers.
func (a *AWS) ImportSnapshot(ctx context.Context, in ImportRequest) (ImportResult, error) {
	if in.Key == "" || in.Bucket == "" || in.ObjectKey == "" {
		return ImportResult{}, invalid("import: key, bucket and object key are required")
	}
	format := strings.ToUpper(in.Format)
	if format == "" {
		format = "RAW"
	}
	if !slices.Contains([]string{"RAW", "VHD", "VMDK"}, format) {
		return ImportResult{}, invalid("import: format " + in.Format + " is not RAW, VHD or VMDK")
	}
	c, err := a.client(in.Region)
	if err != nil {
		return ImportResult{}, err
	}
	object := "s3://" + in.Bucket + "/" + in.ObjectKey
	input := &ec2.ImportSnapshotInput{
		ClientToken: aws.String(clientToken("ImportSnapshot", in.Key, in.Region)),
		DiskContainer: &types.SnapshotDiskContainer{
			Format:     aws.String(format),
			UserBucket: &types.UserBucket{S3Bucket: aws.String(in.Bucket), S3Key: aws.String(in.ObjectKey)},
		},
		TagSpecifications: keyTags(types.ResourceTypeImportSnapshotTask, in.Key),
	}
	if in.Description != "" {
		input.Description = aws.String(in.Description)
		input.DiskContainer.Description = aws.String(in.Description)
	}
	if in.RoleName != "" {
		input.RoleName = aws.String(in.RoleName)
	}
	out, err := c.c.ImportSnapshot(ctx, input, c.optFns...)
	if err != nil {
		return ImportResult{}, classify("import snapshot from "+object, err)
	}
	res := ImportResult{TaskID: aws.ToString(out.ImportTaskId)}
	detail := out.SnapshotTaskDetail
	for {
		if detail == nil {
			detail = &types.SnapshotTaskDetail{}
		}
		p := importProgress{TaskID: res.TaskID, Status: aws.ToString(detail.Status), Message: aws.ToString(detail.StatusMessage), Progress: aws.ToString(detail.Progress)}
		heartbeat(ctx, p)
		switch p.Status {
		case "completed":
			res.SnapshotID = aws.ToString(detail.SnapshotId)
			if res.SnapshotID == "" {
				return res, fmt.Errorf("import task %s completed without a snapshot ID", res.TaskID)
			}
			return res, a.tagImported(ctx, c, in, res)
		case "deleted", "deleting":
			return res, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("import of %s (task %s) failed: %s", object, res.TaskID, p.Message), ErrTypeImportFailed, nil)
		}
		if err := a.sleep(ctx); err != nil {
			return res, err
		}
		d, err := c.c.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{res.TaskID}}, c.optFns...)
		if err != nil {
			return res, classify("describe import task "+res.TaskID, err)
		}
		if len(d.ImportSnapshotTasks) != 1 {
			return res, fmt.Errorf("describe import task %s: %d tasks in the answer", res.TaskID, len(d.ImportSnapshotTasks))
		}
		detail = d.ImportSnapshotTasks[0].SnapshotTaskDetail
	}
}

// tagImported tags the imported snapshot with the key: EC2 tags only the
// task at creation. Until this succeeds DeleteImages finds the snapshot
// through the task.
func (a *AWS) tagImported(ctx context.Context, c ec2API, in ImportRequest, res ImportResult) error {
	_, err := c.c.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: []string{res.SnapshotID},
		Tags:      []types.Tag{{Key: aws.String(TagKey), Value: aws.String(in.Key)}},
	}, c.optFns...)
	if apiCode(err) == "InvalidSnapshot.NotFound" {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"import task %s of key %s completed, but its snapshot %s no longer exists (a cleanup deleted it?): publish under a new key",
			res.TaskID, in.Key, res.SnapshotID), ErrTypeConflict, nil)
	}
	return classify("tag snapshot "+res.SnapshotID, err)
}

// archs maps a flavour's architecture to EC2's.
var archs = map[string]types.ArchitectureValues{
	"amd64": types.ArchitectureValuesX8664,
	"arm64": types.ArchitectureValuesArm64,
}

// RegisterImage registers an hvm, ENA-enabled AMI named in.Name from the
// snapshot, with one gp3 root volume /dev/xvda deleted on termination, the
// flavour's architecture and, if set, boot mode. The image is tagged TagKey
// = in.Key at creation.
//
// Idempotency: RegisterImage has no ClientToken, so it first looks for the
// account's image of that name in the region and adopts it if it carries
// TagKey = in.Key; it does the same when EC2 answers InvalidAMIName.Duplicate.
// ErrTypeConflict (non-retryable) if the name belongs to an image without
// that tag; ErrTypeInvalidRequest for an unknown architecture or boot mode
// or a parameter EC2 rejects; ErrTypeAccessDenied. It does not heartbeat.
func (a *AWS) RegisterImage(ctx context.Context, in RegisterRequest) (RegionImage, error) {
	arch, ok := archs[in.Arch]
	if !ok {
		return RegionImage{}, invalid(fmt.Sprintf("register %s: architecture %q is not amd64 or arm64", in.Name, in.Arch))
	}
	if in.BootMode != "" && !slices.Contains(types.BootModeValues("").Values(), types.BootModeValues(in.BootMode)) {
		return RegionImage{}, invalid(fmt.Sprintf("register %s: boot mode %q is not one of %v", in.Name, in.BootMode, types.BootModeValues("").Values()))
	}
	if in.Key == "" || in.Name == "" || in.SnapshotID == "" {
		return RegionImage{}, invalid("register: key, name and snapshot ID are required")
	}
	c, err := a.client(in.Region)
	if err != nil {
		return RegionImage{}, err
	}
	if img, err := a.adopt(ctx, c, in.Region, in.Name, in.Key); err != nil || img.ImageID != "" {
		return img, err
	}
	input := &ec2.RegisterImageInput{
		Name:               aws.String(in.Name),
		Architecture:       arch,
		VirtualizationType: aws.String("hvm"),
		EnaSupport:         aws.Bool(true),
		RootDeviceName:     aws.String(rootDevice),
		BlockDeviceMappings: []types.BlockDeviceMapping{{
			DeviceName: aws.String(rootDevice),
			Ebs: &types.EbsBlockDevice{
				SnapshotId:          aws.String(in.SnapshotID),
				DeleteOnTermination: aws.Bool(true),
				VolumeType:          types.VolumeTypeGp3,
			},
		}},
		TagSpecifications: keyTags(types.ResourceTypeImage, in.Key),
	}
	if in.Description != "" {
		input.Description = aws.String(in.Description)
	}
	if in.BootMode != "" {
		input.BootMode = types.BootModeValues(in.BootMode)
	}
	out, err := c.c.RegisterImage(ctx, input, c.optFns...)
	if apiCode(err) == "InvalidAMIName.Duplicate" {
		// An earlier attempt registered it and lost the answer, or someone
		// else holds the name.
		img, err := a.adopt(ctx, c, in.Region, in.Name, in.Key)
		if err == nil && img.ImageID == "" {
			err = fmt.Errorf("register %s in %s: name in use, but no image of that name is visible yet", in.Name, in.Region)
		}
		return img, err
	}
	if err != nil {
		return RegionImage{}, classify(fmt.Sprintf("register image %s in %s", in.Name, in.Region), err)
	}
	return RegionImage{Region: in.Region, ImageID: aws.ToString(out.ImageId)}, nil
}

const rootDevice = "/dev/xvda"

// adopt returns the account's image named name in the region if it carries
// the key, a zero RegionImage if there is none, and ErrTypeConflict if the
// name belongs to an image of another key.
func (a *AWS) adopt(ctx context.Context, c ec2API, region, name, key string) (RegionImage, error) {
	images, err := describeImages(ctx, c, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []types.Filter{{Name: aws.String("name"), Values: []string{escapeFilter(name)}}},
	})
	if err != nil {
		return RegionImage{}, classify(fmt.Sprintf("look up image %s in %s", name, region), err)
	}
	for _, img := range images {
		if aws.ToString(img.Name) != name {
			continue
		}
		if got := tagValue(img.Tags, TagKey); got != key {
			return RegionImage{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"image name %s in %s is taken by %s, which has %s=%q, not %q", name, region, aws.ToString(img.ImageId), TagKey, got, key),
				ErrTypeConflict, nil)
		}
		return RegionImage{Region: region, ImageID: aws.ToString(img.ImageId)}, nil
	}
	return RegionImage{}, nil
}

// CreateTags puts tags on resources (images, snapshots) of a region,
// replacing the values of keys they already have. It is idempotent by
// nature and does not heartbeat. Tags may not change TagKey: that is
// ErrTypeInvalidRequest, as are unknown resources and tags EC2 rejects.
func (a *AWS) CreateTags(ctx context.Context, in TagRequest) error {
	if len(in.Tags) == 0 {
		return nil
	}
	if len(in.ResourceIDs) == 0 {
		return invalid("create tags: no resources")
	}
	if _, ok := in.Tags[TagKey]; ok {
		return invalid("create tags: " + TagKey + " is kiln's own tag and set only at creation")
	}
	c, err := a.client(in.Region)
	if err != nil {
		return err
	}
	_, err = c.c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: in.ResourceIDs, Tags: tagList(in.Tags)}, c.optFns...)
	return classify(fmt.Sprintf("tag %s in %s", strings.Join(in.ResourceIDs, ","), in.Region), err)
}

// CopyImage starts copying the image to in.Region under in.Name and returns
// the copy, which is pending until AwaitImages sees it available. The copy
// and its snapshots are tagged at creation with in.Tags and TagKey = in.Key.
//
// Idempotency: the ClientToken derives from in.Key, the source image and
// in.Region, so a retry gets the same copy; should EC2 still answer
// InvalidAMIName.Duplicate, the image of that name carrying the key is
// adopted. ErrTypeConflict if the name belongs to another key's image;
// ErrTypeInvalidRequest and ErrTypeAccessDenied as EC2 answers. It does not
// heartbeat.
func (a *AWS) CopyImage(ctx context.Context, in CopyRequest) (RegionImage, error) {
	if in.Key == "" || in.Name == "" || in.SourceRegion == "" || in.SourceImageID == "" {
		return RegionImage{}, invalid("copy: key, name, source region and source image are required")
	}
	if v, ok := in.Tags[TagKey]; ok && v != in.Key {
		return RegionImage{}, invalid(fmt.Sprintf("copy: tag %s=%q contradicts the key %q", TagKey, v, in.Key))
	}
	c, err := a.client(in.Region)
	if err != nil {
		return RegionImage{}, err
	}
	tags := map[string]string{TagKey: in.Key}
	for k, v := range in.Tags {
		tags[k] = v
	}
	input := &ec2.CopyImageInput{
		ClientToken:   aws.String(clientToken("CopyImage", in.Key, in.SourceRegion, in.SourceImageID, in.Region)),
		Name:          aws.String(in.Name),
		SourceImageId: aws.String(in.SourceImageID),
		SourceRegion:  aws.String(in.SourceRegion),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeImage, Tags: tagList(tags)},
			{ResourceType: types.ResourceTypeSnapshot, Tags: tagList(tags)},
		},
	}
	if in.Description != "" {
		input.Description = aws.String(in.Description)
	}
	op := fmt.Sprintf("copy image %s from %s to %s", in.SourceImageID, in.SourceRegion, in.Region)
	out, err := c.c.CopyImage(ctx, input, c.optFns...)
	if apiCode(err) == "InvalidAMIName.Duplicate" {
		img, err := a.adopt(ctx, c, in.Region, in.Name, in.Key)
		if err == nil && img.ImageID == "" {
			err = fmt.Errorf("%s: name %s in use, but no image of that name is visible yet", op, in.Name)
		}
		return img, err
	}
	if err != nil {
		return RegionImage{}, classify(op, err)
	}
	return RegionImage{Region: in.Region, ImageID: aws.ToString(out.ImageId)}, nil
}

// missingPolls is how many looks in a row may miss an awaited image (EC2 is
// eventually consistent right after CopyImage) before AwaitImages gives up.
const missingPolls = 5

// AwaitImages waits until every image is available, heartbeating how many
// are and which are pending every PollInterval. It only reads, so it is
// idempotent. ErrTypeImageFailed (non-retryable) if an image goes to state
// failed, invalid, error, deregistered or disabled, or cannot be found for
// several polls; it returns when ctx is done.
func (a *AWS) AwaitImages(ctx context.Context, in ImagesRequest) error {
	pending := map[string]map[string]int{} // region → image ID → polls missed
	for _, img := range in.Images {
		if img.Region == "" || img.ImageID == "" {
			return invalid(fmt.Sprintf("await: image %+v needs a region and an ID", img))
		}
		if pending[img.Region] == nil {
			pending[img.Region] = map[string]int{}
		}
		pending[img.Region][img.ImageID] = 0
	}
	available := 0
	for {
		for _, region := range sortedKeys(pending) {
			ids := pending[region]
			c, err := a.client(region)
			if err != nil {
				return err
			}
			images, err := describeImages(ctx, c, &ec2.DescribeImagesInput{
				Owners:  []string{"self"},
				Filters: []types.Filter{{Name: aws.String("image-id"), Values: sortedKeys(ids)}},
			})
			if err != nil {
				return classify("describe images in "+region, err)
			}
			seen := map[string]bool{}
			for _, img := range images {
				id := aws.ToString(img.ImageId)
				if _, ok := ids[id]; !ok {
					continue
				}
				seen[id] = true
				switch img.State {
				case types.ImageStateAvailable:
					delete(ids, id)
					available++
				case types.ImageStateFailed, types.ImageStateInvalid, types.ImageStateError, types.ImageStateDeregistered, types.ImageStateDisabled:
					reason := ""
					if img.StateReason != nil {
						reason = ": " + aws.ToString(img.StateReason.Message)
					}
					return temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("image %s (%s) in %s is %s%s", id, aws.ToString(img.Name), region, img.State, reason), ErrTypeImageFailed, nil)
				default:
					ids[id] = 0
				}
			}
			for id, missed := range ids {
				if seen[id] {
					continue
				}
				if missed+1 >= missingPolls {
					return temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("image %s in %s does not exist", id, region), ErrTypeImageFailed, nil)
				}
				ids[id] = missed + 1
			}
			if len(ids) == 0 {
				delete(pending, region)
			}
		}
		p := awaitProgress{Available: available, Pending: []RegionImage{}}
		for _, region := range sortedKeys(pending) {
			for _, id := range sortedKeys(pending[region]) {
				p.Pending = append(p.Pending, RegionImage{Region: region, ImageID: id})
			}
		}
		heartbeat(ctx, p)
		if len(pending) == 0 {
			return nil
		}
		if err := a.sleep(ctx); err != nil {
			return err
		}
	}
}

// MakePublic grants launch permission to everyone (group all) on every
// image, heartbeating after each. Granting twice changes nothing, so it is
// idempotent. ErrTypeInvalidRequest for an unknown image,
// ErrTypeAccessDenied as EC2 answers.
func (a *AWS) MakePublic(ctx context.Context, in ImagesRequest) error {
	for i, img := range in.Images {
		c, err := a.client(img.Region)
		if err != nil {
			return err
		}
		_, err = c.c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
			ImageId: aws.String(img.ImageID),
			LaunchPermission: &types.LaunchPermissionModifications{
				Add: []types.LaunchPermission{{Group: types.PermissionGroupAll}},
			},
		}, c.optFns...)
		if err != nil {
			return classify(fmt.Sprintf("make image %s in %s public", img.ImageID, img.Region), err)
		}
		heartbeat(ctx, i+1)
	}
	return nil
}

// EnabledRegions returns the regions enabled for the account, sorted, as
// in.Region answers. It only reads; it does not heartbeat.
// ErrTypeAccessDenied as EC2 answers.
func (a *AWS) EnabledRegions(ctx context.Context, in RegionsRequest) ([]string, error) {
	c, err := a.client(in.Region)
	if err != nil {
		return nil, err
	}
	out, err := c.c.DescribeRegions(ctx, &ec2.DescribeRegionsInput{}, c.optFns...)
	if err != nil {
		return nil, classify("describe regions", err)
	}
	var regions []string
	for _, r := range out.Regions {
		switch aws.ToString(r.OptInStatus) {
		case "", "opt-in-not-required", "opted-in":
			regions = append(regions, aws.ToString(r.RegionName))
		}
	}
	sort.Strings(regions)
	return regions, nil
}

// DeleteImages is the compensation of a publish: in every region of
// in.Regions it finds by TagKey = in.Key the import tasks (cancelling
// active ones), images and snapshots this publish made, deregisters the
// images and deletes their snapshots, the snapshots tagged with the key and
// the snapshots of the key's completed import tasks (which finds an
// imported snapshot whose own tag was never written). It heartbeats the
// region it finished. Idempotent: what is gone already is skipped, so it may run
// any number of times. ErrTypeAccessDenied as EC2 answers; an image or
// snapshot still in use is a retryable error.
func (a *AWS) DeleteImages(ctx context.Context, in CleanupRequest) (CleanupResult, error) {
	var res CleanupResult
	if in.Key == "" || len(in.Regions) == 0 {
		return res, invalid("delete images: key and regions are required")
	}
	regions := slices.Clone(in.Regions)
	sort.Strings(regions)
	for _, region := range slices.Compact(regions) {
		if err := a.cleanRegion(ctx, region, in.Key, &res); err != nil {
			return res, err
		}
		heartbeat(ctx, region)
	}
	if activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Info("publish cleaned up", "key", in.Key,
			"deregistered", len(res.Deregistered), "deletedSnapshots", len(res.DeletedSnapshots))
	}
	return res, nil
}

func (a *AWS) cleanRegion(ctx context.Context, region, key string, res *CleanupResult) error {
	c, err := a.client(region)
	if err != nil {
		return err
	}
	snapshots := map[string]bool{}

	// Import tasks: cancel the active ones, so no snapshot appears after
	// this; remember the snapshots of the completed ones.
	tasks, err := importTasks(ctx, c)
	if err != nil {
		return classify("list import tasks in "+region, err)
	}
	for _, t := range tasks {
		if tagValue(t.Tags, TagKey) != key || t.SnapshotTaskDetail == nil {
			continue
		}
		id := aws.ToString(t.ImportTaskId)
		switch aws.ToString(t.SnapshotTaskDetail.Status) {
		case "active":
			if _, err := c.c.CancelImportTask(ctx, &ec2.CancelImportTaskInput{
				ImportTaskId: aws.String(id), CancelReason: aws.String("kiln publish " + key + " is being rolled back"),
			}, c.optFns...); err != nil {
				op := fmt.Sprintf("cancel import task %s in %s", id, region)
				var appErr *temporal.ApplicationError
				if ce := classify(op, err); errors.As(ce, &appErr) && appErr.Type() == ErrTypeAccessDenied {
					return ce
				}
				// It may have completed meanwhile: the next attempt sees
				// its snapshot.
				return fmt.Errorf("%s: %w", op, err)
			}
		case "completed":
			if s := aws.ToString(t.SnapshotTaskDetail.SnapshotId); s != "" {
				snapshots[s] = true
			}
		}
	}

	images, err := describeImages(ctx, c, &ec2.DescribeImagesInput{
		Owners:            []string{"self"},
		IncludeDeprecated: aws.Bool(true),
		IncludeDisabled:   aws.Bool(true),
		Filters:           []types.Filter{{Name: aws.String("tag:" + TagKey), Values: []string{escapeFilter(key)}}},
	})
	if err != nil {
		return classify("list images in "+region, err)
	}
	sort.Slice(images, func(i, j int) bool { return aws.ToString(images[i].ImageId) < aws.ToString(images[j].ImageId) })
	for _, img := range images {
		id := aws.ToString(img.ImageId)
		for _, m := range img.BlockDeviceMappings {
			if m.Ebs != nil && aws.ToString(m.Ebs.SnapshotId) != "" {
				snapshots[aws.ToString(m.Ebs.SnapshotId)] = true
			}
		}
		_, err := c.c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)}, c.optFns...)
		switch apiCode(err) {
		case "":
			res.Deregistered = append(res.Deregistered, RegionImage{Region: region, ImageID: id})
		case "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable":
		default:
			return classify(fmt.Sprintf("deregister image %s in %s", id, region), err)
		}
	}

	p := ec2.NewDescribeSnapshotsPaginator(c.c, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []types.Filter{{Name: aws.String("tag:" + TagKey), Values: []string{escapeFilter(key)}}},
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx, c.optFns...)
		if err != nil {
			return classify("list snapshots in "+region, err)
		}
		for _, s := range out.Snapshots {
			snapshots[aws.ToString(s.SnapshotId)] = true
		}
	}

	for _, id := range sortedKeys(snapshots) {
		_, err := c.c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)}, c.optFns...)
		switch apiCode(err) {
		case "":
			res.DeletedSnapshots = append(res.DeletedSnapshots, RegionSnapshot{Region: region, SnapshotID: id})
		case "InvalidSnapshot.NotFound":
		case "InvalidSnapshot.InUse":
			// Used by an image this key did not make, or a deregistration
			// EC2 has not finished: retry later.
			return fmt.Errorf("delete snapshot %s in %s: %w", id, region, err)
		default:
			return classify(fmt.Sprintf("delete snapshot %s in %s", id, region), err)
		}
	}
	return nil
}

// importTasks lists the region's import snapshot tasks (EC2 keeps them for
// seven days). It filters nothing on the server: EC2 documents no filter
// names for them.
func importTasks(ctx context.Context, c ec2API) ([]types.ImportSnapshotTask, error) {
	var tasks []types.ImportSnapshotTask
	input := &ec2.DescribeImportSnapshotTasksInput{}
	for {
		out, err := c.c.DescribeImportSnapshotTasks(ctx, input, c.optFns...)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, out.ImportSnapshotTasks...)
		if aws.ToString(out.NextToken) == "" {
			return tasks, nil
		}
		input.NextToken = out.NextToken
	}
}

func describeImages(ctx context.Context, c ec2API, in *ec2.DescribeImagesInput) ([]types.Image, error) {
	var images []types.Image
	p := ec2.NewDescribeImagesPaginator(c.c, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx, c.optFns...)
		if err != nil {
			return nil, err
		}
		images = append(images, out.Images...)
	}
	return images, nil
}

// sleep waits PollInterval or until ctx is done.
func (a *AWS) sleep(ctx context.Context) error {
	t := time.NewTimer(a.opts.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// heartbeat records progress when ctx is an activity's; the methods also
// run outside Temporal (tests, tools).
func heartbeat(ctx context.Context, details any) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, details)
	}
}

// clientToken derives an EC2 ClientToken (at most 64 ASCII characters)
// from the parts, so every attempt of a step sends the same one.
func clientToken(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "kiln-" + hex.EncodeToString(h.Sum(nil))[:48]
}

func keyTags(rt types.ResourceType, key string) []types.TagSpecification {
	return []types.TagSpecification{{ResourceType: rt, Tags: []types.Tag{{Key: aws.String(TagKey), Value: aws.String(key)}}}}
}

func tagList(m map[string]string) []types.Tag {
	var tags []types.Tag
	for _, k := range sortedKeys(m) {
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return tags
}

func tagValue(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// escapeFilter makes a value match itself literally in an EC2 filter,
// where * and ? are wildcards.
func escapeFilter(v string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`).Replace(v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func invalid(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeInvalidRequest, nil)
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify makes EC2's permanent errors non-retryable. Throttling, 5xx and
// network errors, which the SDK's retryer already retried, and anything
// unknown stay retryable.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return fmt.Errorf("%s: %w", op, err)
	}
	code := ae.ErrorCode()
	msg := fmt.Sprintf("%s: %s: %s", op, code, ae.ErrorMessage())
	switch {
	case code == "AuthFailure", code == "UnauthorizedOperation", code == "Blocked", code == "OptInRequired",
		code == "PendingVerification", code == "SignatureDoesNotMatch", code == "InvalidClientTokenId":
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeAccessDenied, nil)
	case code == "IdempotentParameterMismatch":
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeConflict, nil)
	case strings.HasPrefix(code, "InvalidParameter"), code == "MissingParameter", code == "UnknownParameter",
		strings.HasPrefix(code, "InvalidAMIID."), strings.HasPrefix(code, "InvalidAMIName."),
		code == "InvalidSnapshot.NotFound", strings.HasPrefix(code, "InvalidSnapshotID."),
		code == "InvalidBlockDeviceMapping", code == "InvalidID", code == "TagLimitExceeded", code == "InvalidAction":
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeInvalidRequest, nil)
	}
	return fmt.Errorf("%s: %w", op, err)
}
