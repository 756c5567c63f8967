package storage

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.temporal.io/sdk/activity"

	"github.com/kiln-build/kiln/workflows/release"
)

// PromoteRequest lists verified artifacts to promote (Verify's result, MD5
// filled in) and the flavour's identity, which names them in the
// gardenlinux layout.
type PromoteRequest struct {
	Artifacts []Artifact       `json:"artifacts"`
	Identity  release.Identity `json:"identity"`
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

// GardenLinuxName is an artifact's file name under a base name: the
// artifact's name when it starts with base, else base+"."+name (base+name
// when name starts with "."). The suffix is the part after base.
func GardenLinuxName(base, name string) (file, suffix string) {
	switch {
	case strings.HasPrefix(name, base):
		file = name
	case strings.HasPrefix(name, "."):
		file = base + name
	default:
		file = base + "." + name
	}
	return file, file[len(base):]
}

// GardenLinuxObjectKey is a file's key in the gardenlinux layout.
func GardenLinuxObjectKey(prefix, base, file string) string {
	return prefix + "objects/" + base + "/" + file
}

// Tag keys Promote sets in the gardenlinux layout, Garden Linux's.
const (
	TagArchitecture = "architecture"
	TagPlatform     = "platform"
	TagVersion      = "version"
	TagCommittish   = "committish"
	TagMD5          = "md5sum"
	TagSHA256       = "sha256sum"
)

// Promote copies each artifact, server side, into the release bucket.
//
// In the gardenlinux layout (the default) an artifact goes to
// objects/<base>/<file> (GardenLinuxName), tagged as Garden Linux tags
// its files (architecture, platform, version, committish, md5sum,
// sha256sum), and carries its SHA-256 as metadata. In the
// content-addressed layout it goes to objects/sha256/<hex>. Both are
// idempotent: an object already there with the same size and SHA-256 (its
// metadata, or its sha256sum tag for a file Garden Linux's tooling wrote)
// is not copied again; its tags are set when they differ. An artifact
// without an MD5 (not from Verify) is hashed first.
func (a *Activities) Promote(ctx context.Context, in PromoteRequest) (PromoteResult, error) {
	var res PromoteResult
	id := in.Identity
	layout := a.cfg.layout()
	switch layout {
	case LayoutGardenLinux:
		if id.Base == "" {
			return res, nonRetryable(ErrTypeBadRequest, "promote: no base name to file the artifacts under (the flavour's identity is not resolved)")
		}
	case LayoutContentAddressed:
	default:
		return res, nonRetryable(ErrTypeBadRequest, "promote: unknown layout %q", layout)
	}
	for i, art := range in.Artifacts {
		activity.RecordHeartbeat(ctx, i)
		if art.Name == "" || strings.Contains(art.Name, "/") {
			return res, nonRetryable(ErrTypeBadRequest, "promote: artifact name %q: want a file name", art.Name)
		}
		art.SHA256, art.MD5 = strings.ToLower(art.SHA256), strings.ToLower(art.MD5)
		if art.MD5 == "" {
			sha, sum5, err := a.stream(ctx, a.cfg.StagingBucket, art.Key)
			if err != nil {
				return res, classify("read "+art.Key, err)
			}
			if sha != art.SHA256 {
				return res, corrupt(id.Base, art, "sha256 "+sha+", reported "+art.SHA256)
			}
			art.MD5 = sum5
		}
		f := File{Name: art.Name, Size: art.Size, SHA256: art.SHA256, MD5: art.MD5}
		var tags string
		if id.Base != "" {
			var name string
			name, f.Suffix = GardenLinuxName(id.Base, art.Name)
			if layout == LayoutGardenLinux {
				f.Name = name
			}
		}
		if layout == LayoutGardenLinux {
			f.Key = GardenLinuxObjectKey(a.cfg.Prefix, id.Base, f.Name)
			tags = tagging(id, art)
		} else {
			f.Key = ObjectKey(a.cfg.Prefix, art.SHA256)
		}
		res.Files = append(res.Files, f)
		copied, err := a.promote(ctx, art, f.Key, tags)
		if err != nil {
			return res, err
		}
		if copied {
			res.Copied++
		}
	}
	return res, nil
}

// promote copies art to key unless it is there, and sets its tags (when
// tags is not empty). It reports whether it copied.
func (a *Activities) promote(ctx context.Context, art Artifact, key, tags string) (bool, error) {
	head, err := a.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &a.cfg.ReleaseBucket, Key: &key})
	if err != nil && !isNotFound(err) {
		return false, classify("head "+key, err)
	}
	if err == nil && aws.ToInt64(head.ContentLength) == art.Size {
		if tags == "" {
			return false, nil // content-addressed: same key, same content
		}
		have, err := a.s3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: &a.cfg.ReleaseBucket, Key: &key})
		if err != nil {
			return false, classify("get tags of "+key, err)
		}
		if head.Metadata["sha256"] == art.SHA256 || tagValue(have.TagSet, TagSHA256) == art.SHA256 {
			if !sameTags(have.TagSet, tags) {
				return false, a.putTags(ctx, key, tags)
			}
			return false, nil
		}
		// Another content at the key: an earlier build of the same
		// version and commit that wrote no manifest. Replace it.
	}
	if err := a.copy(ctx, art, key, tags); err != nil {
		return false, classify("copy "+art.Key+" to "+key, err)
	}
	return true, nil
}

// s3TagUnsafe are the characters S3 does not take in a tag value; Garden
// Linux's tooling replaces them with "+", as does tagging.
var s3TagUnsafe = regexp.MustCompile(`[^a-zA-Z0-9\s+\-=._:/@]`)

// tagging is the URL-encoded tag set of a file in the gardenlinux layout.
func tagging(id release.Identity, art Artifact) string {
	v := url.Values{}
	for k, s := range map[string]string{
		TagArchitecture: id.Arch, TagPlatform: id.Platform, TagVersion: id.Version,
		TagCommittish: id.Commit, TagMD5: art.MD5, TagSHA256: art.SHA256,
	} {
		v.Set(k, s3TagUnsafe.ReplaceAllString(s, "+"))
	}
	return v.Encode() // sorted by key
}

func tagValue(set []types.Tag, key string) string {
	for _, t := range set {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

func sameTags(set []types.Tag, tags string) bool {
	want, err := url.ParseQuery(tags)
	if err != nil || len(want) != len(set) {
		return false
	}
	for _, t := range set {
		if !slices.Equal(want[aws.ToString(t.Key)], []string{aws.ToString(t.Value)}) {
			return false
		}
	}
	return true
}

func (a *Activities) putTags(ctx context.Context, key, tags string) error {
	q, err := url.ParseQuery(tags)
	if err != nil {
		return err
	}
	var set []types.Tag
	for _, k := range slices.Sorted(maps.Keys(q)) {
		set = append(set, types.Tag{Key: aws.String(k), Value: aws.String(q.Get(k))})
	}
	if _, err := a.s3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{
		Bucket: &a.cfg.ReleaseBucket, Key: &key, Tagging: &types.Tagging{TagSet: set},
	}); err != nil {
		return classify("put tags of "+key, err)
	}
	return nil
}

// copy copies art from staging to key in the release bucket, server side,
// with its SHA-256 as metadata and tags (when not empty): in one
// CopyObject up to the part size, in parts above it, the tags then set
// with PutObjectTagging.
func (a *Activities) copy(ctx context.Context, art Artifact, key, tags string) error {
	src := aws.String(url.PathEscape(a.cfg.StagingBucket) + "/" + escapeKey(art.Key))
	meta := map[string]string{"sha256": art.SHA256}
	part := a.cfg.CopyPartSize
	if part <= 0 {
		part = DefaultCopyPartSize
	}
	if art.Size <= part {
		in := &s3.CopyObjectInput{
			Bucket: &a.cfg.ReleaseBucket, Key: &key, CopySource: src,
			Metadata: meta, MetadataDirective: types.MetadataDirectiveReplace,
		}
		if tags != "" {
			in.Tagging, in.TaggingDirective = &tags, types.TaggingDirectiveReplace
		}
		_, err := a.s3.CopyObject(ctx, in)
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
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_, _ = a.s3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &a.cfg.ReleaseBucket, Key: &key, UploadId: up.UploadId})
		return err
	}
	var parts []types.CompletedPart
	for n, off := int32(1), int64(0); off < art.Size; n, off = n+1, off+part {
		end := min(off+part, art.Size) - 1
		out, err := a.s3.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: &a.cfg.ReleaseBucket, Key: &key, UploadId: up.UploadId, PartNumber: aws.Int32(n),
			CopySource: src, CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
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
	if tags != "" {
		return a.putTags(ctx, key, tags)
	}
	return nil
}

// escapeKey URL-escapes a key for CopySource, keeping its slashes.
func escapeKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
