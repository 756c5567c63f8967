package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/temporal"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows/release"
)

// stageBackoff is the wait between attempts at a file's upload: 1s,
// doubling up to 30s, each lengthened by up to a tenth at random, so that
// the flavours' pipelines staging at the same time do not retry in step.
var stageBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Cap: 30 * time.Second, Steps: math.MaxInt32}

// defaultStageRetryFor is --retry-for's default.
const defaultStageRetryFor = 10 * time.Minute

func newStageCommand() *cobra.Command {
	var bucket, prefix, result, cnameResult, endpoint string
	releaseCheck := true
	pathStyle, _ := strconv.ParseBool(os.Getenv("KILN_S3_PATH_STYLE"))
	retryFor, retryForErr := defaultStageRetryFor, error(nil)
	if v := os.Getenv("KILN_STAGE_RETRY_FOR"); v != "" {
		if retryFor, retryForErr = time.ParseDuration(v); retryForErr != nil {
			retryFor, retryForErr = defaultStageRetryFor, fmt.Errorf("KILN_STAGE_RETRY_FOR=%s: want a duration such as 10m: %w", v, retryForErr)
		}
	}
	cmd := &cobra.Command{
		Use:   "stage FILE...",
		Short: "Upload an image pipeline's files to the staging bucket and write its artifacts result",
		Long: `Upload files to the staging bucket, streaming each one (a multipart upload
for large files, never the whole file in memory) and hashing it on the way,
and write the image pipeline's "artifacts" result: the JSON list of
{"name", "key", "size", "sha256", "md5"} that kiln verifies, promotes and
records in the flavour's release manifest.

Use it as the last step of an image pipeline, with --result pointing at
$(results.artifacts.path). Each file's key is --prefix followed by its
base name.

Stage a Garden Linux build's files as its builder names them,
<cname><suffix>, with the build's .release file among them. The .release
file (os-release style: GARDENLINUX_CNAME="…", GARDENLINUX_VERSION,
GARDENLINUX_COMMIT_ID, GARDENLINUX_FEATURES, …) says the build's canonical
name, such as kvm-gardener_prod-amd64-1877.3-75df9f40. kiln stage reads it
before uploading anything, prints the cname on stderr, writes it to
--cname-result (such as $(results.cname.path)), and refuses the whole
upload when a file's base name does not start with the cname: kiln files
every artifact under <cname><suffix>, so a stray rootfs.raw would be lost.
--release-check=false skips that check. A .requirements file among the
files (arch=amd64, uefi=true, secureboot=false, tpm2=false) is checked to
be well formed; an error names the line or the key. A .release file that
lacks a required key, or has a malformed cname, is refused naming the key.

S3 that cannot be reached or fails for a while (a refused or broken
connection, a timeout, throttling, a 5xx) does not fail the step at once:
the file's upload starts again from the file's first byte after a wait,
1s doubling up to 30s, for --retry-for (default 10m, or
KILN_STAGE_RETRY_FOR) from the file's first failed attempt; no attempt
starts after that, and 0 does not retry. Each wait is reported on stderr:

  s3 unreachable: <error>; retrying <file> in 4s (9m52s left)

A failed attempt leaves no partial object: a multipart upload is aborted
and never completed (when S3 cannot be reached for the abort either, its
parts stay until the bucket's AbortIncompleteMultipartUpload lifecycle
rule removes them). What waiting does not fix fails at once, saying so:
refused access or credentials (AccessDenied, InvalidAccessKeyId,
SignatureDoesNotMatch), NoSuchBucket, S3's other refusals, a file that
cannot be read.

Credentials, region and endpoint come from the AWS SDK's default chain:
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile, web identity, an
instance role), AWS_REGION, and AWS_ENDPOINT_URL_S3 for an S3-compatible
server. --path-style (or KILN_S3_PATH_STYLE=true) addresses buckets as
endpoint/bucket, as most S3-compatible servers want.`,
		Example: `  # the last step of an image pipeline: a Garden Linux build's files
  base=kvm-gardener_prod-amd64-1877.3-75df9f40
  kiln stage --bucket gardenlinux-staging --prefix builds/1877.3-75df9f40/kvm-gardener_prod-amd64/ \
      --result $(results.artifacts.path) --cname-result $(results.cname.path) \
      $base.release $base.requirements $base.raw $base.raw.sha256
  # any files, without a .release
  AWS_ENDPOINT_URL_S3=http://127.0.0.1:7070 kiln stage --path-style --bucket staging image.tar.gz
  # ride out S3 outages of up to half an hour (or KILN_STAGE_RETRY_FOR=30m)
  kiln stage --retry-for 30m --bucket staging --result $(results.artifacts.path) image.tar.gz`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if bucket == "" {
				return fmt.Errorf("--bucket is required: the staging bucket the worker's storage.stagingBucket names")
			}
			if retryForErr != nil && !cmd.Flags().Changed("retry-for") {
				return retryForErr
			}
			if retryFor < 0 {
				return fmt.Errorf("--retry-for %s: want 0 (no retries) or more", retryFor)
			}
			cname, err := checkBuildFiles(files, releaseCheck)
			if err != nil {
				return err
			}
			if cname == "" && cnameResult != "" {
				return fmt.Errorf("--cname-result %s: no .release file among the files to read the cname from", cnameResult)
			}
			if cname != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "cname %s\n", cname)
			}
			ctx := cmd.Context()
			cfg, err := awsconfig.LoadDefaultConfig(ctx)
			if err != nil {
				return fmt.Errorf("AWS settings: %w", err)
			}
			if cfg.Region == "" {
				cfg.Region = "us-east-1" // S3-compatible servers ignore it; the SDK signs with one
			}
			client := s3.NewFromConfig(cfg, func(o *s3.Options) {
				if endpoint != "" {
					o.BaseEndpoint = aws.String(endpoint)
				}
				o.UsePathStyle = pathStyle
			})
			arts := make([]storage.Artifact, 0, len(files))
			for _, path := range files {
				a, err := stageFile(ctx, client, bucket, prefix+filepath.Base(path), path, retryFor, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				arts = append(arts, a)
				fmt.Fprintf(cmd.ErrOrStderr(), "staged %s as s3://%s/%s (%d bytes, sha256 %s, md5 %s)\n", path, bucket, a.Key, a.Size, a.SHA256, a.MD5)
			}
			b, err := json.Marshal(arts)
			if err != nil {
				return err
			}
			if cnameResult != "" {
				if err := os.WriteFile(cnameResult, []byte(cname), 0o644); err != nil {
					return err
				}
			}
			if result == "" || result == "-" {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return err
			}
			return os.WriteFile(result, b, 0o644)
		},
	}
	f := cmd.Flags()
	f.StringVar(&bucket, "bucket", "", "the staging bucket (required)")
	f.StringVar(&prefix, "prefix", "", "key prefix, such as builds/<version>-<commit>/<flavour>/")
	f.StringVar(&result, "result", "", "write the artifacts JSON to this file, such as $(results.artifacts.path) (default: stdout)")
	f.StringVar(&cnameResult, "cname-result", "", "write the cname of the .release file among the files to this file, such as $(results.cname.path)")
	f.BoolVar(&releaseCheck, "release-check", true, "refuse files whose name does not start with the .release file's cname")
	f.StringVar(&endpoint, "endpoint", "", "S3 endpoint URL (default: AWS_ENDPOINT_URL_S3, else AWS)")
	f.BoolVar(&pathStyle, "path-style", pathStyle, "path-style bucket addressing (default: KILN_S3_PATH_STYLE)")
	f.DurationVar(&retryFor, "retry-for", retryFor, "keep retrying a file's upload this long while S3 is unreachable or failing; 0: no retries (env KILN_STAGE_RETRY_FOR)")
	return cmd
}

// stageFile uploads the file at path to s3://bucket/key and returns its
// artifact. An attempt that fails for a transient reason
// (storage.Transient: S3 unreachable, throttling, a 5xx) is followed by
// another, after a wait of stageBackoff reported on stderr, until retryFor
// has passed since the start of the first failed attempt (an attempt under
// way then may finish; none starts after). Every attempt reads the file
// from its start, so its sizes and sums are those of what was written,
// and a failed one leaves no object behind (storage.Upload aborts its
// multipart upload). Any other error fails at once.
func stageFile(ctx context.Context, client *s3.Client, bucket, key, path string, retryFor time.Duration, stderr io.Writer) (storage.Artifact, error) {
	backoff := stageBackoff
	var deadline time.Time
	for {
		start := time.Now()
		a, err := uploadFile(ctx, client, bucket, key, path)
		if err == nil {
			return a, nil
		}
		if ctx.Err() != nil || !storage.Transient(err) {
			return a, permanentStageError(path, bucket, key, err)
		}
		if deadline.IsZero() {
			deadline = start.Add(retryFor)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return a, fmt.Errorf("stage %s: gave up after retrying for --retry-for %s: %w", path, retryFor, err)
		}
		d := min(backoff.Step(), left)
		fmt.Fprintf(stderr, "s3 unreachable: %v; retrying %s in %s (%s left)\n", err, filepath.Base(path), d.Round(100*time.Millisecond), left.Round(time.Second))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return a, fmt.Errorf("stage %s: %w while waiting to retry after: %w", path, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// uploadFile makes one attempt at uploading the file at path, from its
// start.
func uploadFile(ctx context.Context, client *s3.Client, bucket, key, path string) (storage.Artifact, error) {
	f, err := os.Open(path)
	if err != nil {
		return storage.Artifact{}, err
	}
	defer f.Close()
	sum := md5.New()
	up, err := storage.Upload(ctx, client, bucket, key, io.TeeReader(f, sum), 0, "")
	if err != nil {
		return storage.Artifact{}, err
	}
	return storage.Artifact{Name: filepath.Base(path), Key: key, Size: up.Bytes, SHA256: up.SHA256, MD5: hex.EncodeToString(sum.Sum(nil))}, nil
}

// permanentStageError says why a file's upload failed for good: S3's
// refusal with its code, or the error as it is (a file that cannot be
// read, a cancelled context).
func permanentStageError(path, bucket, key string, err error) error {
	what := fmt.Sprintf("stage %s as s3://%s/%s", path, bucket, key)
	var appErr *temporal.ApplicationError
	if c := storage.Classify(what, err); errors.As(c, &appErr) && appErr.NonRetryable() {
		return fmt.Errorf("%s (not retried: check the credentials, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the profile, --bucket and the bucket's policy)", appErr.Message())
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("%s: %w (S3 refused it; not retried)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// checkBuildFiles reads the .release and .requirements files among files
// and returns the release's cname ("" without a .release file). With
// check, every file's base name must start with the cname. It reads only
// those two kinds of file and uploads nothing, so a refused build leaves
// nothing in staging.
func checkBuildFiles(files []string, check bool) (string, error) {
	var relPath string
	var rel release.Release
	for _, path := range files {
		switch {
		case strings.HasSuffix(path, ".release"):
			if relPath != "" {
				return "", fmt.Errorf("%s and %s: two .release files; stage one build's files at a time", relPath, path)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return "", err
			}
			if rel, err = release.ParseRelease(data); err != nil {
				return "", fmt.Errorf("%s: %w", path, err)
			}
			relPath = path
		case strings.HasSuffix(path, ".requirements"):
			data, err := os.ReadFile(path)
			if err != nil {
				return "", err
			}
			if _, err := release.ParseRequirements(data); err != nil {
				return "", fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	if relPath == "" || !check {
		return rel.CName, nil
	}
	var stray []string
	for _, path := range files {
		if !strings.HasPrefix(filepath.Base(path), rel.CName) {
			stray = append(stray, filepath.Base(path))
		}
	}
	if len(stray) > 0 {
		return "", fmt.Errorf("%s: not named by the cname %s of %s (a Garden Linux build names its files <cname><suffix>); nothing was staged; rename, or pass --release-check=false",
			strings.Join(stray, ", "), rel.CName, relPath)
	}
	return rel.CName, nil
}
