// Package storage holds kiln's S3 activities: verify a flavour's artifacts
// in the staging bucket, promote them into the release bucket's
// content-addressed layout, and write and find release manifests, the
// idempotency key of a flavour's build. They use aws-sdk-go-v2 against AWS
// or any S3-compatible server.
package storage

import (
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

// Manifest is a flavour's release manifest, as Garden Linux wrote them.
type Manifest struct {
	SchemaVersion   int               `json:"schemaVersion"`
	Flavour         string            `json:"flavour"`
	Commit          string            `json:"commit"`
	Version         string            `json:"version"`
	Architecture    string            `json:"architecture"`
	Platform        string            `json:"platform"`
	Features        []string          `json:"features"`
	BuildTimestamp  time.Time         `json:"buildTimestamp"`
	Files           []File            `json:"files"`
	PublishedImages map[string]any    `json:"publishedImages,omitempty"`
	TestResult      string            `json:"testResult,omitempty"`
	Logs            map[string]string `json:"logs,omitempty"`
}

// Config says where things are.
type Config struct {
	StagingBucket string
	ReleaseBucket string
	// Prefix is prepended to every release key.
	Prefix string
}

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
		src := a.cfg.StagingBucket + "/" + art.Key
		if _, err := a.s3.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: &a.cfg.ReleaseBucket, Key: &key, CopySource: &src,
			Metadata: map[string]string{"sha256": strings.ToLower(art.SHA256)},
		}); err != nil {
			return res, classify("copy "+art.Key, err)
		}
		res.Copied++
	}
	return res, nil
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
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	if _, err := a.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &a.cfg.ReleaseBucket, Key: &key, Body: strings.NewReader(string(b)),
		ContentType: aws.String("application/json"), ContentLength: aws.Int64(int64(len(b))),
	}); err != nil {
		return "", classify("put "+key, err)
	}
	return key, nil
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
