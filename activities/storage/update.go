package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/activity"
	"go.yaml.in/yaml/v3"
)

// maxUpdateAttempts bounds the read-modify-write rounds of one update
// that lose to concurrent writers; then the activity fails, retryably.
const maxUpdateAttempts = 12

// SetPublishedRequest records a flavour's published images in its manifest.
type SetPublishedRequest struct {
	// Key is the manifest's key.
	Key string `json:"key"`
	// Images is the platform's published-image metadata
	// (activities/publish's schema for the platform).
	Images map[string]any `json:"images"`
}

// SetPublished sets the manifest's published_image_metadata (a JSON
// manifest's publishedImages), keeping everything else, as update does.
// Running it again with the same images changes nothing.
func (a *Activities) SetPublished(ctx context.Context, in SetPublishedRequest) error {
	var images any
	if len(in.Images) > 0 {
		images = in.Images
	}
	return a.update(ctx, in.Key, change{yamlKey: "published_image_metadata", jsonKey: "publishedImages", value: images})
}

// SetTestResultRequest records a flavour's test result in its manifest.
type SetTestResultRequest struct {
	// Key is the manifest's key.
	Key string `json:"key"`
	// TestResult is TestPassed, TestFailed, or "" for null.
	TestResult string `json:"testResult"`
}

// SetTestResult sets the manifest's test_result (a JSON manifest's
// testResult), keeping everything else, as update does.
func (a *Activities) SetTestResult(ctx context.Context, in SetTestResultRequest) error {
	var v any
	switch in.TestResult {
	case "", TestNotRun:
	case TestPassed, TestFailed:
		v = in.TestResult
	default:
		return nonRetryable(ErrTypeBadRequest, "set test result of %s: %q: want %q, %q or none", in.Key, in.TestResult, TestPassed, TestFailed)
	}
	return a.update(ctx, in.Key, change{yamlKey: "test_result", jsonKey: "testResult", value: v})
}

// change sets one top-level key of a manifest: yamlKey in Garden Linux's
// YAML, jsonKey in kiln's old JSON (removed there when value is nil, as
// that format omitted empty fields).
type change struct {
	yamlKey, jsonKey string
	value            any
}

// update sets one top-level key of the manifest at key, in the manifest's
// own format, leaving every other key as it was, unknown ones included. It
// is a read-modify-write made safe by the ETag: the write is a PutObject
// with If-Match: <the ETag read>, and when another writer got in between
// (412 PreconditionFailed, or 409 ConditionalRequestConflict) it reads
// again and reapplies the change, at most maxUpdateAttempts times, so a
// concurrent update of another key is never lost. A manifest that already
// holds the value is not written.
//
// versitygw from v1.8.0 and AWS S3 evaluate If-Match atomically with the
// write. A server that answers NotImplemented, or returns no ETag, gets an
// unconditional write (a concurrent update may then be lost; a warning is
// logged).
func (a *Activities) update(ctx context.Context, key string, c change) error {
	for attempt := 1; ; attempt++ {
		obj, err := a.get(ctx, key)
		if isNotFound(err) {
			return nonRetryable(ErrTypeArtifactMissing, "manifest %s does not exist", key)
		}
		if err != nil {
			return err
		}
		body, contentType, err := apply(obj.body, c)
		if err != nil {
			return nonRetryable(ErrTypeArtifactCorrupt, "manifest %s: %v", key, err)
		}
		if bytes.Equal(body, obj.body) {
			return nil
		}
		var cond *s3.PutObjectInput
		if obj.etag != "" {
			cond = &s3.PutObjectInput{IfMatch: aws.String(obj.etag)}
		} else {
			activity.GetLogger(ctx).Warn("the S3 server returned no ETag; updating the manifest unconditionally", "key", key)
		}
		err = a.put(ctx, key, body, contentType, cond)
		if err != nil && cond != nil && isNotImplemented(err) {
			activity.GetLogger(ctx).Warn("the S3 server does not support If-Match; updating the manifest unconditionally", "key", key, "error", err)
			err = a.put(ctx, key, body, contentType, nil)
		}
		switch {
		case err == nil:
			return nil
		case isNotFound(err): // deleted since read
			return nonRetryable(ErrTypeArtifactMissing, "manifest %s does not exist", key)
		case !isConditionFailed(err):
			return classify("put "+key, err)
		case attempt == maxUpdateAttempts:
			return fmt.Errorf("update %s of manifest %s: it changed under each of %d attempts", c.yamlKey, key, attempt)
		}
		activity.RecordHeartbeat(ctx, fmt.Sprintf("manifest %s changed; attempt %d", key, attempt+1))
		// Back off a little, at random, so racing writers part.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Duration(5+rand.IntN(20)) * time.Millisecond):
		}
	}
}

// apply makes change c to a manifest, in its format, and returns the new
// body and its content type.
func apply(data []byte, c change) ([]byte, string, error) {
	if isJSON(data) {
		if _, err := decodeLegacy(data); err != nil {
			return nil, "", err
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, "", err
		}
		if c.value == nil {
			delete(m, c.jsonKey)
		} else {
			b, err := json.Marshal(c.value)
			if err != nil {
				return nil, "", err
			}
			m[c.jsonKey] = b
		}
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return nil, "", err
		}
		// Unchanged content keeps its bytes, so no write follows.
		if old, err := reindent(data); err == nil && bytes.Equal(old, b) {
			return data, "application/json", nil
		}
		return b, "application/json", nil
	}
	if _, _, err := DecodeManifest(data); err != nil {
		return nil, "", err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, "", err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, "", fmt.Errorf("not a YAML mapping")
	}
	root := doc.Content[0]
	var v yaml.Node
	if err := v.Encode(c.value); err != nil {
		return nil, "", err
	}
	idx := -1
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == c.yamlKey {
			idx = i + 1
		}
	}
	if idx >= 0 {
		if sameNode(root.Content[idx], &v) {
			return data, ManifestContentType, nil
		}
		root.Content[idx] = &v
	} else {
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: c.yamlKey}, &v)
	}
	b, err := encodeYAML(&doc)
	return b, ManifestContentType, err
}

// sameNode: two YAML values decode to the same data.
func sameNode(a, b *yaml.Node) bool {
	var x, y any
	if a.Decode(&x) != nil || b.Decode(&y) != nil {
		return false
	}
	bx, errx := json.Marshal(x)
	by, erry := json.Marshal(y)
	return errx == nil && erry == nil && bytes.Equal(bx, by)
}

// reindent is a JSON document as apply writes it.
func reindent(data []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return json.MarshalIndent(m, "", "  ")
}
