package storage

import (
	"bytes"
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/activity"

	"github.com/kiln-build/kiln/workflows/release"
)

// ManifestContentType is the Content-Type of a manifest, Garden Linux's.
const ManifestContentType = "text/yaml"

// PutManifestRequest is what a flavour's manifest is made of.
type PutManifestRequest struct {
	Identity release.Identity `json:"identity"`
	// Files are Promote's result.
	Files []File `json:"files"`
	// BuildTimestamp is when the flavour's image was built; written in
	// UTC.
	BuildTimestamp time.Time `json:"buildTimestamp"`
	// TestResult is TestPassed, TestFailed or "" (null: not tested).
	TestResult string `json:"testResult,omitempty"`
	// BuildID, Repo, Flavour (the flavors.yaml name), Logs and Notes go
	// into the manifest's kiln facts.
	BuildID string            `json:"buildId,omitempty"`
	Repo    string            `json:"repo,omitempty"`
	Flavour string            `json:"flavour,omitempty"`
	Logs    map[string]string `json:"logs,omitempty"`
	Notes   []string          `json:"notes,omitempty"`
}

// BuildManifest is the manifest PutManifest writes for a request, to be
// stored in bucket at key.
func BuildManifest(in PutManifestRequest, layout Layout, bucket, key string) Manifest {
	id := in.Identity
	m := Manifest{
		Architecture: id.Arch, BuildCommittish: id.Commit, BuildTimestamp: in.BuildTimestamp.UTC().Format(TimestampLayout),
		GardenLinuxEpoch: Epoch(id.Version), Modifiers: id.Modifiers, Platform: id.Platform, PlatformVariant: id.PlatformVariant,
		RequireUEFI: id.RequireUEFI, SecureBoot: id.SecureBoot, TPM2: id.TPM2, S3Bucket: bucket, S3Key: key, Version: id.Version,
		Paths: make([]Path, 0, len(in.Files)),
		Kiln: &KilnFacts{
			Schema: KilnFactsSchema, BuildID: in.BuildID, Repo: in.Repo, Flavour: in.Flavour, Layout: layout,
			Logs: in.Logs, Notes: in.Notes, Sizes: map[string]int64{},
		},
	}
	if m.Modifiers == nil {
		m.Modifiers = []string{}
	}
	if len(m.Kiln.Logs) == 0 {
		m.Kiln.Logs = nil
	}
	if in.TestResult != "" {
		m.TestResult = in.TestResult
	}
	for _, f := range in.Files {
		m.Paths = append(m.Paths, Path{Name: f.Name, S3BucketName: bucket, S3Key: f.Key, Suffix: f.Suffix, MD5Sum: f.MD5, SHA256Sum: f.SHA256})
		m.Kiln.Sizes[f.Name] = f.Size
	}
	return m
}

// PutManifest writes a flavour's manifest, Garden Linux's YAML at
// meta/singles/<base>, unless one exists: on a server that honours
// conditional writes the first create wins, so a retried activity, or a
// second writer for the same build, changes nothing (later updates go
// through SetPublished and the test result's read-modify-write). It
// returns the key.
//
// The write is a conditional create, PutObject with If-None-Match: "*";
// a server that refuses it because the key exists (412 PreconditionFailed,
// or 409 ConditionalRequestConflict for a racing write) leaves the
// existing manifest in place, and its key is returned. AWS S3 and
// versitygw (from v1.8.0, evaluated under the object's publish lock, so
// atomic with the write) honour the header. A server that answers
// NotImplemented gets a HEAD, then an unconditional PUT: NOT atomic, two
// racing writers may both write and the last one wins; a warning is
// logged. A server that silently ignores the header always overwrites;
// kiln cannot tell.
func (a *Activities) PutManifest(ctx context.Context, in PutManifestRequest) (string, error) {
	id := in.Identity
	if id.Base == "" || id.Commit == "" || id.Version == "" || id.Arch == "" {
		return "", nonRetryable(ErrTypeBadRequest, "put manifest: the identity lacks base, commit, version or arch: %+v", id)
	}
	switch in.TestResult {
	case "", TestPassed, TestFailed:
	case TestNotRun:
		in.TestResult = ""
	default:
		return "", nonRetryable(ErrTypeBadRequest, "put manifest %s: test result %q: want %q, %q or none", id.Base, in.TestResult, TestPassed, TestFailed)
	}
	key := ManifestKey(a.cfg.Prefix, id.Base)
	body, err := EncodeManifest(BuildManifest(in, a.cfg.layout(), a.cfg.ReleaseBucket, key))
	if err != nil {
		return "", nonRetryable(ErrTypeBadRequest, "encode manifest %s: %v", key, err)
	}
	err = a.put(ctx, key, body, ManifestContentType, &s3.PutObjectInput{IfNoneMatch: aws.String("*")})
	switch {
	case err == nil, isConditionFailed(err):
		return key, nil
	case isNotImplemented(err):
		activity.GetLogger(ctx).Warn("the S3 server does not support If-None-Match; writing the manifest after a HEAD, which is not atomic", "key", key, "error", err)
		if _, herr := a.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &a.cfg.ReleaseBucket, Key: &key}); herr == nil {
			return key, nil
		} else if !isNotFound(herr) {
			return "", classify("head "+key, herr)
		}
		if err := a.put(ctx, key, body, ManifestContentType, nil); err != nil {
			return "", classify("put "+key, err)
		}
		return key, nil
	}
	return "", classify("put "+key, err)
}

// put writes body at key in the release bucket, with the conditions in
// cond (nil: none).
func (a *Activities) put(ctx context.Context, key string, body []byte, contentType string, cond *s3.PutObjectInput) error {
	in := &s3.PutObjectInput{
		Bucket: &a.cfg.ReleaseBucket, Key: &key, Body: bytes.NewReader(body),
		ContentType: &contentType, ContentLength: aws.Int64(int64(len(body))),
	}
	if cond != nil {
		in.IfNoneMatch, in.IfMatch = cond.IfNoneMatch, cond.IfMatch
	}
	_, err := a.s3.PutObject(ctx, in)
	return err
}
