package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
)

// TestStage uploads two files with kiln stage to a real S3 server, as the
// last step of an image pipeline would, and checks the artifacts result.
func TestStage(t *testing.T) {
	srv, err := s3test.Start(context.Background(), t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if _, err := srv.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("staging")}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", srv.Access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.Secret)
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	dir := t.TempDir()
	files := map[string][]byte{"rootfs.raw": bytes.Repeat([]byte("image"), 3<<20), "rootfs.raw.sha256": []byte("abc  rootfs.raw\n")}
	var args []string
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	result := filepath.Join(dir, "artifacts")
	cmd := newRootCommand()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(append([]string{"stage", "--path-style", "--bucket", "staging", "--prefix", "builds/1.0/kvm-amd64/", "--result", result}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	var arts []storage.Artifact
	if err := json.Unmarshal(b, &arts); err != nil || len(arts) != 2 {
		t.Fatalf("result %s: %v", b, err)
	}
	for _, a := range arts {
		sum := sha256.Sum256(files[a.Name])
		if a.SHA256 != hex.EncodeToString(sum[:]) || a.Size != int64(len(files[a.Name])) || a.Key != "builds/1.0/kvm-amd64/"+a.Name {
			t.Errorf("artifact %+v", a)
		}
		obj, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("staging"), Key: &a.Key})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(obj.Body)
		obj.Body.Close()
		if !bytes.Equal(got, files[a.Name]) {
			t.Errorf("%s differs in S3", a.Key)
		}
	}
	// Without a bucket, the error says which flag and why.
	cmd = newRootCommand()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"stage", args[0]})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--bucket is required") {
		t.Errorf("error = %v", err)
	}
}
