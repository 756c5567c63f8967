package storage

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.temporal.io/sdk/activity"
)

// MaxMetadataFileSize is the largest .release or .requirements artifact
// Verify reads.
const MaxMetadataFileSize = 64 << 10

// VerifyRequest lists a flavour's artifacts.
type VerifyRequest struct {
	Flavour   string     `json:"flavour"`
	Artifacts []Artifact `json:"artifacts"`
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	// Artifacts are the artifacts as verified, MD5 filled in, hex in
	// lower case.
	Artifacts []Artifact `json:"artifacts"`
	// Release is the content of the artifact whose Name ends in
	// ".release", if any; Requirements of the one ending in
	// ".requirements".
	Release      string `json:"release,omitempty"`
	Requirements string `json:"requirements,omitempty"`
}

// Verify checks that every artifact exists in staging with its size,
// SHA-256 and (when reported) MD5, and returns them with the MD5 filled
// in. A checksum is taken from the object's full-object checksum
// attribute when the server keeps one (a reported MD5 is also proven by an
// ETag equal to it); what no attribute proves is computed by streaming the
// object, once for both sums. A missing or corrupt artifact is a
// non-retryable error naming the key.
//
// It also returns the content of the .release and .requirements
// artifacts (at most MaxMetadataFileSize each), verified as the others.
func (a *Activities) Verify(ctx context.Context, in VerifyRequest) (VerifyResult, error) {
	res := VerifyResult{Artifacts: make([]Artifact, 0, len(in.Artifacts))}
	for i, art := range in.Artifacts {
		activity.RecordHeartbeat(ctx, i)
		art.SHA256, art.MD5 = strings.ToLower(art.SHA256), strings.ToLower(art.MD5)
		head, err := a.s3.HeadObject(ctx, &s3.HeadObjectInput{
			Bucket: &a.cfg.StagingBucket, Key: &art.Key, ChecksumMode: types.ChecksumModeEnabled,
		})
		if isNotFound(err) {
			return res, nonRetryable(ErrTypeArtifactMissing, "%s: artifact %s is missing from s3://%s/%s", in.Flavour, art.Name, a.cfg.StagingBucket, art.Key)
		}
		if err != nil {
			return res, classify("head "+art.Key, err)
		}
		if size := aws.ToInt64(head.ContentLength); size != art.Size {
			return res, corrupt(in.Flavour, art, fmt.Sprintf("size %d, reported %d", size, art.Size))
		}
		var sha, sum5 string
		if head.ChecksumType == types.ChecksumTypeFullObject {
			sha, sum5 = b64hex(head.ChecksumSHA256), b64hex(head.ChecksumMD5)
		}
		if etag := strings.Trim(aws.ToString(head.ETag), `"`); sum5 == "" && art.MD5 != "" && strings.EqualFold(etag, art.MD5) {
			// An ETag that is not the MD5 (multipart, SSE-KMS) cannot
			// equal it by chance.
			sum5 = art.MD5
		}

		var content []byte
		kind := metadataKind(art.Name)
		switch {
		case kind != "":
			if art.Size > MaxMetadataFileSize {
				return res, nonRetryable(ErrTypeArtifactCorrupt, "%s: artifact %s at %s is %d bytes; a %s file may have at most %d", in.Flavour, art.Name, art.Key, art.Size, kind, MaxMetadataFileSize)
			}
			if content, sha, sum5, err = a.read(ctx, art.Key); err != nil {
				return res, classify("read "+art.Key, err)
			}
		case sha == "" || sum5 == "":
			if sha, sum5, err = a.stream(ctx, a.cfg.StagingBucket, art.Key); err != nil {
				return res, classify("read "+art.Key, err)
			}
		}
		if sha != art.SHA256 {
			return res, corrupt(in.Flavour, art, "sha256 "+sha+", reported "+art.SHA256)
		}
		if art.MD5 != "" && sum5 != art.MD5 {
			return res, corrupt(in.Flavour, art, "md5 "+sum5+", reported "+art.MD5)
		}
		art.MD5 = sum5
		if kind != "" {
			dst := &res.Release
			if kind == ".requirements" {
				dst = &res.Requirements
			}
			if *dst != "" {
				return res, nonRetryable(ErrTypeArtifactCorrupt, "%s: more than one %s artifact (%s is the second)", in.Flavour, kind, art.Name)
			}
			*dst = string(content)
		}
		res.Artifacts = append(res.Artifacts, art)
	}
	return res, nil
}

// metadataKind is ".release" or ".requirements" for the artifacts whose
// content Verify returns, else "".
func metadataKind(name string) string {
	for _, k := range []string{".release", ".requirements"} {
		if strings.HasSuffix(name, k) {
			return k
		}
	}
	return ""
}

func b64hex(s *string) string {
	if b, err := base64.StdEncoding.DecodeString(aws.ToString(s)); err == nil && len(b) > 0 {
		return hex.EncodeToString(b)
	}
	return ""
}

func corrupt(flavour string, art Artifact, why string) error {
	return nonRetryable(ErrTypeArtifactCorrupt, "%s: artifact %s at %s is corrupt: %s", flavour, art.Name, art.Key, why)
}

// read returns a small staging object and its SHA-256 and MD5.
func (a *Activities) read(ctx context.Context, key string) ([]byte, string, string, error) {
	obj, err := a.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &a.cfg.StagingBucket, Key: &key})
	if err != nil {
		return nil, "", "", err
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(io.LimitReader(obj.Body, MaxMetadataFileSize+1))
	if err != nil {
		return nil, "", "", err
	}
	s, m := sha256.Sum256(b), md5.Sum(b)
	return b, hex.EncodeToString(s[:]), hex.EncodeToString(m[:]), nil
}

// stream hashes an object, SHA-256 and MD5, without holding it in memory,
// heartbeating its progress.
func (a *Activities) stream(ctx context.Context, bucket, key string) (sha, sum5 string, err error) {
	obj, err := a.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return "", "", err
	}
	defer obj.Body.Close()
	s, m := sha256.New(), md5.New()
	w := &progress{ctx: ctx, key: key, w: io.MultiWriter(s, m)}
	if _, err := io.Copy(w, obj.Body); err != nil {
		return "", "", err
	}
	return hex.EncodeToString(s.Sum(nil)), hex.EncodeToString(m.Sum(nil)), nil
}

// progress heartbeats every 64 MiB written through it.
type progress struct {
	ctx  context.Context
	key  string
	w    io.Writer
	n    int64
	next int64
}

func (p *progress) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if p.n += int64(n); p.n >= p.next {
		activity.RecordHeartbeat(p.ctx, fmt.Sprintf("hashing %s: %d bytes", p.key, p.n))
		p.next = p.n + 64<<20
	}
	return n, err
}
