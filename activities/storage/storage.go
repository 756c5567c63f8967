// Package storage holds kiln's S3 activities: verify a flavour's artifacts
// in the staging bucket, promote them into the release bucket, and write,
// find and update release manifests, the idempotency key of a flavour's
// build. They use aws-sdk-go-v2 against AWS or any S3-compatible server.
//
// The release bucket is laid out as Garden Linux's tooling
// (python-gardenlinux-lib's s3_artifacts.py) lays it out, so glci and the
// release notes read what kiln writes, and kiln finds what they wrote:
//
//	objects/<base>/<base><suffix>   every artifact, tagged
//	meta/singles/<base>             the flavour's manifest, YAML
//
// where <base> is <flavor>-<arch>-<version>-<commit[:8]> (package
// workflows/release derives it). Kiln's own facts go under one top-level
// key, kiln, which Garden Linux's readers ignore (see Manifest). Manifests
// that kiln wrote before, JSON at meta/singles/<flavour>-<version>-<commit>,
// are still read.
package storage

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"go.temporal.io/sdk/temporal"
)

// Error types of the non-retryable failures.
const (
	ErrTypeArtifactMissing = "ArtifactMissing"
	ErrTypeArtifactCorrupt = "ArtifactCorrupt"
	ErrTypeAccessDenied    = "AccessDenied"
	// ErrTypeBadRequest: the request cannot succeed as given (no base
	// name to promote under, an unknown layout, a bad test result).
	ErrTypeBadRequest = "BadRequest"
)

// Layout is how released files are keyed in the release bucket.
type Layout string

// Layouts.
const (
	// LayoutGardenLinux keys files objects/<base>/<base><suffix>, tagged,
	// as Garden Linux's tooling does. The default.
	LayoutGardenLinux Layout = "gardenlinux"
	// LayoutContentAddressed keys files objects/sha256/<hex>.
	LayoutContentAddressed Layout = "content-addressed"
)

// Config says where things are.
type Config struct {
	StagingBucket string
	ReleaseBucket string
	// Prefix is prepended to every release key.
	Prefix string
	// Layout is how Promote keys files. Optional: LayoutGardenLinux.
	Layout Layout
	// CopyPartSize is the part size of a multipart server-side copy. An
	// artifact larger than it is copied in parts (CopyObject takes at most
	// 5 GiB). Optional: default 1 GiB; S3 needs at least 5 MiB.
	CopyPartSize int64
}

// DefaultCopyPartSize is Config.CopyPartSize's default.
const DefaultCopyPartSize = 1 << 30

func (c Config) layout() Layout {
	if c.Layout == "" {
		return LayoutGardenLinux
	}
	return c.Layout
}

// Activities are the storage activities.
type Activities struct {
	s3  *s3.Client
	cfg Config
}

// New returns the activities for an S3 client.
func New(client *s3.Client, cfg Config) *Activities { return &Activities{s3: client, cfg: cfg} }

// Artifact is one file a flavour's image pipeline reported, in staging.
type Artifact struct {
	// Name is the file's name in the release: <base><suffix> as Garden
	// Linux names them, or a bare name such as rootfs.raw.
	Name string `json:"name"`
	// Key is its key in the staging bucket.
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
	// MD5 is the hex MD5, optional in the pipeline's result; Verify
	// fills it in.
	MD5 string `json:"md5,omitempty"`
}

// File is a promoted artifact.
type File struct {
	// Name is the file's name in the release, <base><suffix> in the
	// gardenlinux layout.
	Name   string `json:"name"`
	Key    string `json:"key"` // in the release bucket
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	MD5    string `json:"md5"`
	// Suffix is Name without the base name, such as .raw (empty when the
	// base name is not known).
	Suffix string `json:"suffix"`
}

// Test results in a Manifest.
const (
	TestPassed = "passed"
	TestFailed = "failed"
	// TestNotRun is what kiln's old JSON manifests said of an untested
	// flavour; Garden Linux's manifests say null (TestResult nil).
	TestNotRun = "not-run"
)

func nonRetryable(errType, format string, a ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, a...), errType, nil)
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nk) || errors.As(err, &nf) {
		return true
	}
	return httpStatus(err) == http.StatusNotFound
}

// isConditionFailed: a conditional write lost, to an object that exists
// (If-None-Match) or changed (If-Match): 412 PreconditionFailed, or 409
// ConditionalRequestConflict, which AWS returns when a concurrent write
// to the key is in flight.
func isConditionFailed(err error) bool {
	if err == nil {
		return false
	}
	switch errorCode(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	s := httpStatus(err)
	return s == http.StatusPreconditionFailed || s == http.StatusConflict
}

// isNotImplemented: the server does not do what was asked (a conditional
// header it does not support).
func isNotImplemented(err error) bool {
	return err != nil && (errorCode(err) == "NotImplemented" || httpStatus(err) == http.StatusNotImplemented)
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// deniedCodes are S3's error codes for requests that no retry lets
// through: refused access or credentials, a bucket that does not exist.
var deniedCodes = map[string]bool{"AccessDenied": true, "InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "NoSuchBucket": true}

// classify makes S3's permanent errors non-retryable.
func classify(op string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && deniedCodes[ae.ErrorCode()] {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s: %s", op, ae.ErrorCode(), ae.ErrorMessage()), ErrTypeAccessDenied, nil)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Transient reports whether a later attempt may succeed where err, from
// Upload or another S3 call, failed: S3 could not be reached or the
// connection broke, a request timed out or was throttled, or S3 failed on
// its side (500, 502, 503, 504), as the AWS SDK's retryer judges errors
// (also after its own attempts ran out). It is false for what Classify
// makes non-retryable (refused access or credentials, no such bucket), for
// S3's other refusals, for a failure reading the body, and for a
// cancelled context.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && deniedCodes[ae.ErrorCode()] {
		return false
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// shortCommit is the first 8 characters of a commit hash.
func shortCommit(c string) string {
	if len(c) > 8 {
		return c[:8]
	}
	return c
}
