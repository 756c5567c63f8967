package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Part sizes of Upload.
const (
	// DefaultPartSize is the part size Upload uses when given none.
	DefaultPartSize int64 = 8 << 20
	// MinPartSize is the smallest part S3 accepts (but for the last one);
	// Upload raises smaller part sizes to it.
	MinPartSize int64 = 5 << 20
)

// abortTimeout bounds the AbortMultipartUpload sent after a failure, which
// runs even when the caller's context is cancelled.
const abortTimeout = 30 * time.Second

// UploadResult describes an object Upload wrote.
type UploadResult struct {
	// Bytes is the object's size.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex SHA-256 of the object's content, computed while
	// streaming it.
	SHA256 string `json:"sha256"`
	// Parts is the number of parts of a multipart upload, 0 when the body
	// fitted into one part and was sent with a single PutObject.
	Parts int `json:"parts"`
}

// Upload streams r into s3://bucket/key with a multipart upload of partSize
// parts (DefaultPartSize when partSize is 0 or less, at least MinPartSize, as
// S3 requires), holding at most one part in memory: a single buffer, reused
// for every part. A body that fits in one part is sent with one PutObject.
// Every part carries a CRC32 checksum that the server verifies.
//
// On any error, from r or from S3, it aborts the multipart upload, so no
// partial object appears and no parts are left behind, and returns the error
// wrapped with the failing step: S3's errors can be told apart with
// errors.As (smithy.APIError, see Classify), r's errors are wrapped as they
// are. Writing the same content to the same key again yields the same object,
// so callers with deterministic keys are idempotent.
//
// It returns the bytes written and the SHA-256 of the content.
func Upload(ctx context.Context, client *s3.Client, bucket, key string, r io.Reader, partSize int64, contentType string) (UploadResult, error) {
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	partSize = max(partSize, MinPartSize)
	// The buffer holds one byte more than a part: a full buffer means that
	// more follows, so the last part is never empty and a body of exactly
	// one part is one PutObject.
	u := &uploader{client: client, bucket: bucket, key: key, buf: make([]byte, partSize+1), sum: sha256.New()}
	if contentType != "" {
		u.contentType = aws.String(contentType)
	}
	src := io.TeeReader(r, u.sum)

	n, err := u.fill(src, 0, 0)
	if err != nil {
		return UploadResult{}, err
	}
	if n < len(u.buf) {
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &bucket, Key: &key, Body: bytes.NewReader(u.buf[:n]), ContentLength: aws.Int64(int64(n)),
			ContentType: u.contentType, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		}); err != nil {
			return UploadResult{}, fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
		}
		return u.result(int64(n), 0), nil
	}
	res, err := u.multipart(ctx, src)
	if err != nil && u.uploadID != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if _, aerr := client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: u.uploadID}); aerr != nil {
			err = errors.Join(err, fmt.Errorf("abort multipart upload of s3://%s/%s: %w", bucket, key, aerr))
		}
	}
	return res, err
}

// uploader is the state of one Upload call.
type uploader struct {
	client      *s3.Client
	bucket, key string
	contentType *string
	buf         []byte
	sum         hash.Hash
	uploadID    *string
	parts       []types.CompletedPart
}

func (u *uploader) result(n int64, parts int) UploadResult {
	return UploadResult{Bytes: n, SHA256: hex.EncodeToString(u.sum.Sum(nil)), Parts: parts}
}

// fill reads src into u.buf[from:] until the buffer is full or src ends,
// and returns how many bytes u.buf holds. done is the count of bytes before,
// for the error message.
func (u *uploader) fill(src io.Reader, from int, done int64) (int, error) {
	n, err := io.ReadFull(src, u.buf[from:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return 0, fmt.Errorf("read body of s3://%s/%s after %d bytes: %w", u.bucket, u.key, done+int64(n), err)
	}
	return from + n, nil
}

// multipart sends the full u.buf and the rest of src as parts of
// len(u.buf)-1 bytes.
func (u *uploader) multipart(ctx context.Context, src io.Reader) (UploadResult, error) {
	mp, err := u.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &u.bucket, Key: &u.key, ContentType: u.contentType, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return UploadResult{}, fmt.Errorf("create multipart upload of s3://%s/%s: %w", u.bucket, u.key, err)
	}
	u.uploadID = mp.UploadId
	partSize := len(u.buf) - 1
	total := int64(0)
	for n := len(u.buf); ; {
		if n < len(u.buf) { // the last part
			if err := u.part(ctx, u.buf[:n]); err != nil {
				return UploadResult{}, err
			}
			total += int64(n)
			break
		}
		if err := u.part(ctx, u.buf[:partSize]); err != nil {
			return UploadResult{}, err
		}
		total += int64(partSize)
		u.buf[0] = u.buf[partSize] // the byte that showed more follows
		if n, err = u.fill(src, 1, total); err != nil {
			return UploadResult{}, err
		}
	}
	if _, err := u.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &u.bucket, Key: &u.key, UploadId: u.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: u.parts},
	}); err != nil {
		return UploadResult{}, fmt.Errorf("complete multipart upload of s3://%s/%s: %w", u.bucket, u.key, err)
	}
	return u.result(total, len(u.parts)), nil
}

// part uploads b as the next part. b is u.buf, refilled for the next part
// once UploadPart returns: the SDK is done with the body by then.
func (u *uploader) part(ctx context.Context, b []byte) error {
	num := aws.Int32(int32(len(u.parts) + 1))
	out, err := u.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &u.bucket, Key: &u.key, UploadId: u.uploadID, PartNumber: num,
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return fmt.Errorf("upload part %d of s3://%s/%s: %w", *num, u.bucket, u.key, err)
	}
	u.parts = append(u.parts, types.CompletedPart{PartNumber: num, ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32})
	return nil
}

// Classify sorts an S3 error as the storage activities do: AccessDenied,
// NoSuchBucket and bad credentials become a non-retryable error of type
// ErrTypeAccessDenied; anything else is returned wrapped with op, and is
// retried.
func Classify(op string, err error) error { return classify(op, err) }
