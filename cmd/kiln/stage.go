package main

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows/release"
)

func newStageCommand() *cobra.Command {
	var bucket, prefix, result, cnameResult, endpoint string
	releaseCheck := true
	pathStyle, _ := strconv.ParseBool(os.Getenv("KILN_S3_PATH_STYLE"))
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
  AWS_ENDPOINT_URL_S3=http://127.0.0.1:7070 kiln stage --path-style --bucket staging image.tar.gz`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if bucket == "" {
				return fmt.Errorf("--bucket is required: the staging bucket the worker's storage.stagingBucket names")
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
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				key := prefix + filepath.Base(path)
				sum := md5.New()
				up, err := storage.Upload(ctx, client, bucket, key, io.TeeReader(f, sum), 0, "")
				f.Close()
				if err != nil {
					return fmt.Errorf("stage %s: %w", path, err)
				}
				a := storage.Artifact{Name: filepath.Base(path), Key: key, Size: up.Bytes, SHA256: up.SHA256, MD5: hex.EncodeToString(sum.Sum(nil))}
				arts = append(arts, a)
				fmt.Fprintf(cmd.ErrOrStderr(), "staged %s as s3://%s/%s (%d bytes, sha256 %s, md5 %s)\n", path, bucket, key, a.Size, a.SHA256, a.MD5)
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
	return cmd
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
