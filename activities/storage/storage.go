// Package storage holds kiln's S3 activities: verify a flavour's artifacts
// in the staging bucket, promote them into the release bucket's
// content-addressed layout, and write and find release manifests, the
// idempotency key of a flavour's build. They use aws-sdk-go-v2 against AWS
// or any S3-compatible server.
package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Error types of the non-retryable failures.
const (
	ErrTypeArtifactMissing = "ArtifactMissing"
	ErrTypeArtifactCorrupt = "ArtifactCorrupt"
	ErrTypeAccessDenied    = "AccessDenied"
)

// ManifestSchemaVersion is the version of the Manifest JSON schema.
const ManifestSchemaVersion = 1

// Artifact is one file a flavour's image pipeline reported, in staging.
type Artifact struct {
	// Name is the file's name in the release, such as rootfs.raw.
	Name string `json:"name"`
	// Key is its key in the staging bucket.
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// File is a promoted artifact in the manifest.
type File struct {
	Name   string `json:"name"`
	Key    string `json:"key"` // in the release bucket, content-addressed
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest is a flavour's release manifest, with Garden Linux's fields,
// written as JSON at ManifestKey. Its schema is versioned by SchemaVersion
// (ManifestSchemaVersion); a reader must refuse a version it does not know.
type Manifest struct {
	// SchemaVersion is ManifestSchemaVersion when written.
	SchemaVersion int `json:"schemaVersion"`
	// BuildID is the ID of the Build workflow that wrote the manifest.
	BuildID string `json:"buildId,omitempty"`
	// Flavour is the canonical flavour name, such as aws-gardener_prod-amd64.
	Flavour string `json:"flavour"`
	Repo    string `json:"repo,omitempty"`
	Commit  string `json:"commit"`
	Version string `json:"version"`
	// Architecture is amd64 or arm64; Platform is aws, gcp, kvm, …
	Architecture string `json:"architecture"`
	Platform     string `json:"platform"`
	// Features are the flavour's features, sorted, flags like _prod
	// included.
	Features []string `json:"features"`
	// BuildTimestamp is when the flavour's image was built (UTC).
	BuildTimestamp time.Time `json:"buildTimestamp"`
	// Files are the promoted artifacts, content-addressed.
	Files []File `json:"files"`
	// PublishedImages is the platform's published-image metadata, once
	// published (activities/publish documents each platform's shape).
	PublishedImages map[string]any `json:"publishedImages,omitempty"`
	// TestResult is passed, failed or not-run.
	TestResult string `json:"testResult,omitempty"`
	// Logs maps "<phase>/<task>" to the task's archived log (s3:// URI).
	Logs map[string]string `json:"logs,omitempty"`
}

// Test results in a Manifest.
const (
	TestPassed = "passed"
	TestFailed = "failed"
	TestNotRun = "not-run"
)

// Config says where things are.
type Config struct {
	StagingBucket string
	ReleaseBucket string
	// Prefix is prepended to every release key.
	Prefix string
	// CopyPartSize is the part size of a multipart server-side copy. An
	// artifact larger than it is copied in parts (CopyObject takes at most
	// 5 GiB). Optional: default 1 GiB; S3 needs at least 5 MiB.
	CopyPartSize int64
}

// DefaultCopyPartSize is Config.CopyPartSize's default.
const DefaultCopyPartSize = 1 << 30

// Activities are the storage activities.
type Activities struct {
	s3  *s3.Client
	cfg Config
}

// New returns the activities for an S3 client.
func New(client *s3.Client, cfg Config) *Activities { return &Activities{s3: client, cfg: cfg} }

// VerifyRequest lists a flavour's artifacts.
type VerifyRequest struct {
	Flavour   string     `json:"flavour"`
	Artifacts []Artifact `json:"artifacts"`
}

// Verify checks that every artifact exists in staging with its size and
// SHA-256: from the object's checksum attribute when the server keeps one,
// otherwise by streaming the object. A missing or corrupt artifact is a
// non-retryable error naming the key.
func (a *Activities) Verify(ctx context.Context, in VerifyRequest) error {
	for i, art := range in.Artifacts {
		activity.RecordHeartbeat(ctx, i)
		head, err := a.s3.HeadObject(ctx, &s3.HeadObjectInput{
			Bucket: &a.cfg.StagingBucket, Key: &art.Key, ChecksumMode: types.ChecksumModeEnabled,
		})
		if isNotFound(err) {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: artifact %s is missing from s3://%s/%s", in.Flavour, art.Name, a.cfg.StagingBucket, art.Key), ErrTypeArtifactMissing, nil)
		}
		if err != nil {
			return classify("head "+art.Key, err)
		}
		if size := aws.ToInt64(head.ContentLength); size != art.Size {
			return corrupt(in.Flavour, art, fmt.Sprintf("size %d, reported %d", size, art.Size))
		}
		sum := ""
		if c := aws.ToString(head.ChecksumSHA256); c != "" && head.ChecksumType == types.ChecksumTypeFullObject {
			if b, err := base64.StdEncoding.DecodeString(c); err == nil {
				sum = hex.EncodeToString(b)
			}
		}
		if sum == "" {
			if sum, err = a.stream(ctx, a.cfg.StagingBucket, art.Key); err != nil {
				return classify("read "+art.Key, err)
			}
		}
		if !strings.EqualFold(sum, art.SHA256) {
			return corrupt(in.Flavour, art, "sha256 "+sum+", reported "+art.SHA256)
		}
	}
	return nil
}

func corrupt(flavour string, art Artifact, why string) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: artifact %s at %s is corrupt: %s", flavour, art.Name, art.Key, why), ErrTypeArtifactCorrupt, nil)
}

// stream hashes an object without holding it in memory.
func (a *Activities) stream(ctx context.Context, bucket, key string) (string, error) {
	obj, err := a.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return "", err
	}
	defer obj.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, obj.Body); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// PromoteRequest lists verified artifacts to promote.
type PromoteRequest struct {
	Artifacts []Artifact `json:"artifacts"`
}

// PromoteResult says where the artifacts are and how many were copied.
type PromoteResult struct {
	Files  []File `json:"files"`
	Copied int    `json:"copied"`
}

// ObjectKey is the content-addressed release key of a file.
func ObjectKey(prefix, sha string) string {
	return prefix + "objects/sha256/" + strings.ToLower(sha)
}

// Promote copies each artifact, server side, to its content-addressed key
// in the release bucket. It is idempotent: an object already there with the
// same size is not copied again.
func (a *Activities) Promote(ctx context.Context, in PromoteRequest) (PromoteResult, error) {
	var res PromoteResult
	for i, art := range in.Artifacts {
		activity.RecordHeartbeat(ctx, i)
		key := ObjectKey(a.cfg.Prefix, art.SHA256)
		res.Files = append(res.Files, File{Name: art.Name, Key: key, Size: art.Size, SHA256: strings.ToLower(art.SHA256)})
		head, err := a.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &a.cfg.ReleaseBucket, Key: &key})
		if err == nil && aws.ToInt64(head.ContentLength) == art.Size {
			continue // content-addressed: same key, same content
		}
		if err != nil && !isNotFound(err) {
			return res, classify("head "+key, err)
		}
		if err := a.copy(ctx, art, key); err != nil {
			return res, classify("copy "+art.Key, err)
		}
		res.Copied++
	}
	return res, nil
}

// copy copies art from staging to key in the release bucket, server side:
// in one CopyObject up to the part size, in parts above it.
func (a *Activities) copy(ctx context.Context, art Artifact, key string) error {
	src := a.cfg.StagingBucket + "/" + art.Key
	meta := map[string]string{"sha256": strings.ToLower(art.SHA256)}
	part := a.cfg.CopyPartSize
	if part <= 0 {
		part = DefaultCopyPartSize
	}
	if art.Size <= part {
		_, err := a.s3.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: &a.cfg.ReleaseBucket, Key: &key, CopySource: &src, Metadata: meta,
		})
		return err
	}
	up, err := a.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &a.cfg.ReleaseBucket, Key: &key, Metadata: meta,
	})
	if err != nil {
		return err
	}
	abort := func(err error) error {
		// A fresh context: the upload's parts cost storage until aborted.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = a.s3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &a.cfg.ReleaseBucket, Key: &key, UploadId: up.UploadId})
		return err
	}
	var parts []types.CompletedPart
	for n, off := int32(1), int64(0); off < art.Size; n, off = n+1, off+part {
		end := min(off+part, art.Size) - 1
		out, err := a.s3.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: &a.cfg.ReleaseBucket, Key: &key, UploadId: up.UploadId, PartNumber: aws.Int32(n),
			CopySource: &src, CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
		})
		if err != nil {
			return abort(err)
		}
		activity.RecordHeartbeat(ctx, fmt.Sprintf("%s: part %d, %d of %d bytes", art.Name, n, end+1, art.Size))
		parts = append(parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(n)})
	}
	if _, err := a.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &a.cfg.ReleaseBucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		return abort(err)
	}
	return nil
}

// ManifestKey is a flavour's manifest key, as Garden Linux laid them out.
func ManifestKey(prefix, flavour, version, commit string) string {
	return prefix + "meta/singles/" + flavour + "-" + version + "-" + commit
}

// FindManifestRequest names a flavour's build.
type FindManifestRequest struct {
	Flavour, Version, Commit string
}

// Found is FindManifest's answer.
type Found struct {
	Found    bool     `json:"found"`
	Key      string   `json:"key"`
	Manifest Manifest `json:"manifest,omitzero"`
}

// FindManifest returns the manifest of a flavour at a version and commit,
// if one was written: the sign that the flavour was built and a re-run can
// skip it.
func (a *Activities) FindManifest(ctx context.Context, in FindManifestRequest) (Found, error) {
	f := Found{Key: ManifestKey(a.cfg.Prefix, in.Flavour, in.Version, in.Commit)}
	obj, err := a.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &a.cfg.ReleaseBucket, Key: &f.Key})
	if isNotFound(err) {
		return f, nil
	}
	if err != nil {
		return f, classify("get "+f.Key, err)
	}
	defer obj.Body.Close()
	if err := json.NewDecoder(obj.Body).Decode(&f.Manifest); err != nil {
		return f, temporal.NewNonRetryableApplicationError(fmt.Sprintf("manifest %s is not valid JSON: %v", f.Key, err), ErrTypeArtifactCorrupt, nil)
	}
	if v := f.Manifest.SchemaVersion; v > ManifestSchemaVersion {
		return f, temporal.NewNonRetryableApplicationError(fmt.Sprintf("manifest %s has schema version %d; this kiln reads up to %d: upgrade the workers", f.Key, v, ManifestSchemaVersion), ErrTypeArtifactCorrupt, nil)
	}
	f.Found = true
	return f, nil
}

// PutManifest writes a flavour's manifest, unless one exists (the first
// write wins, so a retried activity changes nothing).
func (a *Activities) PutManifest(ctx context.Context, m Manifest) (string, error) {
	m.SchemaVersion = ManifestSchemaVersion
	key := ManifestKey(a.cfg.Prefix, m.Flavour, m.Version, m.Commit)
	if _, err := a.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &a.cfg.ReleaseBucket, Key: &key}); err == nil {
		return key, nil
	} else if !isNotFound(err) {
		return "", classify("head "+key, err)
	}
	return key, a.putJSON(ctx, key, m)
}

// SetPublishedRequest records a flavour's published images in its manifest.
type SetPublishedRequest struct {
	// Key is the manifest's key.
	Key string `json:"key"`
	// Images is the platform's published-image metadata
	// (activities/publish's schema for the platform).
	Images map[string]any `json:"images"`
}

// SetPublished writes the published-image metadata into the manifest at
// Key, keeping everything else. Running it again with the same images
// writes the same manifest.
func (a *Activities) SetPublished(ctx context.Context, in SetPublishedRequest) error {
	obj, err := a.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &a.cfg.ReleaseBucket, Key: &in.Key})
	if err != nil {
		if isNotFound(err) {
			return temporal.NewNonRetryableApplicationError("manifest "+in.Key+" does not exist", ErrTypeArtifactMissing, nil)
		}
		return classify("get "+in.Key, err)
	}
	var m Manifest
	err = json.NewDecoder(obj.Body).Decode(&m)
	obj.Body.Close()
	if err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("manifest %s is not valid JSON: %v", in.Key, err), ErrTypeArtifactCorrupt, nil)
	}
	m.PublishedImages = in.Images
	return a.putJSON(ctx, in.Key, m)
}

// ManifestSet lists the manifests of one build's flavours.
type ManifestSet struct {
	SchemaVersion int    `json:"schemaVersion"`
	BuildID       string `json:"buildId"`
	Commit        string `json:"commit"`
	Version       string `json:"version"`
	// Manifests maps each flavour to its manifest's key.
	Manifests map[string]string `json:"manifests"`
}

// ManifestSetKey is a build's manifest set key.
func ManifestSetKey(prefix, version, commit string) string {
	return prefix + "meta/sets/" + version + "-" + commit
}

// PutManifestSet writes a build's manifest set, replacing one written
// before for the same version and commit (a re-run lists the same
// manifests, and more when flavours were added). It returns the key.
func (a *Activities) PutManifestSet(ctx context.Context, set ManifestSet) (string, error) {
	set.SchemaVersion = ManifestSchemaVersion
	key := ManifestSetKey(a.cfg.Prefix, set.Version, set.Commit)
	return key, a.putJSON(ctx, key, set)
}

func (a *Activities) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if _, err := a.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &a.cfg.ReleaseBucket, Key: &key, Body: bytes.NewReader(b),
		ContentType: aws.String("application/json"), ContentLength: aws.Int64(int64(len(b))),
	}); err != nil {
		return classify("put "+key, err)
	}
	return nil
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
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// classify makes S3's permanent errors non-retryable.
func classify(op string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket":
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s: %s", op, ae.ErrorCode(), ae.ErrorMessage()), ErrTypeAccessDenied, nil)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
