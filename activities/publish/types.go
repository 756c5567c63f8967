package publish

// Error types of the non-retryable failures of the AWS activities.
const (
	// ErrTypeImportFailed: the snapshot import task ended in a state other
	// than completed. The message carries EC2's status message.
	ErrTypeImportFailed = "ImportFailed"
	// ErrTypeImageFailed: an image went to the failed, invalid or error
	// state while it was awaited.
	ErrTypeImageFailed = "ImageFailed"
	// ErrTypeAccessDenied: EC2 refused the worker's credentials or
	// permissions (AuthFailure, UnauthorizedOperation, …).
	ErrTypeAccessDenied = "AccessDenied"
	// ErrTypeInvalidRequest: EC2 rejected a parameter (InvalidParameter…,
	// InvalidAMIID…, MissingParameter).
	ErrTypeInvalidRequest = "InvalidRequest"
	// ErrTypeConflict: a resource with the derived name exists but belongs
	// to another key (not created for this flavour's publish).
	ErrTypeConflict = "Conflict"
)

// TagKey is the tag kiln puts on every snapshot, import task and image it
// creates, with the publish key as its value. Cleanup finds resources
// through it, so it works after a crash that lost their IDs.
const TagKey = "kiln.dev/publish-key"

// RegionImage is an AMI in a region.
type RegionImage struct {
	Region  string `json:"region"`
	ImageID string `json:"imageId"`
}

// RegionSnapshot is an EBS snapshot in a region.
type RegionSnapshot struct {
	Region     string `json:"region"`
	SnapshotID string `json:"snapshotId"`
}

// ImportRequest is the input of ImportSnapshot.
type ImportRequest struct {
	// Key identifies this flavour's publish: it derives the ClientToken
	// and is the value of TagKey. Required.
	Key string `json:"key"`
	// Region is where the snapshot is imported. Required.
	Region string `json:"region"`
	// Bucket and ObjectKey locate the raw disk image in S3. Required.
	Bucket    string `json:"bucket"`
	ObjectKey string `json:"objectKey"`
	// Format is the disk format: RAW (default), VHD or VMDK.
	Format string `json:"format,omitempty"`
	// Description is shown in EC2.
	Description string `json:"description,omitempty"`
	// RoleName is the service role for VM Import. Optional: EC2's default,
	// vmimport.
	RoleName string `json:"roleName,omitempty"`
}

// ImportResult is the output of ImportSnapshot.
type ImportResult struct {
	TaskID     string `json:"taskId"`
	SnapshotID string `json:"snapshotId"`
}

// RegisterRequest is the input of RegisterImage.
type RegisterRequest struct {
	Key    string `json:"key"`
	Region string `json:"region"`
	// Name is the AMI name, unique per account and region. Required.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	SnapshotID  string `json:"snapshotId"`
	// Arch is the flavour's architecture: amd64 or arm64.
	Arch string `json:"arch"`
	// BootMode is uefi, legacy-bios or uefi-preferred. Optional: EC2's
	// default for the architecture.
	BootMode string `json:"bootMode,omitempty"`
}

// TagRequest is the input of CreateTags.
type TagRequest struct {
	Region      string            `json:"region"`
	ResourceIDs []string          `json:"resourceIds"`
	Tags        map[string]string `json:"tags"`
}

// CopyRequest is the input of CopyImage.
type CopyRequest struct {
	Key           string            `json:"key"`
	SourceRegion  string            `json:"sourceRegion"`
	SourceImageID string            `json:"sourceImageId"`
	Region        string            `json:"region"`
	Name          string            `json:"name"`
	Description   string            `json:"description,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
}

// ImagesRequest names images in regions: the input of AwaitImages and
// MakePublic.
type ImagesRequest struct {
	Images []RegionImage `json:"images"`
}

// RegionsRequest is the input of EnabledRegions.
type RegionsRequest struct {
	// Region is the region asked.
	Region string `json:"region"`
}

// CleanupRequest is the input of DeleteImages.
type CleanupRequest struct {
	Key     string   `json:"key"`
	Regions []string `json:"regions"`
}

// CleanupResult says what DeleteImages removed.
type CleanupResult struct {
	Deregistered     []RegionImage    `json:"deregistered,omitempty"`
	DeletedSnapshots []RegionSnapshot `json:"deletedSnapshots,omitempty"`
}
