package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
)

type env struct {
	t    *testing.T
	s3   *s3.Client
	acts *storage.Activities
	ae   *testsuite.TestActivityEnvironment
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv, err := s3test.Start(context.Background(), t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c := srv.Client()
	for _, b := range []string{"staging", "releases"} {
		if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &b}); err != nil {
			t.Fatal(err)
		}
	}
	var s testsuite.WorkflowTestSuite
	e := &env{t: t, s3: c, acts: storage.New(c, storage.Config{StagingBucket: "staging", ReleaseBucket: "releases", Prefix: "gardenlinux/"}), ae: s.NewTestActivityEnvironment()}
	e.ae.RegisterActivity(e.acts)
	return e
}

// stage uploads content to staging and returns the artifact as a pipeline
// would report it.
func (e *env) stage(name string, content []byte) storage.Artifact {
	key := "builds/1443.3/aws/" + name
	if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: strPtr("staging"), Key: &key, Body: bytes.NewReader(content)}); err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	return storage.Artifact{Name: name, Key: key, Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])}
}

func strPtr(s string) *string { return &s }

func TestVerifyPromoteManifest(t *testing.T) {
	e := newEnv(t)
	arts := []storage.Artifact{e.stage("rootfs.raw", bytes.Repeat([]byte("img"), 1<<16)), e.stage("manifest.txt", []byte("packages\n"))}
	if _, err := e.ae.ExecuteActivity(e.acts.Verify, storage.VerifyRequest{Flavour: "aws-gardener_prod-amd64", Artifacts: arts}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	var res storage.PromoteResult
	v, err := e.ae.ExecuteActivity(e.acts.Promote, storage.PromoteRequest{Artifacts: arts})
	if err != nil || v.Get(&res) != nil || res.Copied != 2 {
		t.Fatalf("promote: %v %+v", err, res)
	}
	// Content-addressed: the release object is the artifact, byte for byte.
	obj, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: strPtr("releases"), Key: &res.Files[0].Key})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := got.ReadFrom(obj.Body); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(got.Bytes()); hex.EncodeToString(sum[:]) != arts[0].SHA256 {
		t.Error("the release object differs from the artifact")
	}
	if !strings.HasPrefix(res.Files[0].Key, "gardenlinux/objects/sha256/"+arts[0].SHA256) {
		t.Errorf("key = %s", res.Files[0].Key)
	}
	// A re-run copies nothing.
	v, _ = e.ae.ExecuteActivity(e.acts.Promote, storage.PromoteRequest{Artifacts: arts})
	if v.Get(&res); res.Copied != 0 {
		t.Errorf("second promote copied %d", res.Copied)
	}
	m := storage.Manifest{Flavour: "aws-gardener_prod-amd64", Commit: "4f1c2e9", Version: "1443.3", Architecture: "amd64", Platform: "aws",
		Features: []string{"_prod", "gardener"}, BuildTimestamp: time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC), Files: res.Files}
	if _, err := e.ae.ExecuteActivity(e.acts.PutManifest, m); err != nil {
		t.Fatal(err)
	}
	var found storage.Found
	v, err = e.ae.ExecuteActivity(e.acts.FindManifest, storage.FindManifestRequest{Flavour: m.Flavour, Version: m.Version, Commit: m.Commit})
	if err != nil || v.Get(&found) != nil || !found.Found || found.Manifest.SchemaVersion != storage.ManifestSchemaVersion || len(found.Manifest.Files) != 2 ||
		found.Key != "gardenlinux/meta/singles/aws-gardener_prod-amd64-1443.3-4f1c2e9" {
		t.Fatalf("find: %v %+v", err, found)
	}
	v, _ = e.ae.ExecuteActivity(e.acts.FindManifest, storage.FindManifestRequest{Flavour: m.Flavour, Version: m.Version, Commit: "other"})
	if found = (storage.Found{}); v.Get(&found) != nil || found.Found {
		t.Errorf("a manifest for another commit: %+v", found)
	}
}

func TestCorruptAndMissingArtifacts(t *testing.T) {
	e := newEnv(t)
	good := e.stage("rootfs.raw", []byte("the image"))
	bad := good
	bad.SHA256 = strings.Repeat("0", 64)
	short := good
	short.Size = 3
	missing := good
	missing.Key = "builds/none"
	for _, tt := range []struct {
		art     storage.Artifact
		errType string
	}{{bad, storage.ErrTypeArtifactCorrupt}, {short, storage.ErrTypeArtifactCorrupt}, {missing, storage.ErrTypeArtifactMissing}} {
		_, err := e.ae.ExecuteActivity(e.acts.Verify, storage.VerifyRequest{Flavour: "aws", Artifacts: []storage.Artifact{tt.art}})
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != tt.errType || !appErr.NonRetryable() || !strings.Contains(appErr.Error(), tt.art.Key) {
			t.Errorf("%+v: %v, want non-retryable %s naming the key", tt.art, err, tt.errType)
		}
	}
}

func TestPromoteCopiesLargeArtifactsInParts(t *testing.T) {
	e := newEnv(t)
	acts := storage.New(e.s3, storage.Config{StagingBucket: "staging", ReleaseBucket: "releases", Prefix: "gl/", CopyPartSize: 5 << 20})
	e.ae.RegisterActivity(acts)
	content := bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16+7) // 12 MiB and a bit: three parts
	art := e.stage("rootfs.raw", content)
	var res storage.PromoteResult
	v, err := e.ae.ExecuteActivity(acts.Promote, storage.PromoteRequest{Artifacts: []storage.Artifact{art}})
	if err != nil || v.Get(&res) != nil || res.Copied != 1 {
		t.Fatalf("promote: %v %+v", err, res)
	}
	obj, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: strPtr("releases"), Key: &res.Files[0].Key})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, obj.Body); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(h.Sum(nil)) != art.SHA256 {
		t.Error("the object copied in parts differs from the artifact")
	}
	// A verify of the promoted copy agrees, and a second promote copies
	// nothing.
	v, _ = e.ae.ExecuteActivity(acts.Promote, storage.PromoteRequest{Artifacts: []storage.Artifact{art}})
	if v.Get(&res); res.Copied != 0 {
		t.Errorf("second promote copied %d", res.Copied)
	}
}

func TestManifestSetAndPublishedImages(t *testing.T) {
	e := newEnv(t)
	m := storage.Manifest{Flavour: "aws-gardener_prod-amd64", Commit: "4f1c2e9", Version: "1443.3", Platform: "aws", TestResult: storage.TestPassed}
	var key string
	v, err := e.ae.ExecuteActivity(e.acts.PutManifest, m)
	if err != nil || v.Get(&key) != nil {
		t.Fatal(err)
	}
	images := map[string]any{"images": []any{map[string]any{"region": "eu-central-1", "imageId": "ami-1", "name": "gl"}}}
	for range 2 { // idempotent
		if _, err := e.ae.ExecuteActivity(e.acts.SetPublished, storage.SetPublishedRequest{Key: key, Images: images}); err != nil {
			t.Fatal(err)
		}
	}
	var found storage.Found
	v, _ = e.ae.ExecuteActivity(e.acts.FindManifest, storage.FindManifestRequest{Flavour: m.Flavour, Version: m.Version, Commit: m.Commit})
	if v.Get(&found); found.Manifest.TestResult != storage.TestPassed || fmt.Sprint(found.Manifest.PublishedImages) != fmt.Sprint(images) {
		t.Errorf("manifest after SetPublished = %+v", found.Manifest)
	}
	if _, err := e.ae.ExecuteActivity(e.acts.SetPublished, storage.SetPublishedRequest{Key: "gardenlinux/meta/singles/none", Images: images}); err == nil {
		t.Error("SetPublished on a missing manifest succeeded")
	}
	set := storage.ManifestSet{BuildID: "build/main/1443.3", Commit: m.Commit, Version: m.Version, Manifests: map[string]string{m.Flavour: key}}
	v, err = e.ae.ExecuteActivity(e.acts.PutManifestSet, set)
	if err != nil || v.Get(&key) != nil || key != "gardenlinux/meta/sets/1443.3-4f1c2e9" {
		t.Fatalf("set: %v %s", err, key)
	}
	obj, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: strPtr("releases"), Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	var got storage.ManifestSet
	if err := json.NewDecoder(obj.Body).Decode(&got); err != nil || got.SchemaVersion != storage.ManifestSchemaVersion || got.Manifests[m.Flavour] == "" {
		t.Errorf("set = %+v, %v", got, err)
	}
}

func TestManifestOfANewerSchemaIsRefused(t *testing.T) {
	e := newEnv(t)
	key := "gardenlinux/meta/singles/kvm-amd64-1.0-abc"
	body := `{"schemaVersion": 2, "flavour": "kvm-amd64"}`
	if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: strPtr("releases"), Key: &key, Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	_, err := e.ae.ExecuteActivity(e.acts.FindManifest, storage.FindManifestRequest{Flavour: "kvm-amd64", Version: "1.0", Commit: "abc"})
	if err == nil || !strings.Contains(err.Error(), "schema version 2") {
		t.Errorf("error = %v, want a refusal naming the version", err)
	}
}
