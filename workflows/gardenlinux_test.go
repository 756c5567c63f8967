package workflows_test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/reference"
	"github.com/kiln-build/kiln/test/s3test"
	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// TestAManifestOfGardenLinuxsToolsSkipsTheFlavour places a release
// manifest that Garden Linux's own tooling wrote into a real S3 server
// (versitygw) and builds its flavour at its version and commit with the
// real storage activities: nothing runs, although the manifest is filed
// under a cname that orders the features otherwise than flavors.yaml.
func TestAManifestOfGardenLinuxsToolsSkipsTheFlavour(t *testing.T) {
	for _, src := range []struct{ name, path string }{
		{"testdata", "../activities/storage/testdata/aws-gardener_prod_tpm2_trustedboot-amd64.s3_metadata.yaml"},
		{"reference", ""},
	} {
		t.Run(src.name, func(t *testing.T) {
			path := src.path
			if path == "" {
				path = reference.Path(t, "gardenlinux-s3-metadata/aws-gardener_prod_tpm2_trustedboot-amd64.s3_metadata.yaml")
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := s3test.Start(context.Background(), t.TempDir())
			kubestack.SkipWithoutTools(t, err)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Stop)
			c := srv.Client()
			for _, b := range []string{"staging", "releases"} {
				if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
					t.Fatal(err)
				}
			}
			key := "meta/singles/aws-gardener_prod_tpm2_trustedboot-amd64-1877.3-75df9f40"
			if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("releases"), Key: &key, Body: bytes.NewReader(data)}); err != nil {
				t.Fatal(err)
			}

			p := storagePlan(1)
			p.Storage.ArchiveLogs = false
			rec := &recorder{results: artifactResults}
			env := newEnv(t, p, rec, func(env *testsuite.TestWorkflowEnvironment) {
				env.RegisterActivity(storage.New(c, storage.Config{StagingBucket: "staging", ReleaseBucket: "releases"}))
			})
			f := flavour.Flavour{Platform: "aws", Arch: "amd64", Features: []string{"gardener", "_prod", "_trustedboot", "_tpm2"},
				Format: flavour.Format2024, Build: true, Test: true, Publish: true}
			in := request([]flavour.Flavour{f}, "build", "manifest", "tests")
			in.Version, in.Commit = "1877.3", "75df9f401a842914563f312899ec3ce34b24515c"
			env.ExecuteWorkflow(workflows.Build, in)
			if err := env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			if slices.Contains(rec.phases(), "image") {
				t.Errorf("phases %v: the flavour that Garden Linux built was built again", rec.phases())
			}
			fs := progressOf(t, env).Flavours[0]
			if fs.Name != "aws-gardener_prod_trustedboot_tpm2-amd64" || fs.State != workflows.StateSkipped || !fs.Reused || fs.Manifest != key ||
				fs.Base != "aws-gardener_prod_tpm2_trustedboot-amd64-1877.3-75df9f40" {
				t.Errorf("flavour = %+v, want skipped, reusing %s", fs, key)
			}
		})
	}
}
