package storage_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/reference"
	"github.com/kiln-build/kiln/test/s3test"
	"github.com/kiln-build/kiln/workflows/release"
)

const (
	commit  = "75df9f401a842914563f312899ec3ce34b24515c"
	tpmBase = "aws-gardener_prod_tpm2_trustedboot-amd64-1877.3-75df9f40"
)

type env struct {
	t    *testing.T
	s3   *s3.Client
	acts *storage.Activities
	ae   *testsuite.TestActivityEnvironment
}

// newEnv starts versitygw with a staging and a release bucket; the
// activities use the prefix gardenlinux/.
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
	e := &env{t: t, s3: c}
	e.use(storage.Config{StagingBucket: "staging", ReleaseBucket: "releases", Prefix: "gardenlinux/"})
	return e
}

// use switches the env to activities of another config.
func (e *env) use(cfg storage.Config) {
	e.acts = storage.New(e.s3, cfg)
	e.ae = e.newActivityEnv()
}

// newActivityEnv is a fresh test activity environment: one per goroutine.
func (e *env) newActivityEnv() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	ae := s.NewTestActivityEnvironment()
	ae.RegisterActivity(e.acts)
	return ae
}

// run executes an activity and decodes its result into out (if not nil).
func (e *env) run(out any, fn any, in any) error {
	v, err := e.ae.ExecuteActivity(fn, in)
	if err == nil && out != nil {
		err = v.Get(out)
	}
	return err
}

// stage uploads content to staging and returns the artifact as a pipeline
// would report it (no MD5).
func (e *env) stage(name string, content []byte) storage.Artifact {
	key := "builds/1877.3/aws/" + name
	e.put("staging", key, content)
	sum := sha256.Sum256(content)
	return storage.Artifact{Name: name, Key: key, Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])}
}

func (e *env) put(bucket, key string, content []byte) {
	e.t.Helper()
	if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(content)}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(bucket, key string) []byte {
	e.t.Helper()
	obj, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		e.t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func md5hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

func tpmIdentity() release.Identity {
	return release.Identity{
		Base: tpmBase, Flavor: "aws-gardener_prod_tpm2_trustedboot", Arch: "amd64", Platform: "aws", Version: "1877.3", Commit: commit,
		Modifiers: []string{"gardener", "_prod", "_tpm2", "_usi", "_trustedboot"}, RequireUEFI: true, SecureBoot: true, TPM2: true,
	}
}

// hasReference: the reference manifests are there (or CI=true says they
// must be).
func hasReference() bool {
	_, err := os.Stat(filepath.Join(reference.Dir(), "gardenlinux-s3-metadata"))
	return err == nil || os.Getenv("CI") == "true"
}

// referenceDir is the reference manifests' directory (test/reference).
func referenceDir(t *testing.T) string {
	t.Helper()
	return reference.Path(t, "gardenlinux-s3-metadata")
}

func wantAppError(t *testing.T, err error, errType string, contains ...string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != errType || !appErr.NonRetryable() {
		t.Errorf("error = %v, want a non-retryable %s", err, errType)
		return
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error = %v, want it to say %q", err, s)
		}
	}
}

func TestVerify(t *testing.T) {
	e := newEnv(t)
	raw := bytes.Repeat([]byte("img"), 1<<16)
	rel := []byte("GARDENLINUX_CNAME=\"" + tpmBase + "\"\nGARDENLINUX_VERSION=1877.3\nGARDENLINUX_COMMIT_ID=75df9f40\n")
	arts := []storage.Artifact{e.stage(tpmBase+".raw", raw), e.stage(tpmBase+".release", rel), e.stage(tpmBase+".requirements", []byte("arch=amd64\n"))}
	arts[1].MD5 = strings.ToUpper(md5hex(rel)) // reported, in any case
	var res storage.VerifyResult
	if err := e.run(&res, e.acts.Verify, storage.VerifyRequest{Flavour: "aws-gardener_prod_trustedboot_tpm2-amd64", Artifacts: arts}); err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 3 || res.Artifacts[0].MD5 != md5hex(raw) || res.Artifacts[1].MD5 != md5hex(rel) ||
		res.Release != string(rel) || res.Requirements != "arch=amd64\n" {
		t.Errorf("verify = %+v", res)
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
	badMD5 := good
	badMD5.MD5 = strings.Repeat("0", 32)
	big := e.stage("x.release", bytes.Repeat([]byte("A=b\n"), storage.MaxMetadataFileSize/4+1))
	twice := []storage.Artifact{e.stage("a.release", []byte("A=1\n")), e.stage("b.release", []byte("A=1\n"))}
	for _, tt := range []struct {
		arts    []storage.Artifact
		errType string
		says    string
	}{
		{[]storage.Artifact{bad}, storage.ErrTypeArtifactCorrupt, bad.Key},
		{[]storage.Artifact{short}, storage.ErrTypeArtifactCorrupt, short.Key},
		{[]storage.Artifact{missing}, storage.ErrTypeArtifactMissing, missing.Key},
		{[]storage.Artifact{badMD5}, storage.ErrTypeArtifactCorrupt, "md5"},
		{[]storage.Artifact{big}, storage.ErrTypeArtifactCorrupt, "at most 65536"},
		{twice, storage.ErrTypeArtifactCorrupt, "more than one .release"},
	} {
		err := e.run(nil, e.acts.Verify, storage.VerifyRequest{Flavour: "aws", Artifacts: tt.arts})
		wantAppError(t, err, tt.errType, tt.says)
	}
}
