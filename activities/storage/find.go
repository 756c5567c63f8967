package storage

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kiln-build/kiln/workflows/release"
)

// maxManifestSize bounds a manifest read: Garden Linux's are some KiB.
const maxManifestSize = 16 << 20

// FindManifestRequest names a flavour's build.
type FindManifestRequest struct {
	// Flavour is the flavors.yaml name, arch included, such as
	// aws-gardener_prod_trustedboot_tpm2-amd64.
	Flavour string `json:"flavour"`
	// Platform and Arch are the flavour's. Arch is taken from Flavour
	// when empty; the platform keys are listed under is Flavour's first
	// token, Platform only when that is empty.
	Platform string   `json:"platform,omitempty"`
	Arch     string   `json:"arch,omitempty"`
	Features []string `json:"features,omitempty"`
	// Version and Commit (the full hash) are the build's.
	Version string `json:"version"`
	Commit  string `json:"commit"`
}

// Found is FindManifest's answer.
type Found struct {
	Found bool `json:"found"`
	// Key is the manifest's key, when found.
	Key      string   `json:"key"`
	Manifest Manifest `json:"manifest,omitzero"`
	// Format is FormatGardenLinux or FormatKilnJSONv1.
	Format string `json:"format,omitempty"`
	// Files are Manifest.Files().
	Files []File `json:"files,omitempty"`
	// Base is the base name the manifest is filed under (for an old
	// JSON manifest, the one its flavour, version and commit make).
	Base string `json:"base,omitempty"`
	// Published: the manifest has published-image metadata.
	Published bool `json:"published,omitempty"`
	// TestResult is Manifest.Test().
	TestResult string `json:"testResult,omitempty"`
}

// FindManifest returns the manifest of a flavour at a version and commit,
// if one was written, by Garden Linux's tooling or by kiln: the sign that
// the flavour was built and a re-run can skip it. It looks, in order, at
//
//  1. meta/singles/<flavour without arch>-<arch>-<version>-<commit[:8]>;
//  2. the keys under meta/singles/<platform> that end in
//     -<arch>-<version>-<commit[:8]> and whose flavor part names the same
//     flavour (release.SameFlavour: Garden Linux orders the features as
//     its flavors.yaml lists them, kiln's flavour names sort them), in key
//     order;
//  3. kiln's old JSON key, meta/singles/<flavour>-<version>-<commit>.
//
// A manifest whose build_committish or version disagrees with the
// request's is not a match. A manifest that cannot be read (not YAML or
// JSON, or JSON of a newer schema) is a non-retryable error.
func (a *Activities) FindManifest(ctx context.Context, in FindManifestRequest) (Found, error) {
	arch := in.Arch
	if c, err := release.ParseCName(in.Flavour); err == nil && arch == "" {
		arch = c.Arch
	}
	own := strings.TrimSuffix(in.Flavour, "-"+arch)
	// Keys start with the flavor's first token, the platform.
	platform, _, _ := strings.Cut(strings.Split(own, "_")[0], "-")
	if platform == "" {
		platform = in.Platform
	}
	tail := "-" + arch + "-" + in.Version + "-" + shortCommit(strings.ToLower(in.Commit))
	singles := a.cfg.Prefix + "meta/singles/"

	first := singles + own + tail
	if f, err := a.tryManifest(ctx, first, in); err != nil || f.Found {
		return f, err
	}
	var token *string
	for {
		page, err := a.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: &a.cfg.ReleaseBucket, Prefix: aws.String(singles + platform), ContinuationToken: token,
		})
		if err != nil {
			return Found{}, classify("list "+singles+platform, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if key == first || !strings.HasSuffix(key, tail) {
				continue
			}
			if !release.SameFlavour(strings.TrimSuffix(strings.TrimPrefix(key, singles), tail), own) {
				continue
			}
			if f, err := a.tryManifest(ctx, key, in); err != nil || f.Found {
				return f, err
			}
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			break
		}
		token = page.NextContinuationToken
	}
	return a.tryManifest(ctx, LegacyManifestKey(a.cfg.Prefix, in.Flavour, in.Version, in.Commit), in)
}

// tryManifest reads the manifest at key: Found when it exists and is of
// the request's commit and version.
func (a *Activities) tryManifest(ctx context.Context, key string, in FindManifestRequest) (Found, error) {
	m, format, _, err := a.getManifest(ctx, key)
	if isNotFound(err) {
		return Found{}, nil
	}
	if err != nil {
		return Found{}, err
	}
	if !release.SameCommit(m.BuildCommittish, in.Commit) || m.Version != in.Version {
		return Found{}, nil
	}
	f := Found{Found: true, Key: key, Manifest: m, Format: format, Files: m.Files(), Published: len(m.PublishedImageMetadata) > 0, TestResult: m.Test()}
	f.Base = strings.TrimPrefix(key, a.cfg.Prefix+"meta/singles/")
	if format == FormatKilnJSONv1 {
		f.Base = ""
		if c, err := release.ParseCName(in.Flavour); err == nil {
			c.Version, c.Commit = m.Version, m.BuildCommittish
			f.Base = c.Base()
		}
	}
	return f, nil
}

// getManifest reads and decodes the manifest at key, returning its raw
// body too. A missing key is returned as S3's error (isNotFound); an
// undecodable manifest is a non-retryable error.
func (a *Activities) getManifest(ctx context.Context, key string) (Manifest, string, object, error) {
	obj, err := a.get(ctx, key)
	if err != nil {
		return Manifest{}, "", obj, err
	}
	m, format, err := DecodeManifest(obj.body)
	if err != nil {
		return Manifest{}, format, obj, nonRetryable(ErrTypeArtifactCorrupt, "manifest %s: %v", key, err)
	}
	if m.S3Key == "" {
		m.S3Key = key
	}
	return m, format, obj, nil
}

// object is a release bucket object as read.
type object struct {
	body        []byte
	etag        string
	contentType string
}

// get reads an object of the release bucket. A missing key is S3's error,
// unwrapped (isNotFound); other errors are classified.
func (a *Activities) get(ctx context.Context, key string) (object, error) {
	out, err := a.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &a.cfg.ReleaseBucket, Key: &key})
	if isNotFound(err) {
		return object{}, err
	}
	if err != nil {
		return object{}, classify("get "+key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxManifestSize+1))
	if err != nil {
		return object{}, fmt.Errorf("read %s: %w", key, err)
	}
	if len(b) > maxManifestSize {
		return object{}, nonRetryable(ErrTypeArtifactCorrupt, "manifest %s is larger than %d bytes", key, maxManifestSize)
	}
	return object{body: b, etag: aws.ToString(out.ETag), contentType: aws.ToString(out.ContentType)}, nil
}
