package ec2test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// region is one region's state. Every method runs with Server.mu held.
type region struct {
	name      string
	tasks     map[string]*importTask
	snapshots map[string]*snapshot
	images    map[string]*image
	// tokens maps action+ClientToken to what the first call created.
	tokens map[string]token
}

type token struct {
	id     string
	params string // the request's other parameters, to detect reuse
}

type importTask struct {
	id, description, bucket, key, format, url string
	status, statusMessage, progress           string
	snapshotID                                string
	tags                                      map[string]string
	observed                                  int
	failMessage                               string
}

type snapshot struct {
	id, description, owner, state string
	size                          int
	tags                          map[string]string
	started                       time.Time
}

type blockDevice = BlockDevice

type image struct {
	id, name, description, owner, state, stateReason string
	arch, bootMode, rootDevice, virt                 string
	ena, public                                      bool
	devices                                          []blockDevice
	sourceImageID, sourceRegion                      string
	tags                                             map[string]string
	created                                          time.Time
	observed, polls                                  int
	failMessage                                      string
}

func (im *image) export(region string) Image {
	out := Image{
		ID: im.id, Region: region, Name: im.name, Description: im.description, OwnerID: im.owner, State: im.state,
		StateReason: im.stateReason, Public: im.public, Tags: clone(im.tags), BlockDevices: slices.Clone(im.devices),
		Architecture: im.arch, BootMode: im.bootMode, EnaSupport: im.ena, RootDeviceName: im.rootDevice,
		VirtualizationType: im.virt, SourceImageID: im.sourceImageID, SourceRegion: im.sourceRegion,
	}
	for _, d := range im.devices {
		if d.DeviceName == im.rootDevice || out.SnapshotID == "" {
			out.SnapshotID = d.SnapshotID
		}
	}
	return out
}

var (
	amiID      = regexp.MustCompile(`^ami-([0-9a-f]{8}|[0-9a-f]{17})$`)
	snapID     = regexp.MustCompile(`^snap-([0-9a-f]{8}|[0-9a-f]{17})$`)
	amiName    = regexp.MustCompile(`^[a-zA-Z0-9()\[\] ./\-'@_]{3,128}$`)
	validArchs = []string{"i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"}
	bootModes  = []string{"legacy-bios", "uefi", "uefi-preferred"}
	volTypes   = []string{"standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"}
	formats    = []string{"RAW", "VHD", "VMDK"}
)

// checkToken returns what an earlier call with the same ClientToken made,
// or a mismatch error if it had other parameters, as EC2 does.
func (r *region) checkToken(action, tok, sig string) (string, *apiError) {
	if tok == "" {
		return "", nil
	}
	if len(tok) > 64 {
		return "", &apiError{Code: "InvalidParameterValue", Message: "ClientToken must be at most 64 ASCII characters."}
	}
	t, ok := r.tokens[action+"\x00"+tok]
	if !ok {
		return "", nil
	}
	if t.params != sig {
		return "", &apiError{Code: "IdempotentParameterMismatch", Message: "The client token " + tok + " was used with different parameters."}
	}
	return t.id, nil
}

func (s *Server) importSnapshot(r *region, p params) (any, *apiError) {
	tok := p.get("ClientToken")
	bucket, key := p.get("DiskContainer.UserBucket.S3Bucket"), p.get("DiskContainer.UserBucket.S3Key")
	u := p.get("DiskContainer.Url")
	format := strings.ToUpper(p.get("DiskContainer.Format"))
	sig := strings.Join([]string{bucket, key, u, format, p.get("Description"), p.get("RoleName")}, "\x00")
	if id, err := r.checkToken("ImportSnapshot", tok, sig); err != nil {
		return nil, err
	} else if id != "" {
		x := r.tasks[id].xml()
		return &x, nil
	}
	if (bucket == "" || key == "") && u == "" {
		return nil, missing("DiskContainer.UserBucket")
	}
	if format != "" && !slices.Contains(formats, format) {
		return nil, invalidValue("DiskContainer.Format", p.get("DiskContainer.Format"))
	}
	specs, err := p.tagSpecs("import-snapshot-task")
	if err != nil {
		return nil, err
	}
	t := &importTask{
		id: s.newID("import-snap"), description: p.get("Description"), bucket: bucket, key: key, url: u, format: format,
		status: "active", statusMessage: "pending", progress: "0", tags: specs["import-snapshot-task"],
	}
	if t.tags == nil {
		t.tags = map[string]string{}
	}
	if len(s.badTasks) > 0 {
		t.failMessage, s.badTasks = s.badTasks[0], s.badTasks[1:]
	}
	r.tasks[t.id] = t
	s.created[KindImportTask]++
	if tok != "" {
		r.tokens["ImportSnapshot\x00"+tok] = token{id: t.id, params: sig}
	}
	x := t.xml()
	return &x, nil
}

func (t *importTask) xml() xmlImportTask {
	d := xmlSnapshotTaskDetail{
		Description: t.description, Format: t.format, Progress: t.progress, SnapshotID: t.snapshotID,
		Status: t.status, StatusMessage: t.statusMessage, URL: t.url,
	}
	if t.bucket != "" {
		d.UserBucket = &xmlUserBucket{S3Bucket: t.bucket, S3Key: t.key}
	}
	if t.status == "completed" {
		d.DiskImageSize = "2147483648.0"
	}
	return xmlImportTask{Description: t.description, ImportTaskID: t.id, SnapshotTaskDetail: d, Tags: xmlTags(t.tags)}
}

// observe advances an active import task: it completes (or fails) on the
// poll after ImportPolls polls.
func (s *Server) observeTask(r *region, t *importTask) {
	if t.status != "active" {
		return
	}
	t.observed++
	if t.observed <= s.opts.ImportPolls {
		t.progress = fmt.Sprint(t.observed * 100 / (s.opts.ImportPolls + 1))
		t.statusMessage = "converting"
		return
	}
	t.progress = ""
	if t.failMessage != "" {
		t.status, t.statusMessage = "deleted", t.failMessage
		return
	}
	sn := &snapshot{
		id: s.newID("snap"), owner: s.opts.AccountID, state: "completed", size: 2, started: time.Now(),
		description: "Created by AWS-VMImport service for " + t.id, tags: map[string]string{},
	}
	r.snapshots[sn.id] = sn
	s.created[KindSnapshot]++
	t.status, t.statusMessage, t.snapshotID = "completed", "", sn.id
}

func (s *Server) describeImportSnapshotTasks(r *region, p params) (any, *apiError) {
	// EC2 documents no filter names for import snapshot tasks; the server
	// accepts none, so a caller cannot come to rely on one.
	if _, err := p.filters("Filters"); err != nil {
		return nil, err
	}
	ids := p.list("ImportTaskId")
	var tasks []*importTask
	for _, id := range sortedKeys(r.tasks) {
		if len(ids) == 0 || slices.Contains(ids, id) {
			tasks = append(tasks, r.tasks[id])
		}
	}
	for _, id := range ids {
		if r.tasks[id] == nil {
			return nil, &apiError{Code: "InvalidConversionTaskId.Malformed", Message: "The import task ID '" + id + "' does not exist"}
		}
	}
	tasks, next, err := page(p, tasks)
	if err != nil {
		return nil, err
	}
	out := &describeImportSnapshotTasksResponse{NextToken: next}
	for _, t := range tasks {
		s.observeTask(r, t)
		out.Tasks = append(out.Tasks, t.xml())
	}
	return out, nil
}

func (s *Server) cancelImportTask(r *region, p params) (any, *apiError) {
	id := p.get("ImportTaskId")
	if id == "" {
		return nil, missing("ImportTaskId")
	}
	t := r.tasks[id]
	if t == nil {
		return nil, &apiError{Code: "InvalidConversionTaskId", Message: "The import task ID '" + id + "' does not exist"}
	}
	if t.status != "active" {
		return nil, &apiError{Code: "IncorrectState", Message: "The import task " + id + " is " + t.status + " and cannot be canceled"}
	}
	t.status, t.statusMessage, t.progress = "deleted", "Canceled: "+p.get("CancelReason"), ""
	return &cancelImportTaskResponse{ImportTaskID: id, PreviousState: "active", State: "deleting"}, nil
}

func (s *Server) createTags(r *region, p params) (any, *apiError) {
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return nil, missing("ResourceId")
	}
	tags, err := p.tags("Tag")
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, missing("Tag")
	}
	var targets []map[string]string
	for _, id := range ids {
		switch {
		case amiID.MatchString(id):
			im := r.images[id]
			if im == nil {
				return nil, &apiError{Code: "InvalidAMIID.NotFound", Message: "The image id '[" + id + "]' does not exist"}
			}
			targets = append(targets, im.tags)
		case snapID.MatchString(id):
			sn := r.snapshots[id]
			if sn == nil {
				return nil, &apiError{Code: "InvalidSnapshot.NotFound", Message: "The snapshot '" + id + "' does not exist."}
			}
			targets = append(targets, sn.tags)
		case strings.HasPrefix(id, "import-snap-"):
			t := r.tasks[id]
			if t == nil {
				return nil, &apiError{Code: "InvalidID", Message: "The ID '" + id + "' is not valid"}
			}
			targets = append(targets, t.tags)
		default:
			return nil, &apiError{Code: "InvalidID", Message: "The ID '" + id + "' is not valid"}
		}
	}
	for _, m := range targets {
		for k, v := range tags {
			m[k] = v
		}
		if len(m) > 50 {
			return nil, &apiError{Code: "TagLimitExceeded", Message: "The maximum number of tags (50) per resource was exceeded."}
		}
	}
	return &returnResponse{Return: true}, nil
}

// nameTaken reports an image of the account with the name in the region.
func (s *Server) nameTaken(r *region, name string) bool {
	for _, im := range r.images {
		if im.owner == s.opts.AccountID && im.name == name {
			return true
		}
	}
	return false
}

func (s *Server) registerImage(r *region, p params) (any, *apiError) {
	name := p.get("Name")
	if name == "" {
		return nil, missing("Name")
	}
	if !amiName.MatchString(name) {
		return nil, &apiError{Code: "InvalidAMIName.Malformed", Message: "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'"}
	}
	if p.get("ImageLocation") != "" {
		return nil, &apiError{Code: "InvalidParameterCombination", Message: "ec2test registers EBS-backed images only"}
	}
	arch := p.get("Architecture")
	if arch == "" {
		arch = "i386" // EC2's default, rarely what anyone wants
	}
	if !slices.Contains(validArchs, arch) {
		return nil, invalidValue("Architecture", arch)
	}
	boot := p.get("BootMode")
	if boot != "" && !slices.Contains(bootModes, boot) {
		return nil, invalidValue("BootMode", boot)
	}
	virt := p.get("VirtualizationType")
	if virt == "" {
		virt = "paravirtual"
	}
	if virt != "hvm" && virt != "paravirtual" {
		return nil, invalidValue("VirtualizationType", virt)
	}
	ena, err := p.boolean("EnaSupport")
	if err != nil {
		return nil, err
	}
	root := p.get("RootDeviceName")
	if root == "" {
		return nil, missing("RootDeviceName")
	}
	var devices []blockDevice
	rootMapped := false
	for i := 1; i <= p.count("BlockDeviceMapping"); i++ {
		base := fmt.Sprintf("BlockDeviceMapping.%d", i)
		d := blockDevice{DeviceName: p.get(base + ".DeviceName"), SnapshotID: p.get(base + ".Ebs.SnapshotId"), VolumeType: p.get(base + ".Ebs.VolumeType")}
		if d.DeviceName == "" {
			return nil, missing(base + ".DeviceName")
		}
		if d.VolumeType == "" {
			d.VolumeType = "gp2"
		}
		if !slices.Contains(volTypes, d.VolumeType) {
			return nil, invalidValue(base+".Ebs.VolumeType", d.VolumeType)
		}
		if d.DeleteOnTermination, err = p.boolean(base + ".Ebs.DeleteOnTermination"); err != nil {
			return nil, err
		}
		if p.has(base+".Ebs.VolumeSize") || d.SnapshotID == "" {
			if d.VolumeSize, err = p.integer(base + ".Ebs.VolumeSize"); err != nil {
				return nil, err
			}
		}
		if d.SnapshotID != "" {
			if !snapID.MatchString(d.SnapshotID) {
				return nil, &apiError{Code: "InvalidSnapshotID.Malformed", Message: "Invalid id: \"" + d.SnapshotID + "\""}
			}
			sn := r.snapshots[d.SnapshotID]
			if sn == nil {
				return nil, &apiError{Code: "InvalidSnapshot.NotFound", Message: "The snapshot '" + d.SnapshotID + "' does not exist."}
			}
			if sn.state != "completed" {
				return nil, &apiError{Code: "IncorrectState", Message: "Snapshot " + sn.id + " is not completed"}
			}
			if d.VolumeSize == 0 {
				d.VolumeSize = sn.size
			}
		}
		rootMapped = rootMapped || d.DeviceName == root
		devices = append(devices, d)
	}
	if !rootMapped {
		return nil, &apiError{Code: "InvalidBlockDeviceMapping", Message: "The root device " + root + " has no block device mapping."}
	}
	specs, apiErr := p.tagSpecs("image")
	if apiErr != nil {
		return nil, apiErr
	}
	if s.nameTaken(r, name) {
		return nil, &apiError{Code: "InvalidAMIName.Duplicate", Message: "AMI name " + name + " is already in use by AMI " + s.imageByName(r, name)}
	}
	im := &image{
		id: s.newID("ami"), name: name, description: p.get("Description"), owner: s.opts.AccountID, state: "pending",
		arch: arch, bootMode: boot, rootDevice: root, virt: virt, ena: ena, devices: devices,
		tags: specs["image"], created: time.Now(), polls: s.opts.RegisterPolls,
	}
	if im.tags == nil {
		im.tags = map[string]string{}
	}
	if im.polls == 0 {
		im.state = "available"
	}
	r.images[im.id] = im
	s.created[KindImage]++
	return &imageIDResponse{ImageID: im.id}, nil
}

func (s *Server) imageByName(r *region, name string) string {
	for _, im := range r.images {
		if im.owner == s.opts.AccountID && im.name == name {
			return im.id
		}
	}
	return ""
}

// observeImage advances a pending image: it becomes available (or failed)
// on the poll after its polls, and so do its pending snapshots.
func (s *Server) observeImage(r *region, im *image) {
	if im.state != "pending" {
		return
	}
	im.observed++
	if im.observed <= im.polls {
		return
	}
	state, snapState := "available", "completed"
	if im.failMessage != "" {
		state, snapState = "failed", "error"
		im.stateReason = im.failMessage
	}
	im.state = state
	for _, d := range im.devices {
		if sn := r.snapshots[d.SnapshotID]; sn != nil && sn.state == "pending" {
			sn.state = snapState
		}
	}
}

func (im *image) xml(region string) xmlImage {
	x := xmlImage{
		ImageID: im.id, ImageLocation: im.owner + "/" + im.name, ImageState: im.state, ImageOwnerID: im.owner,
		CreationDate: timestamp(im.created), IsPublic: im.public, Architecture: im.arch, ImageType: "machine",
		Name: im.name, Description: im.description, RootDeviceType: "ebs", RootDeviceName: im.rootDevice,
		VirtualizationType: im.virt, Hypervisor: "xen", EnaSupport: im.ena, BootMode: im.bootMode,
		SourceImageID: im.sourceImageID, SourceImageRegion: im.sourceRegion, Tags: xmlTags(im.tags),
	}
	if im.stateReason != "" {
		x.StateReason = &xmlStateReason{Code: "Client.ImageFailed", Message: im.stateReason}
	}
	for _, d := range im.devices {
		x.BlockDeviceMapping = append(x.BlockDeviceMapping, xmlBlockDevice{DeviceName: d.DeviceName, Ebs: &xmlEbs{
			SnapshotID: d.SnapshotID, VolumeSize: d.VolumeSize, DeleteOnTermination: d.DeleteOnTermination, VolumeType: d.VolumeType,
		}})
	}
	return x
}

// visible reports whether the account may see an image.
func (s *Server) visible(im *image) bool { return im.owner == s.opts.AccountID || im.public }

func (s *Server) describeImages(r *region, p params) (any, *apiError) {
	fs, err := p.filters("Filter", "tag:", "tag-key", "tag-value", "name", "image-id", "state", "owner-id", "is-public", "architecture",
		"description", "image-type", "virtualization-type", "root-device-name", "root-device-type",
		"block-device-mapping.snapshot-id", "boot-mode", "source-image-id", "source-image-region")
	if err != nil {
		return nil, err
	}
	if len(p.list("ExecutableBy")) > 0 {
		return nil, &apiError{Code: "InvalidParameterValue", Message: "ec2test does not support ExecutableBy"}
	}
	ids := p.list("ImageId")
	for _, id := range ids {
		if !amiID.MatchString(id) {
			return nil, &apiError{Code: "InvalidAMIID.Malformed", Message: "Invalid id: \"" + id + "\""}
		}
		if im := r.images[id]; im == nil || !s.visible(im) {
			return nil, &apiError{Code: "InvalidAMIID.NotFound", Message: "The image id '[" + id + "]' does not exist"}
		}
	}
	owners := p.list("Owner")
	includeDisabled, err := p.boolean("IncludeDisabled")
	if err != nil {
		return nil, err
	}
	var found []*image
	for _, id := range sortedKeys(r.images) {
		im := r.images[id]
		switch {
		case !s.visible(im):
			continue
		case len(ids) > 0 && !slices.Contains(ids, id):
			continue
		case len(owners) > 0 && !slices.ContainsFunc(owners, func(o string) bool {
			return o == im.owner || (o == "self" && im.owner == s.opts.AccountID)
		}):
			continue
		case im.state == "disabled" && !includeDisabled && len(ids) == 0:
			continue
		}
		if !match(fs, im.tags, func(name string) []string { return im.attr(name) }) {
			continue
		}
		found = append(found, im)
	}
	found, next, err := page(p, found)
	if err != nil {
		return nil, err
	}
	out := &describeImagesResponse{NextToken: next}
	for _, im := range found {
		s.observeImage(r, im)
		out.Images = append(out.Images, im.xml(r.name))
	}
	return out, nil
}

func (im *image) attr(name string) []string {
	switch name {
	case "name":
		return []string{im.name}
	case "image-id":
		return []string{im.id}
	case "state":
		return []string{im.state}
	case "owner-id":
		return []string{im.owner}
	case "is-public":
		return []string{fmt.Sprint(im.public)}
	case "architecture":
		return []string{im.arch}
	case "description":
		return []string{im.description}
	case "image-type":
		return []string{"machine"}
	case "virtualization-type":
		return []string{im.virt}
	case "root-device-name":
		return []string{im.rootDevice}
	case "root-device-type":
		return []string{"ebs"}
	case "boot-mode":
		return []string{im.bootMode}
	case "source-image-id":
		return []string{im.sourceImageID}
	case "source-image-region":
		return []string{im.sourceRegion}
	case "block-device-mapping.snapshot-id":
		var out []string
		for _, d := range im.devices {
			out = append(out, d.SnapshotID)
		}
		return out
	}
	return nil
}

func (s *Server) copyImage(r *region, p params) (any, *apiError) {
	srcRegion, srcID, name := p.get("SourceRegion"), p.get("SourceImageId"), p.get("Name")
	tok := p.get("ClientToken")
	sig := strings.Join([]string{srcRegion, srcID, name, p.get("Description")}, "\x00")
	if id, err := r.checkToken("CopyImage", tok, sig); err != nil {
		return nil, err
	} else if id != "" {
		return &imageIDResponse{ImageID: id}, nil
	}
	switch {
	case srcRegion == "":
		return nil, missing("SourceRegion")
	case srcID == "":
		return nil, missing("SourceImageId")
	case name == "":
		return nil, missing("Name")
	case !amiName.MatchString(name):
		return nil, &apiError{Code: "InvalidAMIName.Malformed", Message: "AMI names must be between 3 and 128 characters long"}
	case !slices.Contains(s.enabled, srcRegion):
		return nil, invalidValue("SourceRegion", srcRegion)
	case !amiID.MatchString(srcID):
		return nil, &apiError{Code: "InvalidAMIID.Malformed", Message: "Invalid id: \"" + srcID + "\""}
	}
	src := s.region(srcRegion).images[srcID]
	if src == nil || !s.visible(src) {
		return nil, &apiError{Code: "InvalidAMIID.NotFound", Message: "The image id '[" + srcID + "]' does not exist"}
	}
	if src.state != "available" {
		return nil, &apiError{Code: "IncorrectState", Message: "Image " + srcID + " is " + src.state + ", not available"}
	}
	copyTags, err := p.boolean("CopyImageTags")
	if err != nil {
		return nil, err
	}
	specs, err := p.tagSpecs("image", "snapshot")
	if err != nil {
		return nil, err
	}
	if s.nameTaken(r, name) {
		return nil, &apiError{Code: "InvalidAMIName.Duplicate", Message: "AMI name " + name + " is already in use by AMI " + s.imageByName(r, name)}
	}
	desc := p.get("Description")
	if !p.has("Description") {
		desc = src.description
	}
	im := &image{
		id: s.newID("ami"), name: name, description: desc, owner: s.opts.AccountID, state: "pending",
		arch: src.arch, bootMode: src.bootMode, rootDevice: src.rootDevice, virt: src.virt, ena: src.ena,
		sourceImageID: srcID, sourceRegion: srcRegion, tags: map[string]string{}, created: time.Now(), polls: s.opts.CopyPolls,
	}
	if copyTags {
		for k, v := range src.tags {
			im.tags[k] = v
		}
	}
	for k, v := range specs["image"] {
		im.tags[k] = v
	}
	for _, d := range src.devices {
		if d.SnapshotID != "" {
			sn := &snapshot{
				id: s.newID("snap"), owner: s.opts.AccountID, state: "pending", size: d.VolumeSize, started: time.Now(),
				description: fmt.Sprintf("Copied for DestinationAmi %s from SourceAmi %s for SourceSnapshot %s", im.id, srcID, d.SnapshotID),
				tags:        clone(specs["snapshot"]),
			}
			r.snapshots[sn.id] = sn
			s.created[KindSnapshot]++
			d.SnapshotID = sn.id
		}
		im.devices = append(im.devices, d)
	}
	if len(s.badCopy) > 0 {
		im.failMessage, s.badCopy = s.badCopy[0], s.badCopy[1:]
	}
	if im.polls == 0 {
		s.observeImage(r, im) // finishes at once
		im.observed = 0
	}
	r.images[im.id] = im
	s.created[KindImage]++
	if tok != "" {
		r.tokens["CopyImage\x00"+tok] = token{id: im.id, params: sig}
	}
	return &imageIDResponse{ImageID: im.id}, nil
}

func (s *Server) modifyImageAttribute(r *region, p params) (any, *apiError) {
	id := p.get("ImageId")
	if id == "" {
		return nil, missing("ImageId")
	}
	im := r.images[id]
	if im == nil || im.owner != s.opts.AccountID {
		return nil, &apiError{Code: "InvalidAMIID.NotFound", Message: "The image id '[" + id + "]' does not exist"}
	}
	var add, remove []string
	for i := 1; i <= p.count("LaunchPermission.Add"); i++ {
		add = append(add, p.get(fmt.Sprintf("LaunchPermission.Add.%d.Group", i)))
	}
	for i := 1; i <= p.count("LaunchPermission.Remove"); i++ {
		remove = append(remove, p.get(fmt.Sprintf("LaunchPermission.Remove.%d.Group", i)))
	}
	if attr := p.get("Attribute"); attr != "" {
		if attr != "launchPermission" {
			return nil, &apiError{Code: "InvalidParameterValue", Message: "ec2test supports the launchPermission attribute only"}
		}
		switch p.get("OperationType") {
		case "add":
			add = append(add, p.list("UserGroup")...)
		case "remove":
			remove = append(remove, p.list("UserGroup")...)
		default:
			return nil, invalidValue("OperationType", p.get("OperationType"))
		}
	}
	if len(add)+len(remove) == 0 {
		return nil, &apiError{Code: "InvalidParameterCombination", Message: "No attributes specified."}
	}
	for _, g := range slices.Concat(add, remove) {
		if g != "all" {
			return nil, invalidValue("Group", g)
		}
	}
	if im.state != "available" {
		return nil, &apiError{Code: "IncorrectState", Message: "Image " + id + " is " + im.state + ", not available"}
	}
	if len(add) > 0 {
		im.public = true
	}
	if len(remove) > 0 {
		im.public = false
	}
	return &returnResponse{Return: true}, nil
}

func (s *Server) deregisterImage(r *region, p params) (any, *apiError) {
	id := p.get("ImageId")
	if id == "" {
		return nil, missing("ImageId")
	}
	if !amiID.MatchString(id) {
		return nil, &apiError{Code: "InvalidAMIID.Malformed", Message: "Invalid id: \"" + id + "\""}
	}
	im := r.images[id]
	if im == nil || im.owner != s.opts.AccountID {
		return nil, &apiError{Code: "InvalidAMIID.NotFound", Message: "The image id '[" + id + "]' does not exist"}
	}
	if p.has("DeleteAssociatedSnapshots") {
		return nil, &apiError{Code: "InvalidParameterValue", Message: "ec2test does not support DeleteAssociatedSnapshots"}
	}
	delete(r.images, id)
	return &returnResponse{Return: true}, nil
}

func (sn *snapshot) attr(name string) []string {
	switch name {
	case "snapshot-id":
		return []string{sn.id}
	case "status":
		return []string{sn.state}
	case "owner-id":
		return []string{sn.owner}
	case "description":
		return []string{sn.description}
	case "volume-id":
		return []string{"vol-ffffffff"}
	case "volume-size":
		return []string{fmt.Sprint(sn.size)}
	}
	return nil
}

func (s *Server) describeSnapshots(r *region, p params) (any, *apiError) {
	fs, err := p.filters("Filter", "tag:", "tag-key", "tag-value", "snapshot-id", "status", "owner-id", "description", "volume-id", "volume-size")
	if err != nil {
		return nil, err
	}
	if len(p.list("RestorableBy")) > 0 {
		return nil, &apiError{Code: "InvalidParameterValue", Message: "ec2test does not support RestorableBy"}
	}
	ids := p.list("SnapshotId")
	for _, id := range ids {
		if !snapID.MatchString(id) {
			return nil, &apiError{Code: "InvalidSnapshotID.Malformed", Message: "Invalid id: \"" + id + "\""}
		}
		if r.snapshots[id] == nil {
			return nil, &apiError{Code: "InvalidSnapshot.NotFound", Message: "The snapshot '" + id + "' does not exist."}
		}
	}
	owners := p.list("Owner")
	var found []*snapshot
	for _, id := range sortedKeys(r.snapshots) {
		sn := r.snapshots[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		if len(owners) > 0 && !slices.ContainsFunc(owners, func(o string) bool {
			return o == sn.owner || (o == "self" && sn.owner == s.opts.AccountID)
		}) {
			continue
		}
		if match(fs, sn.tags, sn.attr) {
			found = append(found, sn)
		}
	}
	found, next, err := page(p, found)
	if err != nil {
		return nil, err
	}
	out := &describeSnapshotsResponse{NextToken: next}
	for _, sn := range found {
		progress := "100%"
		if sn.state == "pending" {
			progress = "50%"
		}
		out.Snapshots = append(out.Snapshots, xmlSnapshot{
			SnapshotID: sn.id, VolumeID: "vol-ffffffff", Status: sn.state, StartTime: timestamp(sn.started), Progress: progress,
			OwnerID: sn.owner, VolumeSize: sn.size, Description: sn.description, StorageTier: "standard", Tags: xmlTags(sn.tags),
		})
	}
	return out, nil
}

func (s *Server) deleteSnapshot(r *region, p params) (any, *apiError) {
	id := p.get("SnapshotId")
	if id == "" {
		return nil, missing("SnapshotId")
	}
	if !snapID.MatchString(id) {
		return nil, &apiError{Code: "InvalidSnapshotID.Malformed", Message: "Invalid id: \"" + id + "\""}
	}
	if r.snapshots[id] == nil {
		return nil, &apiError{Code: "InvalidSnapshot.NotFound", Message: "The snapshot '" + id + "' does not exist."}
	}
	for _, imID := range sortedKeys(r.images) {
		for _, d := range r.images[imID].devices {
			if d.SnapshotID == id {
				return nil, &apiError{Code: "InvalidSnapshot.InUse", Message: "The snapshot " + id + " is currently in use by " + imID}
			}
		}
	}
	delete(r.snapshots, id)
	return &returnResponse{Return: true}, nil
}

func (s *Server) describeRegions(_ *region, p params) (any, *apiError) {
	fs, err := p.filters("Filter", "region-name", "opt-in-status", "endpoint")
	if err != nil {
		return nil, err
	}
	all, err := p.boolean("AllRegions")
	if err != nil {
		return nil, err
	}
	names := p.list("RegionName")
	known := s.knownRegions()
	for _, n := range names {
		if !slices.Contains(known, n) {
			return nil, &apiError{Code: "InvalidParameterValue", Message: "Invalid region: " + n}
		}
	}
	out := &describeRegionsResponse{}
	for _, n := range known {
		status := "opt-in-not-required"
		if !slices.Contains(s.enabled, n) {
			if !all && !slices.Contains(names, n) {
				continue
			}
			status = "not-opted-in"
		} else if !slices.Contains(DefaultRegions, n) {
			status = "opted-in"
		}
		if len(names) > 0 && !slices.Contains(names, n) {
			continue
		}
		x := xmlRegion{RegionName: n, RegionEndpoint: "ec2." + n + ".amazonaws.com", OptInStatus: status}
		if !match(fs, nil, func(name string) []string {
			switch name {
			case "region-name":
				return []string{x.RegionName}
			case "opt-in-status":
				return []string{x.OptInStatus}
			}
			return []string{x.RegionEndpoint}
		}) {
			continue
		}
		out.Regions = append(out.Regions, x)
	}
	return out, nil
}
